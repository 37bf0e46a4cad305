"""Adversarial-query clients against a live gateway: Square, HopSkipJump and a boundary walk.

Each client picks a handful of test inputs the gateway classifies correctly (one query each) and runs a
black-box evasion attack on them through a :class:`~hoplon.redteam.gateway.GatewayTarget` with one API key and
a query budget: hoplon's :class:`~hoplon.attacks.SquareAttack` (score-based, L∞) and
:class:`~hoplon.attacks.HopSkipJump` (label-only, L2), and :class:`BoundaryWalk` (label-only, L2: binary
search towards an input of another class, then a random walk along the decision boundary that shrinks the
distance). The run stops at the gateway's first refusal. Success at that point is read from the gateway's own
answers: an input counts as broken once some answered query within ``eps`` of it (in the attack's norm) got
another label. With a local ``victim`` the same attack also runs undefended, for the success it would have
had without the gateway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from hoplon.attacks.types import AdversarialBatch
from hoplon.core.errors import InputError
from hoplon.targets.types import Budget, QueryCounter

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.types import Norm
    from hoplon.data import Dataset
    from hoplon.redteam.gateway import RateLimit, RedteamResult
    from hoplon.targets.types import Bounds, Target

__all__ = ["ADVERSARIAL_EPS", "BoundaryWalk", "run_adversarial"]

# The perturbation budgets success is counted at, per client, for [0, 1] inputs (the 8×8 digits demo):
# L∞ 0.2 for Square; L2 2.0 (about 0.25 per pixel over 64 pixels) for the label-only clients.
ADVERSARIAL_EPS: dict[str, tuple[Norm, float]] = {"square": ("linf", 0.2), "hsja": ("l2", 2.0), "walk": ("l2", 2.0)}


@dataclass(frozen=True, kw_only=True)
class BoundaryWalk:
    """A label-only walk along the decision boundary (in the spirit of Brendel et al.'s Boundary Attack).

    Per input: query natural ``starts`` (or uniform noise in the box) until one gets another label, binary
    search on the segment towards the input to the boundary, then repeat: rotate the current point by a
    random step on the sphere around the input, move it ``source_step`` of the way towards the input, and
    keep it when the label still differs. Both steps grow after a run of kept points and shrink after a run
    of rejected ones. Every query is one row; the target's query budget is split evenly over the inputs.

    Args:
        max_queries: queries per input when the target has no budget (default 1,000).
        search_steps: binary-search halvings (default 10).
        spherical_step, source_step: initial relative step sizes (defaults 0.1 and 0.05).
    """

    max_queries: int = 1000
    search_steps: int = 10
    spherical_step: float = 0.1
    source_step: float = 0.05

    def __post_init__(self) -> None:
        if self.max_queries < 2 or self.search_steps < 1:
            raise InputError("BoundaryWalk needs max_queries >= 2 and search_steps >= 1.")
        if not 0 < self.spherical_step <= 1 or not 0 < self.source_step < 1:
            raise InputError("BoundaryWalk needs spherical_step in (0, 1] and source_step in (0, 1).")

    def run(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        rng: torch.Generator,
        starts: torch.Tensor | None = None,
    ) -> AdversarialBatch:
        """Minimum-L2 adversarial points for ``x`` (the input itself where none was found)."""
        best = x.clone()
        n = int(x.shape[0])
        remaining = target.counter.remaining
        per = self.max_queries if remaining is None else max(0, (remaining - n) // max(n, 1))
        for i in range(n):
            found = self._one(target, x[i : i + 1], y[i : i + 1], per, bounds, rng, starts)
            if found is not None:
                best[i] = found[0]
        return AdversarialBatch(best)

    def _one(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        budget: int,
        bounds: Bounds,
        rng: torch.Generator,
        starts: torch.Tensor | None,
    ) -> torch.Tensor | None:
        import torch

        spent = 0

        def adversarial(point: torch.Tensor) -> bool:
            nonlocal spent
            spent += 1
            return bool(target.predict(point).argmax(1)[0] != y[0])

        start = None
        lower = bounds.lower.to(x.dtype).expand_as(x[0])
        upper = bounds.upper.to(x.dtype).expand_as(x[0])
        order = torch.randperm(len(starts), generator=rng) if starts is not None else None
        while start is None and spent < budget // 2:
            if starts is not None and order is not None and spent < len(starts):
                candidate = starts[order[spent] : order[spent] + 1]
            else:
                candidate = (lower + torch.rand(x.shape, generator=rng) * (upper - lower)).to(x.dtype)
            if adversarial(candidate):
                start = candidate
        if start is None:
            return None
        low, high = 0.0, 1.0  # the point (1 - a)·x + a·start: low keeps the label, high does not
        for _ in range(self.search_steps):
            if spent >= budget:
                break
            mid = (low + high) / 2
            if adversarial((1 - mid) * x + mid * start):
                high = mid
            else:
                low = mid
        current = (1 - high) * x + high * start
        sph, src = self.spherical_step, self.source_step
        trials: list[bool] = []
        while spent < budget and src > 1e-5:
            delta = current - x
            dist = float(delta.norm())
            if dist < 1e-9:
                break
            unit = delta / dist
            r = torch.randn(x.shape, generator=rng, dtype=x.dtype)
            r = r - (r * unit).sum() * unit
            r = r / (r.norm() + 1e-12) * sph * dist
            rotated = delta + r
            rotated = rotated / (rotated.norm() + 1e-12) * dist
            candidate = bounds.clip(x + rotated * (1 - src))
            kept = adversarial(candidate)
            if kept:
                current = candidate
            trials.append(kept)
            if len(trials) == 10:
                rate = sum(trials) / 10
                if rate > 0.5:
                    sph, src = min(sph * 1.5, 1.0), min(src * 1.5, 0.5)
                elif rate < 0.2:
                    sph, src = sph / 1.5, src / 1.5
                trials.clear()
        return current


def _pick_inputs(target: Target, data: Dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` held-out inputs the gateway classifies correctly (one query per candidate, at most ``4n``)."""
    import torch

    half = len(data.x) // 2
    order = np.random.default_rng(seed).permutation(len(data.x) - half)[: 4 * n] + half
    chosen: list[int] = []
    for i in order.tolist():
        if len(chosen) == n:
            break
        if int(target.predict(data.x[i : i + 1]).argmax(1)[0]) == int(data.y[i]):
            chosen.append(i)
    if not chosen:
        raise InputError("The gateway classified none of the candidate inputs correctly; nothing to attack.")
    index = torch.tensor(chosen)
    return data.x[index], data.y[index]


def _attack_run(
    client: str, target: Target, x: torch.Tensor, y: torch.Tensor, starts: torch.Tensor, bounds: Bounds, seed: int
) -> torch.Tensor:
    import torch

    from hoplon.attacks import HopSkipJump, SquareAttack

    eps = ADVERSARIAL_EPS[client][1]
    rng = torch.Generator().manual_seed(seed)
    remaining = target.counter.remaining or 1000 * len(x)
    per_input = max(2, (remaining - len(x)) // max(len(x), 1))
    if client == "square":
        return SquareAttack(norm="linf", max_queries=per_input).run(target, x, y, eps=eps, bounds=bounds, rng=rng).x_adv
    if client == "hsja":
        attack = HopSkipJump(norm="l2", steps=50, init_evals=20, max_evals=200)
        return attack.run(target, x, y, eps=eps, bounds=bounds, rng=rng).x_adv
    return BoundaryWalk(max_queries=per_input).run(target, x, y, bounds=bounds, rng=rng, starts=starts).x_adv


def _norm(delta: torch.Tensor, norm: Literal["linf", "l2"] | Norm) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.pow(2).sum(1).sqrt()


def _success_from_log(
    log_x: list[np.ndarray], log_y: list[int], x: torch.Tensor, y: torch.Tensor, norm: Norm, eps: float
) -> float:
    """Share of ``x`` with an answered query within ``eps`` of it (its nearest attacked input) labelled ≠ y."""
    import torch

    if not log_x:
        return 0.0
    rows = torch.from_numpy(np.stack(log_x)).flatten(1)
    labels = torch.tensor(log_y)
    flat = x.flatten(1)
    dist = torch.stack([_norm(rows - flat[i], norm) for i in range(len(flat))], dim=1)  # (rows, inputs)
    owner = dist.argmin(1)
    near = dist.gather(1, owner[:, None]).squeeze(1) <= eps + 1e-5
    broken = near & (labels != y[owner])
    hit = torch.zeros(len(x), dtype=torch.bool)
    hit[owner[broken]] = True
    return round(float(hit.float().mean()), 4)


def run_adversarial(
    client: str,
    url: str,
    model: str,
    keys: list[str],
    data: Dataset,
    *,
    budget: int,
    n_inputs: int = 5,
    seed: int = 0,
    victim: Target | None = None,
    key_rate: RateLimit | None = None,
) -> RedteamResult:
    """Run one adversarial-query client and report it: ``square``, ``hsja``, ``walk`` on the first key, or
    ``square-rotating``, ``hsja-rotating``, ``walk-rotating`` spread over all ``keys`` (each row on the key whose
    recent rows lie farthest from it, each key just under the per-identity rate limit, contained keys dropped)."""
    from hoplon.redteam.gateway import Contained, GatewayTarget, RedteamResult

    base = client.removesuffix("-rotating")
    rotating = base != client
    if base not in ADVERSARIAL_EPS:
        raise InputError(f"Unknown adversarial client {client!r}; use {', '.join(ADVERSARIAL_EPS)} (-rotating).")
    if not 1 <= n_inputs <= 100:
        raise InputError(f"The adversarial clients attack 1..100 inputs. Got {n_inputs}.")
    if budget < 4 * n_inputs:
        raise InputError(f"An adversarial client needs a budget of at least {4 * n_inputs} queries. Got {budget}.")
    norm, eps = ADVERSARIAL_EPS[base]
    shape = tuple(int(s) for s in data.x.shape[1:])
    n_classes = int(data.y.max()) + 1
    target = GatewayTarget(
        url, model, keys if rotating else keys[:1], n_classes=n_classes, input_shape=shape, seed=seed,
        scores=base == "square", budget=budget, rotation="spread" if rotating else "random",
        rate=key_rate if rotating else None, drop_contained=rotating,
    )  # fmt: skip
    start = time.monotonic()
    status = reason = None
    x = y = None
    picked = 0
    try:
        x, y = _pick_inputs(target, data, n_inputs, seed)
        picked = target.counter.queries
        _attack_run(base, target, x, y, data.x[: len(data.x) // 2], data.bounds, seed)
    except Contained as exc:
        status, reason = exc.status, exc.reason
    seconds = round(time.monotonic() - start, 2)
    done = target.counter.queries
    success = None
    undetected = None
    if x is not None and y is not None:
        success = _success_from_log(target.log_x[picked:], target.log_y[picked:], x, y, norm, eps)
        if victim is not None:
            undetected = _undefended(base, victim, x, y, data, budget - picked, seed)
    rate = target.per_key_rate
    return RedteamResult(
        client, len(keys) if rotating else 1, done, done + 1 if status else None, status, None, reason=reason,
        first_contained_at=target.first_contained_at, contained_keys=target.contained_keys,
        success_rate=success, success_undetected=undetected, eps=eps, rate_limited=target.rate_limited,
        per_key_rate=None if rate is None else f"{rate.amount}/{rate.window_s:g}s", seconds=seconds,
    )  # fmt: skip


def _undefended(
    client: str, victim: Target, x: torch.Tensor, y: torch.Tensor, data: Dataset, budget: int, seed: int
) -> float:
    """The same attack with the same budget against the local victim: the share of ``x`` broken within eps."""
    import torch

    norm, eps = ADVERSARIAL_EPS[client]
    original = victim.counter
    victim.counter = QueryCounter(Budget(max(budget, 4 * len(x))))
    try:
        x_adv = _attack_run(client, victim, x, y, data.x[: len(data.x) // 2], data.bounds, seed)
    finally:
        victim.counter = original
    with torch.no_grad():
        labels = victim.predict(x_adv).argmax(1)
    ok = (labels != y) & (_norm(x_adv - x, norm) <= eps + 1e-5)
    return round(float(ok.float().mean()), 4)
