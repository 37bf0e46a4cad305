"""Auto-PGD: step-size-free PGD with momentum, and its targeted DLR form (Croce & Hein 2020)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from hoplon.attacks.evasion.ops import (
    Loss,
    ascent_direction,
    check_eps,
    check_loss_classes,
    clip_to_ball_and_box,
    loss_and_grad,
    random_start,
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
        """One APGD run from x or a random start: the returned points, and which of them fool the model."""
        import torch

        def project(point: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return clip_to_ball_and_box(x[rows], point, self.norm, eps, bounds)

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
        fooled = logits.argmax(1) != y
        found = current.clone()
        previous = current.clone()
        best_x, best_loss, best_grad = current.clone(), loss.clone(), grad.clone()
        step = torch.full((n,), 2.0 * eps, dtype=x.dtype, device=x.device)
        last_loss = loss.clone()
        increases = torch.zeros(n, dtype=torch.long, device=x.device)
        best_at_check = best_loss.clone()
        halved_at_check = torch.zeros(n, dtype=torch.bool, device=x.device)
        marks, last_mark = set(checkpoints(self.steps)), 0
        for k in range(self.steps):
            rows = (~fooled).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            alpha = self.momentum if k > 0 else 1.0
            here = current[rows]
            shape = (-1, *([1] * (x.ndim - 1)))
            z = project(here + step[rows].reshape(shape) * ascent_direction(grad[rows], self.norm), rows)
            moved = project(here + alpha * (z - here) + (1.0 - alpha) * (here - previous[rows]), rows)
            previous[rows] = here
            current[rows] = moved
            values, gradients, logits = loss_and_grad(
                target, moved, y[rows], self.loss, y_target[rows] if y_target is not None else None
            )
            grad[rows] = gradients
            increases[rows] += (values > last_loss[rows]).long()
            last_loss[rows] = values
            better = values > best_loss[rows]
            improved = rows[better]
            best_x[improved], best_loss[improved], best_grad[improved] = (
                moved[better],
                values[better],
                gradients[better],
            )
            hit = logits.argmax(1) != y[rows]
            found[rows[hit]] = moved[hit]
            fooled[rows[hit]] = True
            if k + 1 in marks:
                # Section 3.2: halve where (1) under a fraction rho of the steps since the last checkpoint
                # raised the loss, or (2) the step size was kept at the last checkpoint and the best loss
                # has not improved since; then restart those samples from their best point.
                condition_1 = increases.double() < self.rho * (k + 1 - last_mark)
                condition_2 = ~halved_at_check & (best_loss <= best_at_check)
                halve = (condition_1 | condition_2) & ~fooled
                step[halve] /= 2.0
                current[halve], grad[halve], last_loss[halve] = (
                    best_x[halve],
                    best_grad[halve],
                    best_loss[halve],
                )
                halved_at_check, best_at_check = halve, best_loss.clone()
                increases.zero_()
                last_mark = k + 1
        found[~fooled] = best_x[~fooled]
        return found, fooled


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
