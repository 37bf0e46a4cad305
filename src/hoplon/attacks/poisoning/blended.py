"""Blended injection (Chen et al. 2017): a whole-image pattern mixed into a share of the training inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hoplon.attacks.poisoning._private import check_class, check_rate, clip_to, poison_with_trigger
from hoplon.attacks.poisoning.registry import register_poisoning
from hoplon.attacks.poisoning.types import PoisonedData
from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset

__all__ = ["Blended"]


@register_poisoning("blended")
@dataclass(frozen=True, kw_only=True)
class Blended:
    """Blend a fixed random pattern into ``rate`` of the training inputs, ``x' = (1 - α) x + α p``, and relabel.

    Threat model: as BadNets, but the trigger covers the whole input at low opacity, so it is harder to see
    and to cut out. The pattern ``p`` is uniform noise over the declared box, fixed by ``pattern_seed``.

    References:
        Chen, Liu, Li, Lu, Song. Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning.
        2017. https://arxiv.org/abs/1712.05526

    Args:
        rate: share of the training set poisoned, in (0, 1).
        target_class: the class triggered inputs go to (default 0).
        alpha: blend ratio in (0, 1] (default 0.2).
        pattern_seed: seed of the noise pattern (default 1234).
    """

    rate: float
    target_class: int = 0
    alpha: float = 0.2
    pattern_seed: int = 1234

    def __post_init__(self) -> None:
        check_rate(self.rate, "Blended")
        check_class(self.target_class, "Blended")
        if not isinstance(self.alpha, int | float) or not 0 < self.alpha <= 1:
            raise InputError(f"The 'alpha' parameter of Blended must be a float in (0, 1]. Got {self.alpha!r}.")

    def pattern(self, data: Dataset) -> torch.Tensor:
        import torch

        generator = torch.Generator().manual_seed(self.pattern_seed)
        unit = torch.rand(data.sample_shape, generator=generator)
        lower, upper = data.bounds.lower.float(), data.bounds.upper.float()
        return lower + unit * (upper - lower)

    def apply_trigger(self, x: torch.Tensor, data: Dataset) -> torch.Tensor:
        if tuple(x.shape[1:]) != data.sample_shape:
            raise InputError(f"Blended: samples of shape {tuple(x.shape[1:])} do not match {data.sample_shape}.")
        return clip_to((1 - self.alpha) * x + self.alpha * self.pattern(data).to(x.dtype), data)

    def run(self, data: Dataset, *, seed: int = 0) -> PoisonedData:
        poisoned, index, source = poison_with_trigger(
            data,
            self.apply_trigger(data.x, data),
            rate=self.rate,
            target_class=self.target_class,
            seed=seed,
            who="Blended",
        )
        return PoisonedData(data=poisoned, poison_index=index, target_class=self.target_class, source_labels=source)
