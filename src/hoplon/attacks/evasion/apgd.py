"""Auto-PGD: step-size-free PGD with momentum, and its targeted DLR form (Croce & Hein 2020)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from hoplon.attacks.evasion.ops import (
    BallBox,
    Loss,
    check_eps,
    check_loss_classes,
    loss_and_grad,
    random_start,
    unit_step,
)
from hoplon.attacks.registry import ATTACKS
from hoplon.attacks.types import AdversarialBatch, AttackInfo, Norm
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, require

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Bounds, Target

__all__ = ["APGD", "checkpoints"]


def checkpoints(steps: int) -> tuple[int, ...]:
    """The iterations after which APGD may halve its step size: ``w_j = ⌈p_j · steps⌉``.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`` (Croce & Hein 2020,
    Section 3.2). For 100 steps: 22, 41, 57, 70, 80, 87, 93, 99.
    """
    previous, current = 0.0, 0.22
    found: list[int] = []
    while current <= 1.0:
        # Round before the ceiling: 0.22 · 100 is 22.000000000000004 in floating point.
        w = math.ceil(round(current * steps, 6))
        if w >= 1 and (not found or w > found[-1]) and w <= steps:
            found.append(w)
        previous, current = current, current + max(current - previous - 0.03, 0.06)
    return tuple(found)


@dataclass(frozen=True, kw_only=True)
class APGD:
    """Auto-PGD: PGD with momentum whose step size adapts per sample, so it has no step size to tune.

    Threat model: white-box (needs gradients), L∞ or L2 bounded, untargeted or targeted. The step size
    starts at 2ε and is halved for a sample at each checkpoint where fewer than a fraction ``rho`` of the
    steps since the last checkpoint increased its loss, or where the step size was not halved at the last
    checkpoint and the best loss has not improved since; the iterate then restarts from the best-loss
    point. The update is ``z = P(x_k + η·d(∇))``, ``x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1}))``
    with ``d`` the sign (L∞) or the normalised gradient (L2) and ``P`` the projection onto the ball and the
    box. By default (``init="x"``) the first run starts at the clean input and every further run (restarts,
    and APGD-T's further target classes) from a uniformly random point of the ball (a sample whose gradient
    at x is exactly zero starts at a random point); ``init="random"`` starts every run at a random point, as
    Croce & Hein do. APGD-T's target classes keep random starts because their diversity counts: starting all
    nine at x left one more of 60 digits robust in the APGD-CE → APGD-T ensemble. A single random start
    is a lottery of about ±1 pp of robust accuracy between seeds, and its mean is no better than starting
    at x (the reason is measured in :class:`~hoplon.attacks.evasion.pgd.PGD`'s docstring; for APGD-CE see
    ``docs/robustness.md``). A sample stops being attacked (and costs no more queries) as soon as one
    iterate fools the model; that iterate is returned, otherwise the highest-loss point of the sample's
    last run.

    ``targeted=True`` is APGD-T: one run per target class, the k-th most likely wrong class for
    k = 1 … ``n_target_classes``, each on the samples that are still robust. As in AutoAttack, success is
    any misclassification, so the result carries no target classes.

    The registry holds the literature's presets: ``apgd-ce`` (cross-entropy), ``apgd-dlr`` (untargeted
    Difference of Logits Ratio) and ``apgd-t`` (targeted DLR, 9 target classes). ``APGD.info`` describes
    the family; an instance's ``info`` carries the name of its configuration (``apgd-ce``, ``apgd-dlr``,
    ``apgd-t``, ``apgd-margin``, ``apgd-t-ce``…), so reports and ensembles label each component.

    References:
        Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of diverse
        parameter-free attacks. ICML 2020. https://arxiv.org/abs/2003.01690

    Args:
        norm: ``linf`` (default) or ``l2``.
        steps: iterations per run, ≥ 1 (default 100).
        loss: ``ce`` (default), ``dlr`` (needs ≥ 3 classes, ≥ 4 when targeted) or ``margin``.
        targeted: APGD-T, one run per likely wrong class (default False).
        n_target_classes: target classes tried when targeted, ≥ 1 (default 9; at most ``n_classes − 1``
            are used).
        restarts: runs on the samples still robust, ≥ 1 (default 1); when targeted, per target class.
        init: where the first run starts: ``x`` (default; the clean input, every later run random) or
            ``random`` (every run from a uniformly random point of the ball).
        rho: fraction of loss-increasing steps below which the step size is halved, in (0, 1]
            (default 0.75).
        momentum: the weight ``α`` of the new gradient step against the previous move, in [0, 1]
            (default 0.75; 1 is plain PGD with the adaptive step size).

    Inputs ``x`` are ``(n, *shape)`` float32 inside the dataset's bounds; ``y`` are int64 labels. The
    output has the shape of ``x``, inside the ε-ball and the box.

    Example:
        >>> from hoplon.attacks import APGD, evaluate, make
        >>> result = evaluate([APGD(), make("apgd-t")], target, x, y, eps=[8 / 255])  # doctest: +SKIP
    """

    info: ClassVar[AttackInfo] = AttackInfo(
        name="apgd",
        title="Auto-PGD",
        citation="Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of diverse "
        "parameter-free attacks. ICML 2020.",
        url="https://arxiv.org/abs/2003.01690",
        threat_model="White-box: projected gradient ascent with momentum and an adaptive step size inside an "
        "L-inf or L2 ball, untargeted or towards the likeliest wrong classes.",
        capability=Capability.GRADIENTS,
        norms=("linf", "l2"),
        taxonomy=("atlas:AML.T0043.000", "atlas:AML.T0015", "owasp-ml:ML01"),
    )
    norm: Norm = "linf"
    steps: int = 100
    loss: Loss = "ce"
    targeted: bool = False
    n_target_classes: int = 9
    restarts: int = 1
    rho: float = 0.75
    momentum: float = 0.75
    init: Literal["x", "random"] = "x"

    def __post_init__(self) -> None:
        if self.norm not in self.info.norms:
            raise InputError(f"The 'norm' parameter of APGD must be one of linf, l2. Got {self.norm!r}.")
        if self.loss not in ("ce", "margin", "dlr"):
            raise InputError(f"The 'loss' parameter of APGD must be ce, dlr or margin. Got {self.loss!r}.")
        for name in ("steps", "n_target_classes", "restarts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"The '{name}' parameter of APGD must be an int >= 1. Got {value!r}.")
        if not 0 < self.rho <= 1:
            raise InputError(f"The 'rho' parameter of APGD must be a float in (0, 1]. Got {self.rho!r}.")
        if not 0 <= self.momentum <= 1:
            raise InputError(f"The 'momentum' parameter of APGD must be a float in [0, 1]. Got {self.momentum!r}.")
        if self.init not in ("x", "random"):
            raise InputError(f"The 'init' parameter of APGD must be 'x' or 'random'. Got {self.init!r}.")
        # The instance's info names its configuration as AutoAttack does; the class keeps the family's.
        name = ("apgd-t" if self.loss == "dlr" else f"apgd-t-{self.loss}") if self.targeted else f"apgd-{self.loss}"
        object.__setattr__(self, "info", replace(APGD.info, name=name))

    def run(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: float,
        bounds: Bounds,
        rng: torch.Generator,
    ) -> AdversarialBatch:
        import torch

        require(target, Capability.GRADIENTS, who="APGD")
        check_eps("APGD", eps)
        check_loss_classes("APGD", self.loss, target.n_classes, targeted=self.targeted)
        goals: list[torch.Tensor | None] = [None]
        if self.targeted:
            goals = [*_likeliest_wrong_classes(target, x, y, min(self.n_target_classes, target.n_classes - 1))]
        x_adv = x.clone()
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for g_index, goal in enumerate(goals):
            for restart in range(self.restarts):
                todo = (~fooled).nonzero().squeeze(1)
                if todo.numel() == 0:
                    break
                # Only the very first run starts at x; restarts and further target classes start at random points.
                at_x = g_index == 0 and restart == 0 and self.init == "x"
                found, hit = self._run_once(
                    target, x[todo], y[todo], goal[todo] if goal is not None else None, eps, bounds, rng, at_x=at_x
                )
                x_adv[todo] = found
                fooled[todo[hit]] = True
        return AdversarialBatch(x_adv.detach(), None)

    def _run_once(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        y_target: torch.Tensor | None,
        eps: float,
        bounds: Bounds,
        rng: torch.Generator,
        *,
        at_x: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One APGD run from x or a random start: the returned points, and which of them fool the model.

        The state of the rows still being attacked lives in tensors of those rows only: a row that fools the
        model keeps that iterate and leaves every state tensor at once (one gather each), so an iteration
        costs a forward and backward pass and about twenty whole-tensor operations, without per-row scatters.
        ``tests/attacks/test_step_costs.py`` holds this to a plain per-row loop of the algorithm.
        """
        import torch

        n = x.shape[0]
        current = x.clone() if at_x else random_start(x, self.norm, eps, bounds, rng)
        loss, grad, logits = loss_and_grad(target, current, y, self.loss, y_target)
        if at_x:
            # A zero gradient at x gives no direction: those rows start at a random point instead.
            stuck = (~grad.flatten(1).ne(0).any(1)).nonzero()
            if stuck.numel():
                rows = stuck.squeeze(1)
                current[rows] = random_start(x[rows], self.norm, eps, bounds, rng)
                loss[rows], grad[rows], logits[rows] = loss_and_grad(
                    target, current[rows], y[rows], self.loss, y_target[rows] if y_target is not None else None
                )
        found = current.clone()
        fooled = logits.argmax(1) != y
        active = (~fooled).nonzero().squeeze(1)
        s = _State(
            ball=BallBox(x, self.norm, eps, bounds),
            y=y,
            y_target=y_target,
            here=current,
            previous=current,
            grad=grad,
            step=torch.full((n,), 2.0 * eps, dtype=x.dtype, device=x.device),
            last_loss=loss,
            increases=torch.zeros(n, dtype=torch.float64, device=x.device),
            best_x=current,
            best_loss=loss,
            best_grad=grad,
            best_at_check=loss,
            halved_at_check=torch.zeros(n, dtype=torch.bool, device=x.device),
        )
        if active.numel() < n:
            s = s.keep(active)
        shape = (-1, *([1] * (x.ndim - 1)))
        marks, last_mark = set(checkpoints(self.steps)), 0
        for k in range(self.steps):
            if active.numel() == 0:
                break
            alpha = self.momentum if k > 0 else 1.0
            here = s.here
            z = s.ball.project(torch.addcmul(here, s.step.reshape(shape), unit_step(s.grad, self.norm)))
            if alpha == 1.0:
                moved = z
            else:
                pulled = torch.add(here, z - here, alpha=alpha).add_(here - s.previous, alpha=1.0 - alpha)
                moved = s.ball.project(pulled)
            values, gradients, logits = loss_and_grad(target, moved, s.y, self.loss, s.y_target)
            s.previous, s.here, s.grad = here, moved, gradients
            s.increases = s.increases + (values > s.last_loss)
            s.last_loss = values
            better = values > s.best_loss
            s.best_loss = torch.where(better, values, s.best_loss)
            lifted = better.reshape(shape)
            s.best_x = torch.where(lifted, moved, s.best_x)
            s.best_grad = torch.where(lifted, gradients, s.best_grad)
            pred = logits.argmax(1)
            if not pred.equal(s.y):
                # Fooled rows keep this iterate and leave every state tensor.
                hit = pred != s.y
                rows = hit.nonzero().squeeze(1)
                found[active[rows]] = moved[rows]
                fooled[active[rows]] = True
                keep = (~hit).nonzero().squeeze(1)
                active = active[keep]
                s = s.keep(keep)
            if k + 1 in marks:
                # Section 3.2: halve where (1) under a fraction rho of the steps since the last checkpoint
                # raised the loss, or (2) the step size was kept at the last checkpoint and the best loss
                # has not improved since; then restart those samples from their best point.
                condition_1 = s.increases < self.rho * (k + 1 - last_mark)
                condition_2 = ~s.halved_at_check & (s.best_loss <= s.best_at_check)
                halve = condition_1 | condition_2
                lowered = halve.reshape(shape)
                s.step = torch.where(halve, s.step / 2.0, s.step)
                s.here = torch.where(lowered, s.best_x, s.here)
                s.grad = torch.where(lowered, s.best_grad, s.grad)
                s.last_loss = torch.where(halve, s.best_loss, s.last_loss)
                s.halved_at_check, s.best_at_check = halve, s.best_loss
                s.increases = torch.zeros_like(s.increases)
                last_mark = k + 1
        found[active] = s.best_x
        return found, fooled


@dataclass(slots=True)
class _State:
    """The per-row state of one APGD run, for the rows still being attacked. Tensors are replaced, never
    written in place, so several fields may share one tensor."""

    ball: BallBox
    y: torch.Tensor
    y_target: torch.Tensor | None
    here: torch.Tensor
    previous: torch.Tensor
    grad: torch.Tensor
    step: torch.Tensor
    last_loss: torch.Tensor
    increases: torch.Tensor
    best_x: torch.Tensor
    best_loss: torch.Tensor
    best_grad: torch.Tensor
    best_at_check: torch.Tensor
    halved_at_check: torch.Tensor

    def keep(self, rows: torch.Tensor) -> _State:
        """The state of a subset of the rows (int64 indices)."""

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, rows)

        return _State(
            ball=self.ball.keep(rows),
            y=pick(self.y),
            y_target=pick(self.y_target) if self.y_target is not None else None,
            here=pick(self.here),
            previous=pick(self.previous),
            grad=pick(self.grad),
            step=pick(self.step),
            last_loss=pick(self.last_loss),
            increases=pick(self.increases),
            best_x=pick(self.best_x),
            best_loss=pick(self.best_loss),
            best_grad=pick(self.best_grad),
            best_at_check=pick(self.best_at_check),
            halved_at_check=pick(self.halved_at_check),
        )


def _likeliest_wrong_classes(target: Target, x: torch.Tensor, y: torch.Tensor, k: int) -> list[torch.Tensor]:
    """For each rank 1 … k, the rank-th most likely class other than the true one, per sample."""
    import torch

    scores = target.predict(x).clone()
    scores.scatter_(1, y[:, None], -torch.inf)
    order = scores.argsort(dim=1, descending=True, stable=True)
    return [order[:, rank] for rank in range(k)]


ATTACKS.add("apgd-ce", functools.partial(APGD, loss="ce"))
ATTACKS.add("apgd-dlr", functools.partial(APGD, loss="dlr"))
ATTACKS.add("apgd-t", functools.partial(APGD, loss="dlr", targeted=True))
