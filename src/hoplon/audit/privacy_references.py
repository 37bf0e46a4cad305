"""The reference and shadow models of the privacy audit: which models to train, on which records, by which recipe.

LiRA and RMIA score against reference models trained by the audited model's recipe on halves of the audited
records (each model training on as many records as the target: :func:`~hoplon.attacks.privacy.matched_n_in`);
the shadow attack trains its own models on ``--population`` data disjoint from the audited records (Shokri et
al.'s setting) or, without population data, falls back to the reference models and says so. Models are trained
once per recipe (several audited models sharing a recipe share them) and cached by recipe hash, data
fingerprint and seed, so a re-run loads them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hoplon.attacks.privacy import ReferenceModels, matched_n_in, train_references, train_shadow_models
from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset
    from hoplon.recipes import Recipe

__all__ = [
    "SHADOW_FALLBACK",
    "SHADOW_POPULATION",
    "AttackModels",
    "check_population",
    "row_keys",
    "train_attack_models",
]

log = logging.getLogger(__name__)

SHADOW_POPULATION = (
    "Shadow models trained by the recipe on balanced halves of up to twice the training set's size of --population "
    "records, which are disjoint from the audited training and holdout records (Shokri et al.'s setting)."
)
SHADOW_FALLBACK = (
    "No --population data: the shadow models are the reference models, trained by the recipe on halves of the "
    "audited training and holdout records. Shokri et al. assume shadow data disjoint from the target's training "
    "data; this fallback gives the attacker the audited records, a stronger assumption than the paper's. Pass "
    "--population with records disjoint from --train and --holdout for the paper's setting."
)

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def row_keys(x: torch.Tensor) -> list[bytes]:
    """Each record's float32 bytes: records compare by value, whatever split they came from."""
    return [bytes(r.contiguous().numpy().astype("<f4").tobytes()) for r in x.detach().cpu()]


def check_population(population: Dataset, audited: Sequence[Dataset]) -> None:
    """Refuse population data that shares records with the audited sets (found by value) or whose sample
    shape differs: population records are by definition not audited, and shadow models must train on data
    disjoint from the audited records.

    Raises:
        InputError: a shared record or a different sample shape.
    """
    keys = {k for data in audited for k in row_keys(data.x)}
    for data in audited:
        if data.sample_shape != population.sample_shape:
            raise InputError(
                f"The population data have sample shape {population.sample_shape}, the audited data "
                f"{data.sample_shape}."
            )
    shared = sum(k in keys for k in row_keys(population.x))
    if shared:
        raise InputError(
            f"The population data (--population) share {shared} of their {population.n} records with the training "
            "or holdout set; population data must be disjoint from the audited records (shadow models train on "
            "them, RMIA compares against them). Remove the shared records."
        )


@dataclass(frozen=True)
class AttackModels:
    """The models the reference-based attacks score against, by recipe digest, and where the shadow data came
    from (``results.shadow_data`` of the report; ``None`` when the shadow attack was not asked for)."""

    references: Mapping[str, ReferenceModels]
    shadows: Mapping[str, ReferenceModels]
    shadow_data: dict[str, Any] | None

    def for_attack(self, recipe: Recipe, *, shadow: bool) -> ReferenceModels | None:
        """The models an attack on a model trained by ``recipe`` uses: the shadow models trained on population
        data for the shadow attack when there are any, the reference models otherwise."""
        key = recipe.digest()
        if shadow and self.shadows:
            return self.shadows[key]
        return self.references.get(key)


def train_attack_models(
    recipes: Sequence[Recipe],
    members: Dataset,
    nonmembers: Dataset,
    *,
    population: Dataset | None,
    n_references: int,
    n_classes: int,
    shadow: bool,
    seed: int,
    cache_dir: str | Path | None = None,
    progress: ProgressFactory | None = None,
) -> AttackModels:
    """Train (or load from the cache) the reference models of each distinct recipe and, when the shadow attack
    is asked for (``shadow``) and there are population data, its shadow models on those data.

    Reference models train on the audited records (members, then non-members) with the population appended as
    never-trained rows, each audited record IN for :func:`~hoplon.attacks.privacy.matched_n_in` of them so that
    each trains on about as many records as the target. Shadow models train on the population only.
    """
    import torch

    from hoplon.recipes import ModelCache

    cache = ModelCache(cache_dir) if cache_dir is not None else None
    disjoint = shadow and population is not None
    x = torch.cat([members.x, nonmembers.x])
    pool_x, pool_y = x, torch.cat([members.y, nonmembers.y])
    is_pop = torch.zeros(len(x), dtype=torch.bool)
    if population is not None:
        pool_x = torch.cat([pool_x, population.x])
        pool_y = torch.cat([pool_y, population.y])
        is_pop = torch.cat([is_pop, torch.ones(population.n, dtype=torch.bool)])
    references: dict[str, ReferenceModels] = {}
    shadows: dict[str, ReferenceModels] = {}
    for recipe in recipes:
        key = recipe.digest()
        if key in references:
            continue
        tick = progress("references", n_references) if progress is not None else None
        references[key] = train_references(
            recipe,
            pool_x,
            pool_y,
            n_models=n_references,
            n_classes=n_classes,
            is_population=is_pop,
            n_in=matched_n_in(n_references, members.n, members.n + nonmembers.n),
            seed=seed,
            cache=cache,
            bounds=members.bounds,
            progress=tick,
        )
        if disjoint and population is not None:
            tick = progress("shadow models", n_references) if progress is not None else None
            shadows[key] = train_shadow_models(
                recipe,
                population.x,
                population.y,
                n_train=members.n,
                n_models=n_references,
                n_classes=n_classes,
                seed=seed,
                cache=cache,
                bounds=members.bounds,
                progress=tick,
            )
    shadow_data: dict[str, Any] | None = None
    if shadow:
        if disjoint and population is not None:
            n_rows = min(population.n, 2 * members.n)
            shadow_data = {
                "source": "population",
                "n_models": n_references,
                "n_rows": n_rows,
                "n_population": population.n,
                "rows_per_model": n_rows // 2,
                "note": SHADOW_POPULATION,
            }
        else:
            shadow_data = {
                "source": "audited-records",
                "n_models": n_references,
                "n_rows": len(x),
                "rows_per_model": round(len(x) * matched_n_in(n_references, members.n, len(x)) / n_references),
                "note": SHADOW_FALLBACK,
            }
            log.warning("%s", SHADOW_FALLBACK)
    return AttackModels(references=references, shadows=shadows, shadow_data=shadow_data)
