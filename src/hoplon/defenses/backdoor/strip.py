"""STRIP (Gao et al. 2019): a runtime detector of trigger-carrying inputs.

Blend an input with random clean inputs: a clean input's prediction scatters (high entropy), while an input
carrying a backdoor trigger keeps its target class whatever it is mixed with (low entropy). The threshold is
calibrated on clean inputs for a chosen false-positive rate; the calibrated detector is a plain callable, so
the gateway can compose it as a detection stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hoplon.targets.types import Bounds

__all__ = ["STRIP", "STRIPDetector"]


@dataclass(frozen=True, kw_only=True)
class STRIP:
    """Entropy of predictions on superimposed copies of an input.

    Threat model: a runtime defence that sees each input and the model's scores and holds a few clean inputs.
    It targets input-agnostic triggers (BadNets, blended); source-specific triggers can evade it.

    References:
        Gao et al. STRIP: A Defence Against Trojan Attacks on Deep Neural Networks. ACSAC 2019.
        https://arxiv.org/abs/1902.06531

    Args:
        n_overlays: clean inputs blended with each input, >= 2 (default 16).
        alpha: weight of the overlay added to the input (kept whole), in (0, 1]; the sum is clipped to the box
            (default 1, the paper's superimposition). Keeping the input whole keeps its trigger whole.
        seed: seed of the overlay choice.
    """

    n_overlays: int = 16
    alpha: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n_overlays, int) or self.n_overlays < 2:
            raise InputError(f"The 'n_overlays' parameter of STRIP must be an int >= 2. Got {self.n_overlays!r}.")
        if not 0 < self.alpha <= 1:
            raise InputError(f"The 'alpha' parameter of STRIP must be in (0, 1]. Got {self.alpha!r}.")

    def entropy(self, model: nn.Module, x: torch.Tensor, overlays: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """``(n,)`` mean prediction entropy (nats) over ``n_overlays`` blends of each input with ``overlays``."""
        import torch

        generator = torch.Generator().manual_seed(self.seed)
        pick = torch.randint(0, len(overlays), (len(x), self.n_overlays), generator=generator)
        model.eval()
        out = torch.empty(len(x))
        with torch.no_grad():
            for i in range(0, len(x), 64):
                xs = x[i : i + 64]
                mixed = xs[:, None] + self.alpha * overlays[pick[i : i + 64]]
                mixed = bounds.clip(mixed.reshape(-1, *x.shape[1:]))
                probs = model(mixed).softmax(1).clamp_min(1e-12)
                ent = -(probs * probs.log()).sum(1).reshape(len(xs), self.n_overlays)
                out[i : i + 64] = ent.mean(1)
        return out

    def calibrate(self, model: nn.Module, x_clean: torch.Tensor, bounds: Bounds, *, fpr: float = 0.05) -> STRIPDetector:
        """The detector that flags a share ``fpr`` of the clean inputs (half of them serve as overlays)."""
        import torch

        if not 0 < fpr < 1:
            raise InputError(f"The false-positive rate must be in (0, 1). Got {fpr}.")
        need = 2 * math.ceil(1 / fpr)
        if len(x_clean) < need:
            raise InputError(
                f"Calibrating STRIP at a {fpr:.1%} false-positive rate needs at least {need} clean samples "
                f"(half as overlays); got {len(x_clean)}."
            )
        half = len(x_clean) // 2
        overlays, calib = x_clean[:half], x_clean[half:]
        clean = self.entropy(model, calib, overlays, bounds)
        threshold = float(torch.quantile(clean.double(), fpr))
        measured = float((clean < threshold).float().mean())
        return STRIPDetector(
            strip=self,
            model=model,
            overlays=overlays,
            bounds=bounds,
            threshold=threshold,
            fpr=fpr,
            measured_fpr=measured,
        )


@dataclass(frozen=True, kw_only=True)
class STRIPDetector:
    """A calibrated STRIP detector: ``detector(x)`` is True for inputs whose blend entropy is under ``threshold``."""

    strip: STRIP
    model: nn.Module
    overlays: torch.Tensor
    bounds: Bounds
    threshold: float
    fpr: float
    measured_fpr: float

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.strip.entropy(self.model, x, self.overlays, self.bounds)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flagged: torch.Tensor = self.score(x) < self.threshold
        return flagged
