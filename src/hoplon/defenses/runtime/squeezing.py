"""Feature squeezing (Xu, Evans, Qi 2018): flag inputs whose prediction moves when the input is squeezed.

A squeezer removes detail an attacker needs but a clean input does not: reducing the colour bit depth, and
median smoothing for images. The score of an input is the largest L1 distance between the model's
probability vector on the input and on a squeezed copy; clean inputs score low, adversarial ones high. The
threshold is calibrated on clean data for a chosen false-positive rate, and the detector reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Bounds, Target

__all__ = ["FeatureSqueezing", "SqueezingDetector"]


@dataclass(frozen=True, kw_only=True)
class FeatureSqueezing:
    """The squeezers and how to score an input with them.

    Threat model: a runtime detector for evasion attacks; it sees each input and the model's scores. An
    adaptive attacker who knows the squeezers can evade it (He et al. 2017), so it is a tripwire for
    non-adaptive attacks, not a guarantee.

    References:
        Xu, Evans, Qi. Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks. NDSS 2018.
        https://arxiv.org/abs/1704.01155

    Args:
        bit_depth: bits kept per feature after scaling the box to [0, 1], 1–16 (default 4); 0 disables.
        median_size: side of the median filter for image inputs ``(C, H, W)``, ≥ 2, or 0 (default) to disable;
            it helps on images of 28×28 and up, but blurs 8×8 digits so much that clean inputs score high.
    """

    bit_depth: int = 4
    median_size: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.bit_depth <= 16:
            raise InputError(f"The 'bit_depth' parameter of FeatureSqueezing must be in 0 .. 16. Got {self.bit_depth}.")
        if self.median_size == 1 or self.median_size < 0:
            raise InputError(f"The 'median_size' parameter must be 0 (off) or >= 2. Got {self.median_size}.")
        if self.bit_depth == 0 and self.median_size == 0:
            raise InputError("FeatureSqueezing needs at least one squeezer (bit_depth or median_size).")

    def squeezed(self, x: torch.Tensor, bounds: Bounds) -> list[torch.Tensor]:
        """The squeezed copies of ``x`` (bit depth; median filter for images)."""
        out = []
        if self.bit_depth:
            lower = bounds.lower.to(x.dtype)
            span = (bounds.upper - bounds.lower).to(x.dtype)
            levels = 2**self.bit_depth - 1
            unit = (x - lower) / span
            out.append(lower + (unit * levels).round() / levels * span)
        if self.median_size and x.ndim == 4:
            out.append(_median(x, self.median_size))
        return out

    def scores(self, target: Target, x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """Per-sample score: max over squeezers of ``‖p(x) − p(squeeze(x))‖₁`` (in [0, 2])."""
        import torch

        base = _probabilities(target, x)
        worst = torch.zeros(len(x))
        for copy in self.squeezed(x, bounds):
            worst = torch.maximum(worst, (base - _probabilities(target, copy)).abs().sum(dim=1))
        return worst

    def calibrate(
        self, target: Target, x_clean: torch.Tensor, bounds: Bounds, *, fpr: float = 0.05
    ) -> SqueezingDetector:
        """The detector whose threshold flags a share ``fpr`` of the clean inputs ``x_clean``."""
        import torch

        if not 0 < fpr < 1:
            raise InputError(f"The false-positive rate must be in (0, 1). Got {fpr}.")
        if len(x_clean) < math.ceil(1 / fpr):
            raise InputError(
                f"Calibrating a {fpr:.1%} false-positive rate needs at least {math.ceil(1 / fpr)} clean samples; "
                f"got {len(x_clean)}."
            )
        clean = self.scores(target, x_clean, bounds)
        threshold = float(torch.quantile(clean.double(), 1 - fpr))
        measured = float((clean > threshold).float().mean())
        return SqueezingDetector(
            squeezing=self, target=target, bounds=bounds, threshold=threshold, fpr=fpr, measured_fpr=measured
        )


@dataclass(frozen=True, kw_only=True)
class SqueezingDetector:
    """A calibrated feature-squeezing detector: ``detector(x)`` is True for inputs it flags as adversarial.

    ``threshold`` is the score above which an input is flagged; ``fpr`` the rate asked for and
    ``measured_fpr`` the rate on the calibration data.
    """

    squeezing: FeatureSqueezing
    target: Target
    bounds: Bounds
    threshold: float
    fpr: float
    measured_fpr: float

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.squeezing.scores(self.target, x, self.bounds)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flagged: torch.Tensor = self.score(x) > self.threshold
        return flagged


def _probabilities(target: Target, x: torch.Tensor) -> torch.Tensor:
    scores = target.predict(x)
    if target.score_kind == "logits":
        return scores.softmax(dim=1)
    return scores


def _median(x: torch.Tensor, size: int) -> torch.Tensor:
    """Median filter over each channel with a ``size``×``size`` window (reflect padding; the upper median)."""
    from torch.nn import functional as F

    pad_lo, pad_hi = (size - 1) // 2, size // 2
    padded = F.pad(x, (pad_lo, pad_hi, pad_lo, pad_hi), mode="reflect")
    patches = padded.unfold(2, size, 1).unfold(3, size, 1)
    flat = patches.reshape(*patches.shape[:4], size * size)
    values: torch.Tensor = flat.sort(dim=-1).values[..., (size * size) // 2]
    return values
