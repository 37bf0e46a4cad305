"""Model factories for recipes in the privacy tests (referred to as ``tests.privacy.factories:NAME``)."""

from __future__ import annotations

from torch import nn


def flat_mlp(input_shape: tuple[int, ...] = (1, 8, 8), n_classes: int = 10, hidden: int = 256) -> nn.Module:
    """A wide two-layer MLP on flattened inputs: memorises small training sets quickly."""
    n_features = 1
    for s in input_shape:
        n_features *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


def with_batchnorm(input_shape: tuple[int, ...] = (30,), n_classes: int = 2) -> nn.Module:
    """An MLP with BatchNorm, which Opacus cannot make private (for the error-message test)."""
    return nn.Sequential(nn.Linear(input_shape[0], 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, n_classes))
