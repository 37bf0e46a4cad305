"""Shared shapes of the poisoning attacks: the protocol every one follows and the result it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset

__all__ = ["PoisonAttack", "PoisonedData"]


@dataclass(frozen=True, slots=True)
class PoisonedData:
    """A poisoned copy of a training set.

    Attributes:
        data: the poisoned training set (same size and order as the clean one).
        poison_index: ``(k,)`` int64 indices of the records the attacker changed (the ground truth).
        target_class: the class a backdoor sends triggered inputs to, or ``None`` (untargeted flips).
        source_labels: the labels of the changed records before poisoning.
    """

    data: Dataset
    poison_index: torch.Tensor
    target_class: int | None
    source_labels: torch.Tensor

    @property
    def is_poison(self) -> torch.Tensor:
        """``(n,)`` bool mask of the poisoned records."""
        import torch

        mask = torch.zeros(self.data.n, dtype=torch.bool)
        mask[self.poison_index] = True
        return mask


class PoisonAttack(Protocol):
    """A training-time attack: ``run(data, seed=...)`` returns the poisoned training set.

    ``rate`` is the share of the training set the attacker controls, in (0, 1).
    """

    @property
    def rate(self) -> float: ...

    def run(self, data: Dataset, *, seed: int = 0) -> PoisonedData: ...

    def apply_trigger(self, x: torch.Tensor, data: Dataset) -> torch.Tensor | None:
        """The test-time trigger stamped on ``x`` (within ``data``'s bounds), or ``None`` for no backdoor."""
        ...
