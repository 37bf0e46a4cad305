"""Surrogate models for the extraction attacks: training, querying and transfer sets (also used by
``hoplon redteam gateway``, hence public)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, batches

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hoplon.targets.types import Target

__all__ = ["default_surrogate", "query", "train_surrogate", "transformed_digits"]


def default_surrogate(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """A small CNN for image-shaped inputs, an MLP otherwise (the attacker's architecture guess)."""
    from hoplon.models import digits_cnn, tabular_mlp

    if len(input_shape) == 3 and input_shape[1] >= 4 and input_shape[2] >= 4:
        return digits_cnn(input_shape, n_classes)
    return (
        tabular_mlp((math.prod(input_shape),), n_classes)
        if len(input_shape) == 1
        else _flat_mlp(input_shape, n_classes)
    )


def _flat_mlp(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 64), nn.ReLU(), nn.Linear(64, n_classes))


def query(target: Target, x: torch.Tensor, *, label_only: bool) -> torch.Tensor:
    """The victim's answer as a ``(batch, n_classes)`` probability matrix (one-hot when labels only)."""
    import torch

    scores = target.predict(x).float()
    if label_only:
        return torch.nn.functional.one_hot(scores.argmax(1), target.n_classes).float()
    if target.score_kind == "logits":
        return torch.softmax(scores, dim=1)
    return scores / scores.sum(1, keepdim=True).clamp_min(1e-12)


def labels_only(target: Target) -> bool:
    return Capability.SCORES not in target.capabilities


def train_surrogate(
    module: nn.Module,
    x: torch.Tensor,
    soft: torch.Tensor,
    *,
    steps: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 3e-3,
) -> nn.Module:
    """Train ``module`` in place on soft targets (cross-entropy against the victim's answers)."""
    import torch

    if len(x) == 0:
        raise InputError("A surrogate needs at least one query to train on.")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    module.train()
    optimiser = torch.optim.Adam(module.parameters(), lr=lr)
    epochs = max(1, math.ceil(steps * batch_size / len(x)))
    done = 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for s in batches(len(x), batch_size):
            idx = order[s]
            optimiser.zero_grad()
            logp = torch.log_softmax(module(x[idx]), dim=1)
            loss = -(soft[idx] * logp).sum(1).mean()
            loss.backward()
            optimiser.step()
            done += 1
            if done >= steps:
                break
        if done >= steps:
            break
    module.eval()
    return module


def transformed_digits(n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` 8×8 images in [0, 1] from a *different* distribution than the digits demo's: scikit-learn's bundled
    digits rotated by 90°/270°, transposed, inverted, or blended in pairs, plus blurred noise blobs.

    Knockoff Nets' premise is an attacker with natural data that is not the victim's; this is the bundled,
    download-free stand-in for an 8×8 model (a real attacker would use a large image corpus).
    """
    import numpy as np
    import torch
    from sklearn import datasets

    rng = np.random.default_rng(seed)
    base = (datasets.load_digits().data / 16.0).reshape(-1, 8, 8)
    pick = base[rng.integers(0, len(base), n)]
    other = base[rng.integers(0, len(base), n)]
    kind = rng.integers(0, 5, n)
    out = np.empty_like(pick)
    for i in range(n):
        img = pick[i]
        if kind[i] == 0:
            out[i] = np.rot90(img, 1)
        elif kind[i] == 1:
            out[i] = np.rot90(img, 3)
        elif kind[i] == 2:
            out[i] = 1.0 - np.rot90(img, 2)
        elif kind[i] == 3:
            out[i] = np.clip(0.6 * img.T + 0.6 * np.rot90(other[i], 1), 0, 1)
        else:
            blob = rng.random((4, 4))
            out[i] = np.kron(blob, np.ones((2, 2)))
    return torch.from_numpy(out.astype(np.float32)).reshape(n, 1, 8, 8)
