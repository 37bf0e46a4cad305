"""`evaluate`: the framework function every evasion attack runs through.

It does what no attack is trusted to do for itself: it projects each candidate onto the ε-ball and the
input box, re-checks success by querying the target, keeps the best adversarial example found so far
across attacks, restarts and increasing ε, and counts queries and CPU time per ε. Passing several attacks
runs them as a worst-case ensemble (AutoAttack's protocol): each attack only sees the samples all the
previous ones failed on. A one-step attack (FGSM, see :class:`~hoplon.attacks.evasion.ops.OneStep`) is
asked for its directions once per sample and reused at every ε; when it comes first and no clean predictions
are given, the same forward pass supplies them. Its directions are moved into the norm's unit ball once (non-finite
entries zeroed), so its candidates ``clip(x + ε·d)`` are built inside every ε-ball and the box.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from hoplon.attacks.evasion.ops import OneStep, clip_to_ball_and_box, project
from hoplon.attacks.types import Attack, Norm
from hoplon.core.errors import BudgetExceeded, InputError
from hoplon.targets.types import require

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Bounds, Target

__all__ = ["EpsilonOutcome", "Evaluation", "evaluate", "merge"]

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class EpsilonOutcome:
    """The state after attacking at one ε: the running-best adversarial inputs and which samples they fool."""

    eps: float
    x_adv: torch.Tensor
    is_adv: torch.Tensor
    queries: int
    cpu_s: float
    wall_s: float


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What :func:`evaluate` measured. ``outcomes`` are in increasing ε; ``partial`` if a budget ran out."""

    attack: str
    components: tuple[str, ...]
    norm: Norm
    clean_correct: torch.Tensor
    outcomes: tuple[EpsilonOutcome, ...]
    partial: bool = False


def _check_eps(eps: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(e) for e in eps)
    if not values:
        raise InputError("At least one epsilon is needed.")
    bad = [e for e in values if not e > 0]
    if bad:
        raise InputError(f"Every epsilon must be > 0. Got {bad[0]}.")
    return tuple(sorted(set(values)))


def evaluate(
    attacks: Attack | Sequence[Attack],
    target: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Sequence[float],
    bounds: Bounds | None = None,
    seed: int = 0,
    batch_size: int = 500,
    name: str | None = None,
    prior: Evaluation | None = None,
    clean_correct: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Run ``attacks`` against ``target`` on ``(x, y)`` at every ε, and re-score everything.

    Args:
        attacks: one attack, or several run in sequence as a per-sample worst case.
        target: the model; must offer what each attack's ``info.capability`` asks for.
        x: ``(n, *shape)`` inputs inside ``bounds``; y: ``(n,)`` labels.
        eps: perturbation budgets in the attacks' norm (absolute, in input units); sorted internally.
        bounds: the input box (defaults to the target's declared bounds).
        seed: all randomness derives from it; same seed ⇒ same result.
        batch_size: samples per attack call.
        name: label for reports (defaults to the attack's name, or ``worst-case``).
        prior: an earlier evaluation at the same ε values whose successes count as already found
            (the ensemble then only attacks what it left robust).
        clean_correct: which samples the target classifies correctly, when the caller already knows (several
            attacks on the same data need the clean predictions once); otherwise taken from ``prior`` or
            computed with one query per sample.
        progress: called with the number of samples finished, for progress bars.

    Returns:
        :class:`Evaluation`. The curve is non-increasing in ε by construction: a sample fooled at ε stays
        fooled at every larger ε (its adversarial example lies in the larger ball too).
    """
    import torch

    # A Protocol isinstance check costs tens of microseconds; the ABC check on Sequence is cached.
    chain: tuple[Attack, ...] = tuple(attacks) if isinstance(attacks, Sequence) else (attacks,)
    if not chain:
        raise InputError("No attack to evaluate.")
    norm = chain[0].norm
    for attack in chain:
        if attack.norm != norm:
            raise InputError(f"All attacks of one evaluation must use the same norm; got {norm} and {attack.norm}.")
        require(target, attack.info.capability, who=attack.info.title)
    epsilons = _check_eps(eps)
    bounds = bounds if bounds is not None else target.input_spec.bounds
    if bounds is None:
        raise InputError("Attacks need the input bounds; the data or the target must declare them.")
    target.input_spec.check(x, what="data")
    if len(y) != len(x):
        raise InputError(f"x has {len(x)} samples but y has {len(y)} labels.")
    if len(y) and not _labels_in_range(y, target.n_classes):
        raise InputError(f"Labels must be in 0 .. {target.n_classes - 1} for this model.")
    if not _inside(bounds, x):
        raise InputError("Some inputs lie outside the declared bounds; attacks must start inside the box.")

    label = name or (chain[0].info.name if len(chain) == 1 else "worst-case")
    steps: dict[int, _Directions] = {}
    clock = time.process_time(), time.perf_counter(), target.counter.queries
    if clean_correct is None and prior is None and len(x) and _one_step(chain[0]) is not None:
        # A one-step attack's gradient pass at x also gives the clean predictions: no separate clean pass.
        first = _Directions(cast(OneStep, chain[0]), norm, target, x, y, seed, batch_size)
        clean_correct = first.compute_all().argmax(1) == y
        steps[0] = first
    elif clean_correct is None:
        clean_correct = prior.clean_correct if prior is not None else target.predict(x).argmax(1) == y
        clock = time.process_time(), time.perf_counter(), target.counter.queries
    elif clean_correct.shape != y.shape:
        raise InputError(f"clean_correct must have one flag per sample ({len(y)}); got {tuple(clean_correct.shape)}.")
    else:
        clock = time.process_time(), time.perf_counter(), target.counter.queries
    fooled = torch.zeros(len(x), dtype=torch.bool)
    best = x.clone()
    prior_at = {o.eps: o for o in prior.outcomes} if prior is not None else {}
    if prior is not None and set(prior_at) != set(epsilons):
        raise InputError("A prior evaluation must cover the same epsilons.")
    min_norm_cache: dict[int, torch.Tensor] = {}
    untouched = True  # no sample fooled yet
    outcomes: list[EpsilonOutcome] = []
    partial = False
    for e_index, e in enumerate(epsilons):
        # The first ε also pays for what was computed for it before the loop (a one-step attack's gradients).
        cpu0, wall0, q0 = clock if e_index == 0 else (time.process_time(), time.perf_counter(), target.counter.queries)
        if e in prior_at:
            earlier = prior_at[e].is_adv & ~fooled
            fooled |= earlier
            best[earlier] = prior_at[e].x_adv[earlier]
            untouched = False
        try:
            for a_index, attack in enumerate(chain):
                # While nothing is fooled (the first attack at the first ε), ``fooled`` need not be read.
                todo = (clean_correct if untouched else clean_correct & ~fooled).nonzero().squeeze(1)
                if todo.numel() == 0:
                    break
                # Every sample still to attack (the usual first pass): the inputs themselves, no gathered copy.
                everyone = todo.numel() == len(x)
                x_todo, y_todo = (x, y) if everyone else (x.index_select(0, todo), y.index_select(0, todo))
                if attack.info.kind == "minimum-norm":
                    candidates = _minimum_norm_candidates(
                        attack,
                        a_index,
                        min_norm_cache,
                        target,
                        x,
                        y,
                        clean_correct,
                        epsilons[-1],
                        bounds,
                        seed,
                        batch_size,
                    ).index_select(0, todo)
                    candidates = clip_to_ball_and_box(x_todo, candidates, norm, e, bounds)
                    y_goal = None
                elif (one_step := _one_step(attack)) is not None:
                    if a_index not in steps:
                        steps[a_index] = _Directions(one_step, norm, target, x, y, seed + a_index * 104_729, batch_size)
                    # Built by the framework inside the ε-ball and the box (see _Directions): no projection.
                    candidates, y_goal = steps[a_index].candidates(todo, x_todo, e, bounds)
                else:
                    generator = torch.Generator().manual_seed(seed * 1_000_003 + e_index * 7_919 + a_index * 104_729)
                    candidates, y_goal = _run_batched(attack, target, x_todo, y_todo, e, bounds, generator, batch_size)
                    candidates = clip_to_ball_and_box(x_todo, candidates, norm, e, bounds)
                pred = target.predict(candidates).argmax(1)
                success = pred == y_goal if y_goal is not None else pred != y_todo
                found = success.nonzero().squeeze(1)  # indices once: each boolean-mask lookup scans again
                if found.numel():
                    hit = found if everyone else todo.index_select(0, found)
                    fooled.index_fill_(0, hit, True)
                    best.index_copy_(0, hit, candidates.index_select(0, found))
                    untouched = False
                if progress is not None:
                    progress(int(todo.numel()))
        except BudgetExceeded as exc:
            log.warning("%s stopped early at eps=%g: %s", label, e, exc)
            partial = True
        earlier_cost = prior_at.get(e)
        outcomes.append(
            EpsilonOutcome(
                eps=e,
                # The last ε's state is not changed afterwards: no copy needed.
                x_adv=best if e_index == len(epsilons) - 1 else best.clone(),
                is_adv=fooled if e_index == len(epsilons) - 1 else fooled.clone(),
                queries=target.counter.queries - q0 + (earlier_cost.queries if earlier_cost else 0),
                cpu_s=time.process_time() - cpu0 + (earlier_cost.cpu_s if earlier_cost else 0.0),
                wall_s=time.perf_counter() - wall0 + (earlier_cost.wall_s if earlier_cost else 0.0),
            )
        )
        if partial:
            break
    return Evaluation(
        attack=label,
        components=(prior.components if prior is not None else ()) + tuple(a.info.name for a in chain),
        norm=norm,
        clean_correct=clean_correct,
        outcomes=tuple(outcomes),
        partial=partial,
    )


def _run_batched(
    attack: Attack,
    target: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    bounds: Bounds,
    generator: torch.Generator,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    import torch

    outputs, goals = [], []
    for start in range(0, len(x), batch_size):
        chunk = slice(start, start + batch_size)
        result = attack.run(target, x[chunk], y[chunk], eps=eps, bounds=bounds, rng=generator)
        if result.x_adv.shape != x[chunk].shape:
            raise InputError(f"{attack.info.name} returned a batch of shape {tuple(result.x_adv.shape)}.")
        outputs.append(result.x_adv.detach())
        goals.append(result.y_target)
    if len(outputs) == 1:  # one batch: no copy
        return outputs[0], goals[0]
    if any(g is None for g in goals):
        return torch.cat(outputs), None
    return torch.cat(outputs), torch.cat([g for g in goals if g is not None])


def _inside(bounds: Bounds, x: torch.Tensor) -> bool:
    """Every input inside the box (tolerance 1e-6); one reduction for a scalar box."""
    import torch

    if bounds.lower.numel() == 1 and bounds.upper.numel() == 1 and x.numel():
        low, high = torch.aminmax(x)
        return bool(float(low) >= float(bounds.lower) - 1e-6 and float(high) <= float(bounds.upper) + 1e-6)
    return bool(bounds.contains(x).all())


def _labels_in_range(y: torch.Tensor, n_classes: int) -> bool:
    """Every label in ``0 .. n_classes - 1`` (one reduction)."""
    import torch

    low, high = torch.aminmax(y)
    return int(low) >= 0 and int(high) < n_classes


def _one_step(attack: Attack) -> OneStep | None:
    """The attack as a :class:`OneStep` if it offers directions (a cheap check, unlike a Protocol isinstance)."""
    return cast(OneStep, attack) if callable(getattr(attack, "direction", None)) else None


class _Directions:
    """A one-step attack's directions, computed once per sample on demand and reused at every ε.

    The attack's directions are not trusted: each is moved into the unit ball of the norm once, on arrival (L2:
    shrunk by the relative 1e-6 of :func:`clip_to_ball_and_box`; non-finite entries become 0), so that
    ``clip(x + ε·d)`` lies in the ε-ball and the box at every ε — the framework's projection, built in.
    """

    def __init__(
        self, attack: OneStep, norm: Norm, target: Target, x: torch.Tensor, y: torch.Tensor, seed: int, batch: int
    ):
        import torch

        self.attack, self.norm, self.target, self.x, self.y, self.batch = attack, norm, target, x, y, batch
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + 15_485_863)
        self._step: torch.Tensor | None = None
        self.goal: torch.Tensor | None = None
        self._have: torch.Tensor | None = None  # which rows have a direction (allocated when computed in parts)
        self.complete = False

    @property
    def step(self) -> torch.Tensor:
        import torch

        if self._step is None:
            self._step = torch.zeros_like(self.x)
        return self._step

    @property
    def have(self) -> torch.Tensor:
        import torch

        if self._have is None:
            self._have = torch.zeros(len(self.x), dtype=torch.bool)
        return self._have

    def _unit(self, step: torch.Tensor, rows: int) -> torch.Tensor:
        """The attack's directions for ``rows`` rows, checked and moved into the norm's unit ball."""
        import torch

        if step.shape != (rows, *self.x.shape[1:]):
            raise InputError(f"A one-step attack returned directions of shape {tuple(step.shape)}.")
        step = step.detach()
        inside = step.clamp(-1.0, 1.0) if self.norm == "linf" else project(step, self.norm, 1.0 - 1e-6)
        return torch.nan_to_num_(inside, nan=0.0, posinf=0.0, neginf=0.0)  # a new tensor: changed in place

    def compute_all(self) -> torch.Tensor:
        """The directions of every row (before any was computed); returns the logits at x."""
        import torch

        if len(self.x) > self.batch:
            return self.compute(torch.arange(len(self.x)))
        # One batch: the attack's outputs are the tables themselves (no index copies).
        step, goal, scores = self.attack.direction(self.target, self.x, self.y, self.generator)
        self._step, self.goal, self.complete = self._unit(step, len(self.x)), goal, True
        return scores.detach()

    def compute(self, rows: torch.Tensor) -> torch.Tensor:
        """Fill in the directions of ``rows`` not computed yet; returns the logits at x of those rows."""
        import torch

        if self.complete:
            return torch.empty(0)
        rows = rows[~self.have[rows]]
        logits = []
        for start in range(0, len(rows), self.batch):
            part = rows[start : start + self.batch]
            step, goal, scores = self.attack.direction(self.target, self.x[part], self.y[part], self.generator)
            self.step[part] = self._unit(step, len(part))
            if goal is not None:
                if self.goal is None:
                    self.goal = torch.zeros_like(self.y)
                self.goal[part] = goal
            logits.append(scores.detach())
        self.have[rows] = True
        self.complete = bool(self.have.all())
        return torch.cat(logits) if logits else torch.empty(0)

    def candidates(
        self, rows: torch.Tensor, x_rows: torch.Tensor, eps: float, bounds: Bounds
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``clip(x + ε·d)`` for ``rows`` (whose inputs are ``x_rows``), inside the ε-ball and the box."""
        import torch

        if not self.complete:
            self.compute(rows)
        if rows.numel() == len(self.x):  # every row, in order: no gathered copies
            return bounds.clip(torch.add(self.x, self.step, alpha=eps)), self.goal
        goal = self.goal.index_select(0, rows) if self.goal is not None else None
        return bounds.clip(torch.add(x_rows, self.step.index_select(0, rows), alpha=eps)), goal


def _minimum_norm_candidates(
    attack: Attack,
    a_index: int,
    cache: dict[int, torch.Tensor],
    target: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    clean_correct: torch.Tensor,
    eps_max: float,
    bounds: Bounds,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """Minimum-norm attacks run once on every correctly classified sample; each ε re-projects the result."""
    import torch

    if a_index not in cache:
        idx = clean_correct.nonzero().squeeze(1)
        found = x.clone()
        if idx.numel():
            generator = torch.Generator().manual_seed(seed * 1_000_003 + a_index * 104_729)
            found[idx], _ = _run_batched(attack, target, x[idx], y[idx], eps_max, bounds, generator, batch_size)
        cache[a_index] = found
    return cache[a_index]


def merge(evaluations: Sequence[Evaluation], *, name: str = "worst-case") -> Evaluation:
    """Per-sample worst case over evaluations of the same data, norm and ε values (no new queries).

    A sample counts as fooled at ε if any evaluation fooled it there; its example is taken from the first.
    """
    if not evaluations:
        raise InputError("Nothing to merge.")
    first = evaluations[0]
    eps = [o.eps for o in first.outcomes]
    for other in evaluations[1:]:
        if other.norm != first.norm or [o.eps for o in other.outcomes] != eps:
            raise InputError("Only evaluations with the same norm and epsilons can be merged.")
    outcomes = []
    for i, e in enumerate(eps):
        x_adv = first.outcomes[i].x_adv.clone()
        is_adv = first.outcomes[i].is_adv.clone()
        for other in evaluations[1:]:
            new = other.outcomes[i].is_adv & ~is_adv
            x_adv[new] = other.outcomes[i].x_adv[new]
            is_adv |= new
        outcomes.append(
            EpsilonOutcome(
                eps=e,
                x_adv=x_adv,
                is_adv=is_adv,
                queries=sum(ev.outcomes[i].queries for ev in evaluations),
                cpu_s=sum(ev.outcomes[i].cpu_s for ev in evaluations),
                wall_s=sum(ev.outcomes[i].wall_s for ev in evaluations),
            )
        )
    components: tuple[str, ...] = ()
    for ev in evaluations:
        components += ev.components
    return Evaluation(
        attack=name,
        components=components,
        norm=first.norm,
        clean_correct=first.clean_correct,
        outcomes=tuple(outcomes),
        partial=any(ev.partial for ev in evaluations),
    )
