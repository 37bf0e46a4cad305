"""Train reference (shadow) models by the user's recipe on random subsets of a data pool.

By default every audited row of the pool is in exactly half of the models (Carlini et al. 2022's design), so
each audited record has IN models (online LiRA) and OUT models (offline LiRA, RMIA); with a holdout as large
as the training set, each reference model trains on as many records as the target. With a larger holdout,
``n_in`` (the number of models each row is IN for) keeps the reference models' training sets as large as the
target's: :func:`matched_n_in`. Population rows (data the attacker owns that is not audited) are never
trained on: they serve as RMIA's population. Training goes through the recipe's model cache: a re-run with
the same recipe, pool and seed loads the weights instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hoplon.attacks.privacy.types import ReferenceModels
from hoplon.core.errors import InputError
from hoplon.targets.torch_target import TorchTarget

if TYPE_CHECKING:
    import torch

    from hoplon.recipes import ModelCache, Recipe
    from hoplon.targets.types import Bounds

__all__ = ["balanced_masks", "matched_n_in", "train_references", "train_shadow_models"]

log = logging.getLogger(__name__)


def balanced_masks(n_models: int, n_pool: int, *, seed: int, n_in: int | None = None) -> torch.Tensor:
    """``(n_models, n_pool)`` bool: each row of the pool is in exactly ``n_in`` models (default
    ``n_models // 2``), chosen at random per row."""
    import torch

    if n_models < 2:
        raise InputError(f"Reference models come in at least a pair (one IN, one OUT per record). Got {n_models}.")
    k = n_models // 2 if n_in is None else n_in
    if not 1 <= k <= n_models - 1:
        raise InputError(
            f"Each record must be IN for at least one and OUT for at least one of the {n_models} reference models; "
            f"got n_in = {k}."
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.rand((n_models, n_pool), generator=generator).argsort(0)
    return order < k


def matched_n_in(n_models: int, n_train: int, n_pool: int) -> int:
    """How many of ``n_models`` reference models each of ``n_pool`` rows should be IN for, so that each model
    trains on about ``n_train`` records (the target's training-set size); clamped to ``[1, n_models // 2]``
    (a pool smaller than twice the training set gives balanced halves, each model training on fewer records).
    """
    if n_models < 2 or n_train < 1 or n_pool < 1:
        raise InputError(f"matched_n_in needs n_models >= 2 and positive sizes. Got {n_models}, {n_train}, {n_pool}.")
    return max(1, min(n_models // 2, round(n_models * n_train / n_pool)))


def train_references(
    recipe: Recipe,
    pool_x: torch.Tensor,
    pool_y: torch.Tensor,
    *,
    n_models: int,
    n_classes: int,
    is_population: torch.Tensor | None = None,
    n_in: int | None = None,
    seed: int = 0,
    cache: ModelCache | None = None,
    bounds: Bounds | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReferenceModels:
    """Train ``n_models`` models by ``recipe``, model ``m`` on the pool rows where ``in_mask[m]`` holds.

    Args:
        recipe: how the user trains (model factory, optimiser, epochs, batch size).
        pool_x, pool_y: the data the attacker knows: the audited records and, if any, population data.
        n_models: the reference-model budget (even, >= 2); more models give stronger, slower attacks.
        n_classes: the target's number of classes.
        is_population: rows that are not audited records (never trained on; RMIA's population); default none.
        n_in: how many models each non-population row is IN for, in ``[1, n_models - 1]``; default
            ``n_models // 2`` (balanced halves). :func:`matched_n_in` picks it so that each model trains on as
            many records as the target when the holdout is larger than the training set.
        seed: seeds the split and each model (model ``m`` uses ``seed + m``).
        cache: a :class:`~hoplon.recipes.ModelCache`; models trained before are loaded from it.
        progress: called with 1 after each model.
    """
    import torch

    from hoplon.recipes.training import train

    if n_models % 2:
        raise InputError(f"The number of reference models must be even (half IN, half OUT). Got {n_models}.")
    population = torch.zeros(len(pool_x), dtype=torch.bool) if is_population is None else is_population.to(torch.bool)
    # Population rows are never trained on: they stay OUT for every model (RMIA's population, priors).
    masks = torch.zeros((n_models, len(pool_x)), dtype=torch.bool)
    masks[:, ~population] = balanced_masks(n_models, int((~population).sum()), seed=seed, n_in=n_in)
    targets = []
    shape = tuple(int(s) for s in pool_x.shape[1:])
    for m in range(n_models):
        x_m, y_m = pool_x[masks[m]], pool_y[masks[m]]
        if cache is not None:
            module, _ = cache.train(recipe, x_m, y_m, n_classes=n_classes, seed=seed + m, tag="reference")
        else:
            module, _ = train(recipe, x_m, y_m, n_classes=n_classes, seed=seed + m)
        targets.append(
            TorchTarget(module, input_shape=shape, n_classes=n_classes, bounds=bounds, name=f"reference-{m}")
        )
        if progress is not None:
            progress(1)
    return ReferenceModels(tuple(targets), pool_x, pool_y, masks, population)


def train_shadow_models(
    recipe: Recipe,
    population_x: torch.Tensor,
    population_y: torch.Tensor,
    *,
    n_train: int,
    n_models: int,
    n_classes: int,
    seed: int = 0,
    cache: ModelCache | None = None,
    bounds: Bounds | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReferenceModels:
    """Shokri et al.'s shadow models: ``n_models`` models trained by ``recipe`` on balanced halves of a random
    subset of ``2 * n_train`` population rows (all of them when there are fewer), so each shadow model trains on
    as many records as the target (``n_train``) and has as many non-members.

    The population must be data the attacker owns that are disjoint from the audited records (the caller
    checks; :class:`~hoplon.attacks.privacy.ShadowModelAttack` with ``disjoint=True`` refuses overlapping
    queries). The returned models' pool is the chosen subset, none of it marked as population.
    """
    import torch

    if n_train < 1:
        raise InputError(f"The target's training-set size must be positive. Got {n_train}.")
    generator = torch.Generator().manual_seed(seed)
    n_rows = min(len(population_x), 2 * n_train)
    rows = torch.randperm(len(population_x), generator=generator)[:n_rows].sort().values
    return train_references(
        recipe,
        population_x[rows],
        population_y[rows],
        n_models=n_models,
        n_classes=n_classes,
        seed=seed,
        cache=cache,
        bounds=bounds,
        progress=progress,
    )
