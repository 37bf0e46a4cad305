"""Train reference (shadow) models by the user's recipe on balanced random halves of a data pool.

Every audited row of the pool is in exactly half of the models (Carlini et al. 2022's design), so each
audited record has IN models (online LiRA) and OUT models (offline LiRA, RMIA); with a holdout as large as
the training set, each reference model trains on as many records as the target. Population rows (data the
attacker owns that is not audited) are never trained on: they serve as RMIA's population. Training goes
through the recipe's model cache: a re-run with the same recipe, pool and seed loads the weights instead.
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

__all__ = ["balanced_masks", "train_references"]

log = logging.getLogger(__name__)


def balanced_masks(n_models: int, n_pool: int, *, seed: int) -> torch.Tensor:
    """``(n_models, n_pool)`` bool: each row of the pool is in exactly ``n_models // 2`` models, at random."""
    import torch

    if n_models < 2:
        raise InputError(f"Reference models come in at least a pair (one IN, one OUT per record). Got {n_models}.")
    generator = torch.Generator().manual_seed(seed)
    order = torch.rand((n_models, n_pool), generator=generator).argsort(0)
    return order < n_models // 2


def train_references(
    recipe: Recipe,
    pool_x: torch.Tensor,
    pool_y: torch.Tensor,
    *,
    n_models: int,
    n_classes: int,
    is_population: torch.Tensor | None = None,
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
    masks[:, ~population] = balanced_masks(n_models, int((~population).sum()), seed=seed)
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
