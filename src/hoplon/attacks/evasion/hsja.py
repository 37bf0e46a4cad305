"""HopSkipJump: decision-based minimum-norm attack from labels only (Chen, Jordan, Wainwright 2020)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hoplon.attacks.evasion._blackbox import affordable
from hoplon.attacks.evasion.ops import flat_norm
from hoplon.attacks.registry import register
from hoplon.attacks.types import AdversarialBatch, AttackInfo, Norm
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, require

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Bounds, Target

__all__ = ["HopSkipJump"]

_TINY = 1e-12


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1)))


class _Oracle:
    """The labels-only view of a target: ``is_adv(x) = argmax f(x) ≠ y``, with the budget check in one place."""

    def __init__(self, target: Target, reserve: int) -> None:
        self.target = target
        self.reserve = reserve

    def can(self, rows: int) -> bool:
        return affordable(self.target, rows, reserve=self.reserve)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        label: torch.Tensor = self.target.predict(x).argmax(1)
        return label != y


class _OutOfBudget(Exception):
    """Internal: the next query would not fit the budget; the attack returns what it has."""


@register("hsja")
@dataclass(frozen=True, kw_only=True)
class HopSkipJump:
    """HopSkipJump: walks along the decision boundary using only the predicted label, shrinking the perturbation.

    Threat model: black-box, decision-based (needs only the top-1 label, no scores, no gradients),
    untargeted, minimum-norm in L2 or L∞. It starts from a misclassified point (uniform noise in the box,
    brought to the boundary by binary search), then repeats: estimate the boundary's normal by Monte-Carlo
    sampling of labels around the current point, step along it (geometric step-size search), and binary
    search back to the boundary towards the original input. The result is the smallest perturbation found;
    the framework reports each ε by projecting it. A target's query budget never stops it empty-handed: it
    stops early, keeping the rows the framework needs to re-check its output.

    References:
        Chen, Jordan, Wainwright. HopSkipJumpAttack: A Query-Efficient Decision-Based Attack. IEEE S&P 2020.
        https://arxiv.org/abs/1904.02144

    Args:
        norm: ``l2`` (default) or ``linf``.
        steps: boundary iterations, ≥ 1 (default 40).
        init_evals: label queries for the first gradient estimate, ≥ 1 (default 100); the k-th iteration
            uses ``init_evals·√k``, capped by ``max_evals``.
        max_evals: largest number of queries per gradient estimate (default 10,000).
        gamma: binary-search tolerance factor, > 0 (default 1.0).
        init_trials: random noise draws to find a first misclassified point, ≥ 1 (default 100).

    Inputs ``x`` are ``(n, *shape)`` float32 inside ``bounds`` (any box, not only [0, 1]); ``y`` are int64
    labels. Works on any target that gives labels: torch, ONNX, scikit-learn, HTTP.

    Example:
        >>> from hoplon.attacks import HopSkipJump, evaluate
        >>> result = evaluate(HopSkipJump(steps=20), target, x, y, eps=[0.5, 1.0, 2.0])  # doctest: +SKIP
    """

    info: ClassVar[AttackInfo] = AttackInfo(
        name="hsja",
        title="HopSkipJump",
        citation="Chen, Jordan, Wainwright. HopSkipJumpAttack: A Query-Efficient Decision-Based Attack. "
        "IEEE Symposium on Security and Privacy 2020.",
        url="https://arxiv.org/abs/1904.02144",
        threat_model="Black-box, decision-based: only the predicted label is observed; finds a minimum-norm "
        "L2 or L-inf perturbation by walking along the decision boundary.",
        capability=Capability.LABELS,
        norms=("l2", "linf"),
        kind="minimum-norm",
        taxonomy=("atlas:AML.T0043.001", "atlas:AML.T0015", "owasp-ml:ML01"),
    )
    norm: Norm = "l2"
    steps: int = 40
    init_evals: int = 100
    max_evals: int = 10_000
    gamma: float = 1.0
    init_trials: int = 100

    def __post_init__(self) -> None:
        if self.norm not in self.info.norms:
            raise InputError(f"The 'norm' parameter of HopSkipJump must be one of l2, linf. Got {self.norm!r}.")
        for name in ("steps", "init_evals", "max_evals", "init_trials"):
            if getattr(self, name) < 1:
                value = getattr(self, name)
                raise InputError(f"The '{name}' parameter of HopSkipJump must be an int >= 1. Got {value}.")
        if not self.gamma > 0:
            raise InputError(f"The 'gamma' parameter of HopSkipJump must be > 0. Got {self.gamma}.")

    def run(
        self, target: Target, x: torch.Tensor, y: torch.Tensor, *, eps: float, bounds: Bounds, rng: torch.Generator
    ) -> AdversarialBatch:
        require(target, Capability.LABELS, who="HopSkipJump")
        n = int(x.shape[0])
        if n == 0:
            return AdversarialBatch(x.clone())
        oracle = _Oracle(target, reserve=n)
        best = x.clone()
        with contextlib.suppress(_OutOfBudget):
            self._attack(oracle, x, y, bounds, rng, best)
        return AdversarialBatch(best.detach())

    # The geometry, following the authors' reference implementation, batched over samples.

    def _theta(self, d: int, width: float) -> float:
        if self.norm == "l2":
            return self.gamma / (math.sqrt(d) * d) * width
        return self.gamma / (d * d) * width

    def _distance(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return flat_norm(x_adv - x, self.norm)

    def _blend(self, x: torch.Tensor, x_adv: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """L2: the point ``alpha`` of the way from ``x`` to ``x_adv``; L∞: ``x_adv`` clipped to ``x ± alpha``."""
        import torch

        a = _expand(alpha, x)
        if self.norm == "l2":
            return (1 - a) * x + a * x_adv
        return torch.minimum(torch.maximum(x_adv, x - a), x + a)

    def _query(self, oracle: _Oracle, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not oracle.can(int(x.shape[0])):
            raise _OutOfBudget
        return oracle(x, y)

    def _attack(
        self,
        oracle: _Oracle,
        x: torch.Tensor,
        y: torch.Tensor,
        bounds: Bounds,
        rng: torch.Generator,
        best: torch.Tensor,
    ) -> None:
        import torch

        d = x[0].numel()
        width = bounds.width
        theta = self._theta(d, width)
        start, found = self._initialise(oracle, x, y, bounds, rng)
        idx = found.nonzero().squeeze(1)
        if idx.numel() == 0:
            return
        xs, ys = x[idx], y[idx]
        current, _ = self._binary_search(oracle, xs, ys, start[idx], theta)
        best[idx] = current
        dist = self._distance(xs, current)
        dist_post = dist
        for step in range(1, self.steps + 1):
            if step == 1:
                delta = torch.full((len(idx),), 0.1 * width)
            else:
                scale = math.sqrt(d) if self.norm == "l2" else float(d)
                delta = scale * theta * dist_post
            evals = min(int(self.init_evals * math.sqrt(step)), self.max_evals)
            remaining = oracle.target.counter.remaining
            if remaining is not None:  # spend what the budget still allows on a smaller estimate
                evals = max(2, min(evals, (remaining - oracle.reserve) // max(len(idx), 1)))
            grad = self._estimate_gradient(oracle, current, ys, evals, delta, bounds, rng)
            update = grad.sign() if self.norm == "linf" else grad
            size = self._step_size(oracle, xs, ys, current, update, dist, step, bounds)
            moved = bounds.clip(current + _expand(size, current) * update)
            current, dist_post = self._binary_search(oracle, xs, ys, moved, theta)
            dist = self._distance(xs, current)
            better = dist < self._distance(xs, best[idx])
            best[idx[better]] = current[better]

    def _initialise(
        self, oracle: _Oracle, x: torch.Tensor, y: torch.Tensor, bounds: Bounds, rng: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform noise in the box until misclassified (``init_trials`` draws at most per sample)."""
        import torch

        start = x.clone()
        found = torch.zeros(len(x), dtype=torch.bool)
        lower = bounds.lower.to(x.dtype).expand_as(x[0])
        upper = bounds.upper.to(x.dtype).expand_as(x[0])
        for _ in range(self.init_trials):
            todo = (~found).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            noise = lower + torch.rand((len(todo), *x.shape[1:]), generator=rng, dtype=x.dtype) * (upper - lower)
            hit = self._query(oracle, noise, y[todo])
            start[todo[hit]] = noise[hit]
            found[todo[hit]] = True
        return start, found

    def _binary_search(
        self, oracle: _Oracle, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, theta: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Move each adversarial point to the boundary towards ``x``; return it and its distance to ``x``."""
        import torch

        dist = self._distance(x, x_adv)
        if self.norm == "linf":
            high = dist.clone()
            threshold = torch.clamp(dist * theta, max=theta)
        else:
            high = torch.ones(len(x))
            threshold = torch.full((len(x),), theta)
        low = torch.zeros(len(x))
        threshold = threshold.clamp_min(_TINY)
        while True:
            todo = ((high - low) / threshold > 1).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            mid = (high[todo] + low[todo]) / 2
            adv = self._query(oracle, self._blend(x[todo], x_adv[todo], mid), y[todo])
            low[todo[~adv]] = mid[~adv]
            high[todo[adv]] = mid[adv]
        out = self._blend(x, x_adv, high)
        return out, self._distance(x, out)

    def _estimate_gradient(
        self,
        oracle: _Oracle,
        point: torch.Tensor,
        y: torch.Tensor,
        evals: int,
        delta: torch.Tensor,
        bounds: Bounds,
        rng: torch.Generator,
    ) -> torch.Tensor:
        """Monte-Carlo estimate of the boundary normal at ``point`` from ``evals`` labels per sample."""
        import torch

        m = len(point)
        shape = (m, evals, *point.shape[1:])
        if self.norm == "l2":
            rv = torch.randn(shape, generator=rng, dtype=point.dtype)
        else:
            rv = torch.rand(shape, generator=rng, dtype=point.dtype) * 2 - 1
        rv = rv / (rv.flatten(2).norm(dim=2).reshape(m, evals, *([1] * (point.ndim - 1))) + _TINY)
        scale = delta.reshape(m, 1, *([1] * (point.ndim - 1)))
        probes = bounds.clip((point[:, None] + scale * rv).reshape(m * evals, *point.shape[1:]))
        probes = probes.reshape(shape)
        rv = (probes - point[:, None]) / (scale + _TINY)
        decisions = self._query(oracle, probes.reshape(m * evals, *point.shape[1:]), y.repeat_interleave(evals))
        fval = decisions.reshape(m, evals).to(point.dtype) * 2 - 1
        mean = fval.mean(dim=1, keepdim=True)
        # All probes on one side: move along (or against) the mean direction; else centre the labels.
        centred = torch.where((mean.abs() == 1).expand_as(fval), fval, fval - mean)
        weights = centred.reshape(m, evals, *([1] * (point.ndim - 1)))
        grad = (weights * rv).mean(dim=1)
        return grad / (_expand(flat_norm(grad, "l2"), grad) + _TINY)

    def _step_size(
        self,
        oracle: _Oracle,
        x: torch.Tensor,
        y: torch.Tensor,
        point: torch.Tensor,
        update: torch.Tensor,
        dist: torch.Tensor,
        step: int,
        bounds: Bounds,
    ) -> torch.Tensor:
        """Geometric search: start at ``dist/√step`` and halve until the stepped point is still adversarial."""
        import torch

        size = dist / math.sqrt(step)
        done = torch.zeros(len(point), dtype=torch.bool)
        for _ in range(30):
            todo = (~done).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            probe = bounds.clip(point[todo] + _expand(size[todo], point[todo]) * update[todo])
            adv = self._query(oracle, probe, y[todo])
            done[todo[adv]] = True
            size[todo[~adv]] = size[todo[~adv]] / 2
        return size
