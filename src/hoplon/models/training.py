"""A plain, seeded supervised training loop (the baseline every hardening recipe is compared with)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["TrainingRecord", "accuracy", "train_classifier"]


@dataclass(frozen=True, slots=True)
class TrainingRecord:
    """What a training run did: its configuration, seed, training-data fingerprint and per-epoch figures."""

    config: dict[str, float | int | str]
    seed: int
    epochs: list[dict[str, float]] = field(default_factory=list)
    data_fingerprint: str = ""  # Merkle root over the training records (``hoplon data fingerprint``)


def accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> float:
    import torch

    module.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            correct += int((module(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    return correct / max(len(x), 1)


def train_classifier(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> TrainingRecord:
    """Train ``module`` in place with Adam and cross-entropy; deterministic under ``seed``."""
    import torch
    from torch.nn import functional as F

    from hoplon.data.fingerprint import records_root

    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise InputError(f"epochs, batch_size and lr must be positive. Got {epochs}, {batch_size}, {lr}.")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    record = TrainingRecord(
        config={
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "optimiser": "adam",
        },
        seed=seed,
        data_fingerprint=records_root(x, y),
    )
    n = len(x)
    for epoch in range(epochs):
        module.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            optimiser.zero_grad()
            loss = F.cross_entropy(module(x[idx]), y[idx])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        record.epochs.append({"epoch": epoch + 1, "loss": total / n, "train_accuracy": accuracy(module, x, y)})
    module.eval()
    return record
