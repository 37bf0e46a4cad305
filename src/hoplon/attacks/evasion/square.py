"""Square Attack: score-based random search with square-shaped updates (Andriushchenko et al. 2020)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hoplon.attacks.evasion._blackbox import affordable, image_view, score_margin
from hoplon.attacks.evasion.ops import check_eps
from hoplon.attacks.registry import register
from hoplon.attacks.types import AdversarialBatch, AttackInfo, Norm
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, require

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Bounds, Target

__all__ = ["SquareAttack"]

# The iterations (scaled to a 10,000-query run) after which the square's area is halved (the paper's schedule).
_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_TINY = 1e-12


def _fraction(p_init: float, iteration: int, n_iters: int) -> float:
    """The share of the input a square covers at ``iteration``: ``p_init`` halved at each passed milestone."""
    scaled = int(iteration / max(n_iters, 1) * 10_000)
    halvings = sum(1 for t in _SCHEDULE if scaled > t)
    return float(p_init / 2**halvings)


def _window(p: float, c: int, h: int, w: int) -> tuple[int, int]:
    """Side lengths of the square (a run of ``p·d`` features for vectors)."""
    if h == 1:
        return 1, max(1, min(round(p * w), max(w - 1, 1)))
    s = round(math.sqrt(p * h * w))
    s = max(1, min(s, max(min(h, w) - 1, 1)))
    return s, s


def _pseudo_gaussian(a: int, b: int) -> torch.Tensor:
    """Concentric rectangles with weights ``1/(k+1)²`` (the paper's L2 building block), unit norm."""
    import torch

    delta = torch.zeros(a, b)
    ca, cb = a // 2, b // 2
    for k in range(max(ca, cb) + 1):
        delta[max(ca - k, 0) : min(ca + k + 1, a), max(cb - k, 0) : min(cb + k + 1, b)] += 1.0 / (k + 1) ** 2
    out: torch.Tensor = delta / (delta.norm() + _TINY)
    return out


def _meta_pseudo_gaussian(a: int, b: int, rng: torch.Generator) -> torch.Tensor:
    """Two pseudo-Gaussian halves of opposite sign, randomly transposed when square (unit norm)."""
    import torch

    if a == 1 and b == 1:
        return torch.ones(1, 1)
    if a >= 2:
        delta = torch.cat([_pseudo_gaussian(a // 2, b), -_pseudo_gaussian(a - a // 2, b)], dim=0)
    else:
        delta = torch.cat([_pseudo_gaussian(a, b // 2), -_pseudo_gaussian(a, b - b // 2)], dim=1)
    delta = delta / (delta.norm() + _TINY)
    if a == b and float(torch.rand(1, generator=rng)) > 0.5:
        delta = delta.t()
    out: torch.Tensor = delta
    return out


def _randint(high: int, rng: torch.Generator) -> int:
    import torch

    return int(torch.randint(0, max(high, 1), (1,), generator=rng))


@register("square")
@dataclass(frozen=True, kw_only=True)
class SquareAttack:
    """Square Attack: random search over square-shaped perturbations, using only the model's scores.

    Threat model: black-box, score-based (needs class scores, no gradients), untargeted, L∞ or L2 bounded.
    Each iteration changes one random square of the image (a random run of features for tabular inputs)
    and keeps the change if it lowers the margin ``z_y − max_{i≠y} z_i``; the square shrinks on the paper's
    schedule. A sample costs one query per iteration and stops costing queries once it is misclassified.
    The attack never lets a target's query budget stop it empty-handed: it stops early, keeping the rows the
    framework needs to re-check its output, and returns the best points found so far.

    References:
        Andriushchenko, Croce, Flammarion, Hein. Square Attack: a query-efficient black-box adversarial
        attack via random search. ECCV 2020. https://arxiv.org/abs/1912.00049

    Args:
        norm: ``linf`` (default) or ``l2``.
        max_queries: model queries per sample, ≥ 2 (default 1000; the paper reports up to 10,000).
        p_init: initial share of the input a square covers, in (0, 1] (default 0.05 for L∞, use 0.1 for L2).

    Inputs ``x`` are ``(n, *shape)`` float32 inside ``bounds``; ``y`` are int64 labels. Works on any
    target with scores: torch, ONNX, scikit-learn, HTTP.

    Example:
        >>> from hoplon.attacks import SquareAttack, evaluate
        >>> result = evaluate(SquareAttack(max_queries=1000), target, x, y, eps=[0.1])  # doctest: +SKIP
    """

    info: ClassVar[AttackInfo] = AttackInfo(
        name="square",
        title="Square Attack",
        citation="Andriushchenko, Croce, Flammarion, Hein. Square Attack: a query-efficient black-box "
        "adversarial attack via random search. ECCV 2020.",
        url="https://arxiv.org/abs/1912.00049",
        threat_model="Black-box, score-based: random search with square updates inside an L-inf or L2 ball, "
        "using only the model's class scores.",
        capability=Capability.SCORES,
        norms=("linf", "l2"),
        taxonomy=("atlas:AML.T0043.001", "atlas:AML.T0015", "owasp-ml:ML01"),
    )
    norm: Norm = "linf"
    max_queries: int = 1000
    p_init: float = 0.05

    def __post_init__(self) -> None:
        if self.norm not in self.info.norms:
            raise InputError(f"The 'norm' parameter of SquareAttack must be one of linf, l2. Got {self.norm!r}.")
        if self.max_queries < 2:
            raise InputError(
                f"The 'max_queries' parameter of SquareAttack must be an int >= 2. Got {self.max_queries}."
            )
        if not 0 < self.p_init <= 1:
            raise InputError(f"The 'p_init' parameter of SquareAttack must be in (0, 1]. Got {self.p_init}.")

    def run(
        self, target: Target, x: torch.Tensor, y: torch.Tensor, *, eps: float, bounds: Bounds, rng: torch.Generator
    ) -> AdversarialBatch:
        require(target, Capability.SCORES, who="SquareAttack")
        check_eps("SquareAttack", eps)
        n = int(x.shape[0])
        if n == 0:
            return AdversarialBatch(x.clone())
        shape = tuple(int(s) for s in x.shape[1:])
        c, h, w = image_view(shape)
        reserve = n  # rows the framework spends re-checking the output
        if not affordable(target, n, reserve=reserve):
            return AdversarialBatch(x.clone())
        xv = x.reshape(n, c, h, w)
        # The box once, in the (c, h, w) view: one clamp per candidate instead of reshapes and casts.
        box = (
            bounds.lower.to(x.dtype).expand(shape).reshape(1, c, h, w),
            bounds.upper.to(x.dtype).expand(shape).reshape(1, c, h, w),
        )
        best = self._init(xv, eps, box, rng)
        margin = score_margin(target, best.reshape(x.shape), y)
        n_iters = self.max_queries - 1
        for i in range(n_iters):
            active = (margin > 0).nonzero().squeeze(1)
            if active.numel() == 0 or not affordable(target, int(active.numel()), reserve=reserve):
                break
            p = _fraction(self.p_init, i, n_iters)
            if self.norm == "linf":
                candidate = self._step_linf(xv[active], best[active], eps, p, box, rng)
            else:
                candidate = self._step_l2(xv[active], best[active], eps, p, box, rng)
            new_margin = score_margin(target, candidate.reshape(-1, *shape), y[active])
            better = new_margin < margin[active]
            margin[active[better]] = new_margin[better]
            best[active[better]] = candidate[better]
        return AdversarialBatch(best.reshape(x.shape).detach())

    @staticmethod
    def _clip(v: torch.Tensor, box: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        import torch

        return torch.clamp(v, box[0], box[1])

    def _init(
        self, xv: torch.Tensor, eps: float, box: tuple[torch.Tensor, torch.Tensor], rng: torch.Generator
    ) -> torch.Tensor:
        import torch

        n, c, h, w = xv.shape
        if self.norm == "linf":
            # Vertical stripes of ±ε (one sign per column and channel), the paper's initialisation.
            signs = torch.randint(0, 2, (n, c, 1, w), generator=rng).to(xv.dtype) * 2 - 1
            return self._clip(xv + eps * signs, box)
        s = max(h // 5, 1)
        sw = max(w // 5, 1)
        delta = torch.zeros_like(xv)
        for top in range(0, h - s + 1, s):
            for left in range(0, w - sw + 1, sw):
                signs = torch.randint(0, 2, (n, c, 1, 1), generator=rng).to(xv.dtype) * 2 - 1
                delta[:, :, top : top + s, left : left + sw] += _meta_pseudo_gaussian(s, sw, rng) * signs
        delta = delta / (delta.flatten(1).norm(dim=1).reshape(n, 1, 1, 1) + _TINY) * eps
        return self._clip(xv + delta, box)

    def _step_linf(
        self,
        xv: torch.Tensor,
        best: torch.Tensor,
        eps: float,
        p: float,
        box: tuple[torch.Tensor, torch.Tensor],
        rng: torch.Generator,
    ) -> torch.Tensor:
        import torch

        m, c, h, w = xv.shape
        sh, sw = _window(p, c, h, w)
        top, left = _randint(h - sh + 1, rng), _randint(w - sw + 1, rng)
        win = (slice(None), slice(None), slice(top, top + sh), slice(left, left + sw))
        signs = torch.randint(0, 2, (m, c, 1, 1), generator=rng).to(xv.dtype) * 2 - 1
        candidate = best.clone()
        candidate[win] = xv[win] + eps * signs
        candidate = self._clip(candidate, box)
        # A square that changes nothing wastes a query: flip its signs (the paper resamples until it changes).
        same = (candidate[win] - best[win]).abs().flatten(1).amax(dim=1) < 1e-7
        if bool(same.any()):
            flipped = best[same].clone()
            flipped[win] = xv[same][win] - eps * signs[same]
            candidate[same] = self._clip(flipped, box)
        return candidate

    def _step_l2(
        self,
        xv: torch.Tensor,
        best: torch.Tensor,
        eps: float,
        p: float,
        box: tuple[torch.Tensor, torch.Tensor],
        rng: torch.Generator,
    ) -> torch.Tensor:
        import torch

        m, c, h, w = xv.shape
        sh, sw = _window(p, c, h, w)
        t1, l1 = _randint(h - sh + 1, rng), _randint(w - sw + 1, rng)
        t2, l2 = _randint(h - sh + 1, rng), _randint(w - sw + 1, rng)
        win1 = (slice(None), slice(None), slice(t1, t1 + sh), slice(l1, l1 + sw))
        win2 = (slice(None), slice(None), slice(t2, t2 + sh), slice(l2, l2 + sw))
        delta = best - xv
        total = delta.flatten(1).norm(dim=1).reshape(m, 1, 1, 1)
        mask = torch.zeros_like(delta)
        mask[win1] = 1.0
        mask[win2] = 1.0
        # Per-channel mass of the two windows, which the new square redistributes (the paper's L2 update).
        in_windows = (delta * mask).pow(2).sum(dim=(2, 3), keepdim=True).sqrt()
        old = delta[win1]
        old = old / (old.pow(2).sum(dim=(2, 3), keepdim=True).sqrt() + 1e-10)
        signs = torch.randint(0, 2, (m, c, 1, 1), generator=rng).to(xv.dtype) * 2 - 1
        new = _meta_pseudo_gaussian(sh, sw, rng).to(xv.dtype) * signs + old
        new = new / (new.pow(2).sum(dim=(2, 3), keepdim=True).sqrt() + _TINY)
        spare = torch.clamp(eps**2 - total.pow(2), min=0.0) / c
        new = new * (spare + in_windows.pow(2)).sqrt()
        delta = delta.clone()
        delta[win2] = 0.0
        delta[win1] = new
        norm = delta.flatten(1).norm(dim=1).reshape(m, 1, 1, 1)
        return self._clip(xv + delta / (norm + _TINY) * eps, box)
