"""Label flipping: the attacker relabels a share of the training records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hoplon.attacks.poisoning._private import check_class, check_rate, check_target_in, choose
from hoplon.attacks.poisoning.registry import register_poisoning
from hoplon.attacks.poisoning.types import PoisonedData
from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset

__all__ = ["LabelFlip"]


@register_poisoning("label-flip")
@dataclass(frozen=True, kw_only=True)
class LabelFlip:
    """Flip the labels of a share of the training set, at random or from one class to another.

    Threat model: the attacker controls the labels (not the inputs) of ``rate`` of the training records, e.g.
    a crowd-sourced labelling pipeline. ``random`` flips each chosen record to a uniformly drawn other class
    (availability attack); ``targeted`` relabels records of ``source_class`` as ``target_class`` (a
    class-pair attack; ``rate`` is still a share of the whole set).

    References:
        Biggio, Nelson, Laskov. Poisoning Attacks against Support Vector Machines. ICML 2012.
        https://arxiv.org/abs/1206.6389

    Args:
        rate: share of the training set to flip, in (0, 1).
        mode: ``random`` (default) or ``targeted``.
        source_class: the class whose records are relabelled (``targeted`` only).
        target_class: the label they get (``targeted`` only).

    Example:
        >>> poisoned = LabelFlip(rate=0.1).run(demo("digits", split="train"), seed=0)
    """

    rate: float
    mode: Literal["random", "targeted"] = "random"
    source_class: int = 0
    target_class: int = 1

    def __post_init__(self) -> None:
        check_rate(self.rate, "LabelFlip")
        if self.mode not in ("random", "targeted"):
            raise InputError(f"The 'mode' parameter of LabelFlip must be 'random' or 'targeted'. Got {self.mode!r}.")
        check_class(self.source_class, "LabelFlip", "source_class")
        check_class(self.target_class, "LabelFlip")
        if self.mode == "targeted" and self.source_class == self.target_class:
            raise InputError("LabelFlip: 'source_class' and 'target_class' must differ.")

    def run(self, data: Dataset, *, seed: int = 0) -> PoisonedData:
        import torch

        from hoplon.data import Dataset

        n_classes = int(data.y.max()) + 1
        if n_classes < 2:
            raise InputError(f"Label flipping needs at least two classes; {data.name} has one.")
        y = data.y.clone()
        if self.mode == "targeted":
            check_target_in(data, max(self.source_class, self.target_class), "LabelFlip")
            index = choose((data.y == self.source_class).nonzero()[:, 0], data.n, self.rate, seed, "LabelFlip")
            y[index] = self.target_class
            target: int | None = self.target_class
        else:
            index = choose(torch.arange(data.n), data.n, self.rate, seed, "LabelFlip")
            generator = torch.Generator().manual_seed(seed + 1)
            shift = torch.randint(1, n_classes, (len(index),), generator=generator)
            y[index] = (data.y[index] + shift) % n_classes
            target = None
        poisoned = Dataset(
            x=data.x,
            y=y,
            bounds=data.bounds,
            name=f"{data.name}+label-flip",
            kind=data.kind,
            feature_names=data.feature_names,
        )
        return PoisonedData(data=poisoned, poison_index=index, target_class=target, source_labels=data.y[index])

    def apply_trigger(self, x: torch.Tensor, data: Dataset) -> torch.Tensor | None:
        return None
