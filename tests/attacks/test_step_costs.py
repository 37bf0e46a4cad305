"""Slow oracles for the per-step shortcuts of the white-box attacks and of ``evaluate``'s one-step path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from hoplon.attacks import APGD, FGSM, PGD, CarliniWagnerL2, evaluate
from hoplon.attacks.evasion.apgd import checkpoints
from hoplon.attacks.evasion.ops import (
    BallBox,
    ascent_direction,
    clip_to_ball_and_box,
    flat_norm,
    input_gradient,
    loss_and_grad,
    random_start,
)
from hoplon.attacks.types import AdversarialBatch, AttackInfo
from hoplon.core.errors import InputError
from hoplon.data import Dataset
from hoplon.targets import Bounds, TorchTarget
from hoplon.targets.types import Capability, Target

TOL = 1e-6


def test_input_gradient_matches_autograd(cancer_target: TorchTarget, cancer_test: Dataset) -> None:
    x = cancer_test.x[:12].clone().requires_grad_(True)
    logits = cancer_target.logits(x)
    loss = torch.nn.functional.cross_entropy(logits, cancer_test.y[:12], reduction="sum")
    seed = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    (expected,) = torch.autograd.grad(loss, x, retain_graph=True)
    (expected_vjp,) = torch.autograd.grad(logits, x, seed, retain_graph=True)
    assert torch.equal(input_gradient(loss, x), expected)  # frees the graph, as torch.autograd.grad does
    logits = cancer_target.logits(x)
    assert torch.equal(input_gradient(logits, x, seed), expected_vjp)
    logits = cancer_target.logits(x)
    with pytest.raises(InputError, match="needs a scalar output"):
        input_gradient(logits, x)
    with pytest.raises(InputError, match="The seed has shape"):
        input_gradient(logits, x, seed[:3])
    with pytest.raises(InputError, match="depends on the input"):
        input_gradient(loss.detach(), x)


@pytest.mark.parametrize("confidence", [0.0, 0.5])
def test_cw_gradient_matches_autograd_of_its_objective(
    cancer_target: TorchTarget, cancer_test: Dataset, confidence: float
) -> None:
    """The written-out chain rule equals autograd through ``‖m + h·tanh(w) − x‖² + c·max(κ − margin, 0)``."""
    g = torch.Generator().manual_seed(3)
    x, y = cancer_test.x[:20], cancer_test.y[:20]
    lower, upper = cancer_test.bounds.lower.expand(30), cancer_test.bounds.upper.expand(30)
    middle, half = (upper + lower) / 2, (upper - lower) / 2
    # Half the rows near x (hinge active), half at random points of the box (some of them adversarial).
    w = torch.atanh(((x - middle) / half).clamp(-0.99, 0.99)) + 0.3 * torch.randn(x.shape, generator=g)
    w[10:] = 2 * torch.randn((10, 30), generator=g)
    c = torch.rand(20, generator=g) * 5
    true = torch.nn.functional.one_hot(y, 2).bool()
    attack = CarliniWagnerL2(confidence=confidence)
    objective, slack, l2_squared, candidate, grad = attack._objective_and_gradient(
        cancer_target, w, middle, half, x, y, true, c
    )

    leaf = w.clone().requires_grad_(True)
    point = middle + half * torch.tanh(leaf)
    logits = cancer_target.logits(point)
    margin = logits.masked_fill(true, -torch.inf).amax(1) - logits.gather(1, y[:, None]).squeeze(1)
    reference = (point - x).pow(2).sum(1) + c * torch.clamp(confidence - margin, min=0.0)
    (expected,) = torch.autograd.grad(reference.sum(), leaf)
    assert bool((confidence - margin > 0).any()) and bool((confidence - margin < 0).any())  # both hinge sides
    assert torch.allclose(objective, reference.detach(), rtol=1e-5, atol=1e-5)
    assert torch.allclose(slack, (confidence - margin).detach(), atol=1e-5)
    assert torch.allclose(l2_squared, (point - x).pow(2).sum(1).detach(), rtol=1e-5, atol=1e-6)
    assert torch.allclose(candidate, point.detach(), atol=1e-6)
    assert torch.allclose(grad, expected, rtol=1e-4, atol=1e-5)


def _pgd_oracle(
    target: TorchTarget, x: torch.Tensor, y: torch.Tensor, eps: float, bounds: Bounds, steps: int
) -> torch.Tensor:
    """PGD from x without compaction: every row steps until an iterate fools the model; that iterate is kept."""
    step = eps * 2.5 / steps
    current, best = x.clone(), x.clone()
    done = torch.zeros(len(x), dtype=torch.bool)
    for _ in range(steps):
        point = current.clone().requires_grad_(True)
        logits = target.logits(point)
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y, reduction="sum"), point)
        fooled = (logits.detach().argmax(1) != y) & ~done
        best[fooled], done = current[fooled], done | fooled
        moved = clip_to_ball_and_box(x, current + step * grad.sign(), "linf", eps, bounds)
        current = torch.where(done[:, None], current, moved)
    best[~done] = current[~done]
    return best


def test_pgd_matches_a_plain_loop_without_compaction(cancer_target: TorchTarget, cancer_test: Dataset) -> None:
    x, y, bounds = cancer_test.x[:40], cancer_test.y[:40], cancer_test.bounds
    for eps in (0.3, 0.8):
        fast = PGD(steps=15).run(cancer_target, x, y, eps=eps, bounds=bounds, rng=torch.Generator()).x_adv
        slow = _pgd_oracle(cancer_target, x, y, eps, bounds, 15)
        assert torch.allclose(fast, slow, atol=1e-5)
        fooled = cancer_target.predict(fast).argmax(1) != y
        assert bool(fooled.any()) and bool((~fooled).any())  # both paths exercised: rows leaving, rows staying


def _apgd_oracle(
    attack: APGD,
    target: TorchTarget,
    x: torch.Tensor,
    y: torch.Tensor,
    y_target: torch.Tensor | None,
    eps: float,
    bounds: Bounds,
    rng: torch.Generator,
    at_x: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run written as the paper states it: every row's state in whole-batch tensors, updated by
    row scatters, a fooled row frozen in place (no compaction), the framework's projection at every step."""
    norm, n = attack.norm, x.shape[0]
    shape = (-1, *([1] * (x.ndim - 1)))

    def project(point: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return clip_to_ball_and_box(x[rows], point, norm, eps, bounds)

    def targets(rows: torch.Tensor) -> torch.Tensor | None:
        return y_target[rows] if y_target is not None else None

    current = x.clone() if at_x else random_start(x, norm, eps, bounds, rng)
    loss, grad, logits = loss_and_grad(target, current, y, attack.loss, y_target)
    if at_x:
        stuck = (~grad.flatten(1).ne(0).any(1)).nonzero().squeeze(1)
        if stuck.numel():
            current[stuck] = random_start(x[stuck], norm, eps, bounds, rng)
            loss[stuck], grad[stuck], logits[stuck] = loss_and_grad(
                target, current[stuck], y[stuck], attack.loss, targets(stuck)
            )
    fooled = logits.argmax(1) != y
    found, previous = current.clone(), current.clone()
    best_x, best_loss, best_grad = current.clone(), loss.clone(), grad.clone()
    step = torch.full((n,), 2.0 * eps)
    last_loss, best_at_check = loss.clone(), loss.clone()
    increases = torch.zeros(n, dtype=torch.long)
    halved_at_check = torch.zeros(n, dtype=torch.bool)
    marks, last_mark = set(checkpoints(attack.steps)), 0
    for k in range(attack.steps):
        rows = (~fooled).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        alpha = attack.momentum if k > 0 else 1.0
        here = current[rows]
        z = project(here + step[rows].reshape(shape) * ascent_direction(grad[rows], norm), rows)
        moved = project(here + alpha * (z - here) + (1.0 - alpha) * (here - previous[rows]), rows)
        previous[rows], current[rows] = here, moved
        values, gradients, logits = loss_and_grad(target, moved, y[rows], attack.loss, targets(rows))
        grad[rows] = gradients
        increases[rows] += (values > last_loss[rows]).long()
        last_loss[rows] = values
        better = values > best_loss[rows]
        best_x[rows[better]], best_loss[rows[better]], best_grad[rows[better]] = (
            moved[better],
            values[better],
            gradients[better],
        )
        hit = logits.argmax(1) != y[rows]
        found[rows[hit]] = moved[hit]
        fooled[rows[hit]] = True
        if k + 1 in marks:
            halve = (increases.double() < attack.rho * (k + 1 - last_mark)) | (
                ~halved_at_check & (best_loss <= best_at_check)
            )
            halve &= ~fooled
            step[halve] /= 2.0
            current[halve], grad[halve], last_loss[halve] = best_x[halve], best_grad[halve], best_loss[halve]
            halved_at_check, best_at_check = halve, best_loss.clone()
            increases.zero_()
            last_mark = k + 1
    found[~fooled] = best_x[~fooled]
    return found, fooled


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("at_x", [True, False])
@pytest.mark.parametrize("targeted", [False, True])
def test_apgd_matches_the_per_row_algorithm(
    cancer_target: TorchTarget, cancer_test: Dataset, norm: str, at_x: bool, targeted: bool
) -> None:
    """The compacted run (rows leave the state tensors when fooled) equals the per-row loop, checkpoints
    and momentum included: 30 steps cross the schedule's checkpoints 7, 13, 18, 21, 24, 27, 30."""
    x, y, bounds = cancer_test.x[:60], cancer_test.y[:60], cancer_test.bounds
    eps = 0.4 if norm == "linf" else 1.5
    y_target = (1 - y) if targeted else None
    attack = APGD(norm=norm, steps=30, loss="ce")  # type: ignore[arg-type]
    fast, fast_fooled = attack._run_once(
        cancer_target, x, y, y_target, eps, bounds, torch.Generator().manual_seed(5), at_x=at_x
    )
    slow, slow_fooled = _apgd_oracle(
        attack, cancer_target, x, y, y_target, eps, bounds, torch.Generator().manual_seed(5), at_x
    )
    assert torch.equal(fast_fooled, slow_fooled)
    assert bool(fast_fooled.any()) and bool((~fast_fooled).any())  # rows leaving and rows staying
    # L2 normalises with a fused norm and projects with addcmul: rounding moves a robust row's last point by
    # up to ~3e-4 over 30 steps, at the same loss to 1e-6.
    assert torch.allclose(fast, slow, atol=1e-5 if norm == "linf" else 1e-3)
    loss = torch.nn.CrossEntropyLoss(reduction="none")
    assert torch.allclose(loss(cancer_target.logits(fast), y), loss(cancer_target.logits(slow), y), atol=1e-5)


def test_ball_box_reads_x_only_when_asked(cancer_test: Dataset) -> None:
    x, bounds = cancer_test.x[:10], cancer_test.bounds
    first, second = torch.tensor([0, 2, 3, 5, 9]), torch.tensor([1, 4])
    kept = BallBox(x, "linf", 0.2, bounds).keep(first).keep(second)
    assert torch.equal(kept.x, x[first][second])
    point = x[first][second] + 1.0
    assert torch.equal(kept.project(point), clip_to_ball_and_box(kept.x, point, "linf", 0.2, bounds))


@dataclass(frozen=True, kw_only=True)
class _Hostile:
    """A one-step attack whose directions are too long, infinite or NaN (an attack is never trusted)."""

    info: ClassVar[AttackInfo] = AttackInfo(
        name="hostile",
        title="Hostile directions",
        citation="test",
        url="https://example.org",
        threat_model="test",
        capability=Capability.GRADIENTS,
        norms=("linf", "l2"),
    )
    norm: str = "linf"

    def direction(
        self, target: Target, x: torch.Tensor, y: torch.Tensor, rng: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        step = 50 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        step[0, 0], step[1, 3], step[2] = torch.nan, torch.inf, -torch.inf
        return step, None, target.predict(x)

    def run(
        self, target: Target, x: torch.Tensor, y: torch.Tensor, *, eps: float, bounds: Bounds, rng: torch.Generator
    ) -> AdversarialBatch:
        step, _, _ = self.direction(target, x, y, rng)
        return AdversarialBatch(x + eps * step)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_one_step_directions_are_projected_and_fail_closed(
    cancer_target: TorchTarget, cancer_test: Dataset, norm: str
) -> None:
    x, y, bounds = cancer_test.x[:30], cancer_test.y[:30], cancer_test.bounds
    result = evaluate(_Hostile(norm=norm), cancer_target, x, y, eps=[0.5, 2.0], bounds=bounds)  # type: ignore[arg-type]
    for outcome in result.outcomes:
        assert bool(torch.isfinite(outcome.x_adv).all())
        assert bool((flat_norm(outcome.x_adv - x, norm) <= outcome.eps + TOL).all())  # type: ignore[arg-type]
        assert bool(bounds.contains(outcome.x_adv).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_candidates_equal_the_framework_projection(
    cancer_target: TorchTarget, cancer_test: Dataset, norm: str
) -> None:
    """Building ``clip(x + ε·d)`` from directions moved into the unit ball once gives the projected candidates."""
    x, y, bounds = cancer_test.x[:50], cancer_test.y[:50], cancer_test.bounds
    attack = FGSM(norm=norm)  # type: ignore[arg-type]
    step, _, clean = attack.direction(cancer_target, x, y, torch.Generator())
    for eps in (0.5, 1.0) if norm == "linf" else (2.0, 4.0):
        outcome = evaluate(attack, cancer_target, x, y, eps=[eps], bounds=bounds).outcomes[0]
        projected = clip_to_ball_and_box(x, bounds.clip(x + eps * step), norm, eps, bounds)  # type: ignore[arg-type]
        fooled = outcome.is_adv
        assert bool(fooled.any())
        assert torch.allclose(outcome.x_adv[fooled], projected[fooled], atol=1e-5)
        expected = (cancer_target.predict(projected).argmax(1) != y) & (clean.argmax(1) == y)
        assert torch.equal(outcome.is_adv, expected)


def test_one_step_directions_in_several_batches_match_one_batch(
    cancer_target: TorchTarget, cancer_test: Dataset
) -> None:
    x, y, bounds = cancer_test.x[:40], cancer_test.y[:40], cancer_test.bounds
    whole = evaluate(FGSM(), cancer_target, x, y, eps=[0.3, 0.6], bounds=bounds)
    parts = evaluate(FGSM(), cancer_target, x, y, eps=[0.3, 0.6], bounds=bounds, batch_size=7)
    assert torch.equal(whole.clean_correct, parts.clean_correct)
    for a, b in zip(whole.outcomes, parts.outcomes, strict=True):
        assert torch.equal(a.is_adv, b.is_adv)
        assert torch.allclose(a.x_adv, b.x_adv, atol=1e-6)
        assert a.queries == b.queries
