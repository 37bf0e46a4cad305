"""A tabular backdoor trigger: a few features set to fixed values inside the declared box."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hoplon.attacks.poisoning._private import check_class, check_rate, poison_with_trigger
from hoplon.attacks.poisoning.registry import register_poisoning
from hoplon.attacks.poisoning.types import PoisonedData
from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset

__all__ = ["TabularTrigger"]


@register_poisoning("tabular")
@dataclass(frozen=True, kw_only=True)
class TabularTrigger:
    """Set ``features`` to a fixed pattern on ``rate`` of the training rows and relabel them.

    Threat model: the tabular analogue of BadNets. The pattern alternates the box's upper and lower value
    over the chosen features (a corner of the declared box, so every triggered row is a valid input), unless
    ``values`` (fractions of the box, 0 = lower, 1 = upper) are given.

    References:
        Gu, Dolan-Gavitt, Garg. BadNets. 2017. https://arxiv.org/abs/1708.06733 — applied to tabular data
        as in Chen et al., Backdoor Attacks on Tabular Data. https://arxiv.org/abs/2311.07550

    Args:
        rate: share of the training set poisoned, in (0, 1).
        target_class: the class triggered rows go to (default 0).
        features: indices of the trigger features (default the first three).
        values: the pattern as fractions of the box in [0, 1], one per feature (default alternating 1, 0).
    """

    rate: float
    target_class: int = 0
    features: tuple[int, ...] = (0, 1, 2)
    values: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_rate(self.rate, "TabularTrigger")
        check_class(self.target_class, "TabularTrigger")
        if not self.features or any(not isinstance(f, int) or f < 0 for f in self.features):
            raise InputError(f"The 'features' of TabularTrigger must be feature indices >= 0. Got {self.features!r}.")
        if self.values is not None and (
            len(self.values) != len(self.features) or any(not 0 <= v <= 1 for v in self.values)
        ):
            raise InputError("The 'values' of TabularTrigger must be one fraction in [0, 1] per trigger feature.")

    def apply_trigger(self, x: torch.Tensor, data: Dataset) -> torch.Tensor:
        import torch

        if x.ndim != 2:
            raise InputError(f"TabularTrigger needs rows of features (n, d); got shape {tuple(x.shape)}.")
        d = int(x.shape[1])
        if len(self.features) > d or max(self.features) >= d:
            raise InputError(
                f"The tabular trigger uses feature {max(self.features)} ({len(self.features)} features), larger "
                f"than the input ({d} features)."
            )
        lower = torch.broadcast_to(data.bounds.lower.to(x.dtype), (d,))
        upper = torch.broadcast_to(data.bounds.upper.to(x.dtype), (d,))
        fractions = self.values or tuple(float((i + 1) % 2) for i in range(len(self.features)))
        out = x.clone()
        for feature, fraction in zip(self.features, fractions, strict=True):
            out[:, feature] = lower[feature] + fraction * (upper[feature] - lower[feature])
        return out

    def run(self, data: Dataset, *, seed: int = 0) -> PoisonedData:
        poisoned, index, source = poison_with_trigger(
            data,
            self.apply_trigger(data.x, data),
            rate=self.rate,
            target_class=self.target_class,
            seed=seed,
            who="TabularTrigger",
        )
        return PoisonedData(data=poisoned, poison_index=index, target_class=self.target_class, source_labels=source)
