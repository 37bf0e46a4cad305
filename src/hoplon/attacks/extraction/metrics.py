"""Extraction metrics: fidelity (agreement with the victim) and surrogate accuracy, on held-out data."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["agreement", "fidelity"]


def _labels(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    import torch

    module.eval()
    with torch.no_grad():
        return torch.cat([module(x[i : i + 1024]).argmax(1) for i in range(0, len(x), 1024)])


def fidelity(surrogate: nn.Module, victim_labels: torch.Tensor, x: torch.Tensor) -> float:
    """Share of held-out inputs ``x`` on which the surrogate's label equals the victim's (``victim_labels``)."""
    return float((_labels(surrogate, x) == victim_labels).float().mean())


def agreement(surrogate: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The surrogate's accuracy against true labels ``y``."""
    return float((_labels(surrogate, x) == y).float().mean())
