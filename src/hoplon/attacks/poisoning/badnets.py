"""BadNets (Gu et al. 2017): a patch trigger stamped on a share of the training images, relabelled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hoplon.attacks.poisoning._private import check_class, check_rate, poison_with_trigger
from hoplon.attacks.poisoning.registry import register_poisoning
from hoplon.attacks.poisoning.types import PoisonedData
from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset

__all__ = ["BadNets"]

Corner = Literal["bottom-right", "bottom-left", "top-right", "top-left"]


@register_poisoning("badnets")
@dataclass(frozen=True, kw_only=True)
class BadNets:
    """Stamp a square patch on ``rate`` of the training images (not of the target class) and relabel them.

    Threat model: the attacker adds or edits ``rate`` of the training records (inputs and labels); at test
    time, any input carrying the patch is classified as ``target_class`` while clean accuracy stays intact.
    The patch is a checkerboard of the box's upper and lower values, so it is within the declared bounds.

    References:
        Gu, Dolan-Gavitt, Garg. BadNets: Identifying Vulnerabilities in the Machine Learning Model Supply
        Chain. 2017. https://arxiv.org/abs/1708.06733

    Args:
        rate: share of the training set poisoned, in (0, 1).
        target_class: the class triggered inputs go to (default 0).
        patch_size: side of the square patch in pixels, >= 1, no larger than the image (default 3).
        corner: where the patch goes (default ``bottom-right``).

    Shapes: images ``(n, C, H, W)``.

    Example:
        >>> poisoned = BadNets(rate=0.05, target_class=0).run(demo("digits", split="train"))
    """

    rate: float
    target_class: int = 0
    patch_size: int = 3
    corner: Corner = "bottom-right"

    def __post_init__(self) -> None:
        check_rate(self.rate, "BadNets")
        check_class(self.target_class, "BadNets")
        if isinstance(self.patch_size, bool) or not isinstance(self.patch_size, int) or self.patch_size < 1:
            raise InputError(f"The 'patch_size' parameter of BadNets must be an int >= 1. Got {self.patch_size!r}.")
        if self.corner not in ("bottom-right", "bottom-left", "top-right", "top-left"):
            raise InputError(f"The 'corner' parameter of BadNets is not a corner. Got {self.corner!r}.")

    def _window(self, shape: tuple[int, ...]) -> tuple[slice, slice]:
        if len(shape) != 3:
            raise InputError(f"BadNets stamps images of shape (C, H, W); got samples of shape {shape}.")
        _, height, width = shape
        size = self.patch_size
        if size > height or size > width:
            raise InputError(
                f"The BadNets trigger ({size}×{size}) is larger than the input ({height}×{width}); "
                f"use a patch_size of at most {min(height, width)}."
            )
        rows = slice(height - size, height) if self.corner.startswith("bottom") else slice(0, size)
        cols = slice(width - size, width) if self.corner.endswith("right") else slice(0, size)
        return rows, cols

    def apply_trigger(self, x: torch.Tensor, data: Dataset) -> torch.Tensor:
        import torch

        rows, cols = self._window(tuple(int(s) for s in x.shape[1:]))
        size = self.patch_size
        checker = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2 == 0
        shape = tuple(int(s) for s in x.shape[1:])
        upper = torch.broadcast_to(data.bounds.upper.to(x.dtype), shape)[:, rows, cols]
        lower = torch.broadcast_to(data.bounds.lower.to(x.dtype), shape)[:, rows, cols]
        out = x.clone()
        out[:, :, rows, cols] = torch.where(checker, upper, lower)
        return out

    def run(self, data: Dataset, *, seed: int = 0) -> PoisonedData:
        stamped = self.apply_trigger(data.x, data)
        poisoned, index, source = poison_with_trigger(
            data, stamped, rate=self.rate, target_class=self.target_class, seed=seed, who="BadNets"
        )
        return PoisonedData(data=poisoned, poison_index=index, target_class=self.target_class, source_labels=source)
