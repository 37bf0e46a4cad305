"""Neural Cleanse (Wang et al. 2019): reverse-engineer the smallest trigger that sends inputs to each class.

A backdoored class needs a far smaller mask than the others (the planted trigger); the MAD anomaly index of
the mask L1 norms finds it. The reconstructed masks and patterns go into the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hoplon.targets.types import Bounds

__all__ = ["MIN_SAMPLES", "NeuralCleanse", "NeuralCleanseResult"]

MIN_SAMPLES = 20
CONSISTENCY = 1.4826


@dataclass(frozen=True, slots=True)
class NeuralCleanseResult:
    """Per class: the L1 norm of the reversed mask, its attack success, and the anomaly index of each class.

    ``masks`` is ``(K, 1, H, W)`` in [0, 1]; ``patterns`` ``(K, C, H, W)`` in the input box. ``flagged`` are the
    classes whose mask is anomalously small (anomaly index above the threshold).
    """

    l1_norms: torch.Tensor
    success: torch.Tensor
    anomaly_index: torch.Tensor
    masks: torch.Tensor
    patterns: torch.Tensor
    flagged: tuple[int, ...]
    threshold: float

    @property
    def max_anomaly_index(self) -> float:
        return float(self.anomaly_index.max())


@dataclass(frozen=True, kw_only=True)
class NeuralCleanse:
    """Trigger reverse-engineering per class with a MAD anomaly index over the mask norms.

    Threat model: the defender holds the model (white box, gradients) and a small set of clean inputs, no
    poisoned data. It finds patch-like triggers; whole-image (blended) and input-specific triggers can evade it.

    References:
        Wang et al. Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks.
        IEEE S&P 2019. https://doi.org/10.1109/SP.2019.00031

    Args:
        steps: optimisation steps per class, >= 1 (default 100).
        lr: Adam learning rate on the mask and pattern logits (default 0.1).
        cost: weight of the mask L1 norm in the loss, > 0 (default 0.05).
        threshold: anomaly index above which a class is flagged (default 2, as in the paper).
        max_samples: clean samples used per step (default 128).
        seed: seed of the initial mask and pattern.

    Shapes: images ``(n, C, H, W)``; the mask is shared by the channels.
    """

    steps: int = 100
    lr: float = 0.1
    cost: float = 5e-2
    threshold: float = 2.0
    max_samples: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise InputError(f"The 'steps' parameter of NeuralCleanse must be an int >= 1. Got {self.steps!r}.")
        if not self.lr > 0 or not self.cost > 0:
            raise InputError(f"NeuralCleanse needs lr > 0 and cost > 0. Got {self.lr!r}, {self.cost!r}.")

    def run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, bounds: Bounds, *, n_classes: int
    ) -> NeuralCleanseResult:
        import torch
        from torch.nn import functional as F

        if x.ndim != 4:
            raise InputError(
                f"Neural Cleanse reverses image triggers (n, C, H, W); got inputs of shape {tuple(x.shape)}."
            )
        if len(x) < MIN_SAMPLES:
            raise InputError(
                f"Neural Cleanse needs at least {MIN_SAMPLES} clean samples for its statistics (better 100+, "
                f"a few per class); got {len(x)}."
            )
        if n_classes < 3:
            raise InputError(f"The MAD anomaly index needs at least 3 classes; the model has {n_classes}.")
        generator = torch.Generator().manual_seed(self.seed)
        lower = torch.broadcast_to(bounds.lower.float(), x.shape[1:])
        span = torch.broadcast_to(bounds.upper.float(), x.shape[1:]) - lower
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        norms, success, masks, patterns = [], [], [], []
        try:
            for target in range(n_classes):
                pool = x[y != target] if bool((y != target).any()) else x
                pool = pool[torch.randperm(len(pool), generator=generator)[: self.max_samples]]
                mask_logit = (
                    torch.full((1, 1, *x.shape[2:]), -2.0)
                    .add_(0.1 * torch.randn((1, 1, *x.shape[2:]), generator=generator))
                    .requires_grad_(True)
                )
                pattern_logit = torch.randn((1, *x.shape[1:]), generator=generator).requires_grad_(True)
                optimiser = torch.optim.Adam([mask_logit, pattern_logit], lr=self.lr)
                labels = torch.full((len(pool),), target, dtype=torch.long)
                for _ in range(self.steps):
                    mask = torch.sigmoid(mask_logit)
                    pattern = lower + span * torch.sigmoid(pattern_logit)
                    stamped = (1 - mask) * pool + mask * pattern
                    loss = F.cross_entropy(model(stamped), labels) + self.cost * mask.sum()
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                with torch.no_grad():
                    mask = torch.sigmoid(mask_logit)
                    pattern = lower + span * torch.sigmoid(pattern_logit)
                    hit = (model((1 - mask) * pool + mask * pattern).argmax(1) == target).float().mean()
                norms.append(float(mask.sum()))
                success.append(float(hit))
                masks.append(mask[0].detach())
                patterns.append(pattern[0].detach())
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
        l1 = torch.tensor(norms, dtype=torch.float64)
        median = l1.median()
        mad = CONSISTENCY * (l1 - median).abs().median() + 1e-12
        anomaly = (median - l1) / mad  # only unusually *small* masks point to a backdoor
        flagged = tuple(int(c) for c in (anomaly > self.threshold).nonzero()[:, 0])
        return NeuralCleanseResult(
            l1_norms=l1,
            success=torch.tensor(success),
            anomaly_index=anomaly,
            masks=torch.stack(masks),
            patterns=torch.stack(patterns),
            flagged=flagged,
            threshold=self.threshold,
        )
