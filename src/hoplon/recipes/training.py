"""Train a model by a :class:`~hoplon.recipes.recipe.Recipe`, deterministically under a seed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hoplon.core.errors import InputError
from hoplon.models.training import TrainingRecord, accuracy

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hoplon.recipes.recipe import Recipe

__all__ = ["fit", "train"]


def fit(module: nn.Module, recipe: Recipe, x: torch.Tensor, y: torch.Tensor, *, seed: int) -> TrainingRecord:
    """Train ``module`` in place on ``(x, y)`` with the recipe's optimiser, epochs and batch size."""
    import torch
    from torch.nn import functional as F

    from hoplon.data.fingerprint import records_root

    if len(x) == 0 or len(x) != len(y):
        raise InputError(f"Training needs as many labels as inputs and at least one row. Got {len(x)}, {len(y)}.")
    generator = torch.Generator().manual_seed(seed)
    optimiser = recipe.make_optimiser(module.parameters())
    record = TrainingRecord(
        config={
            "factory": recipe.factory,
            "optimiser": recipe.optimiser,
            "lr": recipe.lr,
            "weight_decay": recipe.weight_decay,
            "epochs": recipe.epochs,
            "batch_size": recipe.batch_size,
            "recipe_sha256": recipe.digest(),
        },
        seed=seed,
        data_fingerprint=records_root(x, y),
    )
    n = len(x)
    for epoch in range(recipe.epochs):
        module.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for i in range(0, n, recipe.batch_size):
            idx = order[i : i + recipe.batch_size]
            optimiser.zero_grad()
            loss = F.cross_entropy(module(x[idx]), y[idx])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        record.epochs.append({"epoch": epoch + 1, "loss": total / n})
    module.eval()
    record.epochs[-1]["train_accuracy"] = accuracy(module, x, y)
    return record


def train(
    recipe: Recipe,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_classes: int,
    seed: int | None = None,
) -> tuple[nn.Module, TrainingRecord]:
    """Build the recipe's model and train it on ``(x, y)``; ``seed`` defaults to the recipe's."""
    import torch

    run_seed = recipe.seed if seed is None else seed
    torch.manual_seed(run_seed)
    module = recipe.build(input_shape=tuple(int(s) for s in x.shape[1:]), n_classes=n_classes)
    record = fit(module, recipe, x, y, seed=run_seed)
    return module, record
