"""Where PGD and APGD start: the clean input for the first run, random points for restarts and stuck rows."""

from __future__ import annotations

import pytest
import torch

from hoplon.attacks import APGD, PGD, Attack, evaluate
from hoplon.attacks.evasion.ops import flat_norm
from hoplon.data import Dataset
from hoplon.targets import Bounds, TorchTarget

TOL = 1e-6


def _x_adv(attack: Attack, target: TorchTarget, data: Dataset, eps: float, seed: int) -> torch.Tensor:
    result = evaluate(attack, target, data.x[:40], data.y[:40], eps=[eps], bounds=data.bounds, seed=seed)
    return result.outcomes[0].x_adv


@pytest.mark.parametrize("attack", [PGD(steps=5), APGD(steps=5)], ids=["pgd", "apgd"])
def test_start_at_x_draws_nothing(digits_target: TorchTarget, digits_test: Dataset, attack: Attack) -> None:
    # One run from x uses no randomness: every seed gives the same examples.
    assert torch.equal(
        _x_adv(attack, digits_target, digits_test, 0.1, 0), _x_adv(attack, digits_target, digits_test, 0.1, 5)
    )


@pytest.mark.parametrize("factory", [PGD, APGD], ids=["pgd", "apgd"])
def test_restarts_after_the_first_start_at_random_points(
    digits_target: TorchTarget, digits_test: Dataset, factory: type[PGD] | type[APGD]
) -> None:
    # At a small eps most samples survive the first run; the raw output is then the second run's last iterate.
    attack = factory(norm="l2", steps=3, restarts=2)
    x, y, bounds = digits_test.x[:40], digits_test.y[:40], digits_test.bounds
    first, second = (
        attack.run(digits_target, x, y, eps=0.3, bounds=bounds, rng=torch.Generator().manual_seed(seed)).x_adv
        for seed in (0, 5)
    )
    assert not torch.equal(first, second)
    for x_adv in (first, second):
        assert bool((flat_norm(x_adv - x, "l2") <= 0.3 + TOL).all())


class _Saturated(torch.nn.Module):
    """A linear model scaled so far that its softmax is exactly one-hot: the cross-entropy gradient is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(30, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.stack([torch.ones(30), -torch.ones(30)]) * 1e4)
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out


@pytest.mark.parametrize("factory", [PGD, APGD], ids=["pgd", "apgd"])
def test_zero_gradient_at_x_falls_back_to_a_random_start(factory: type[PGD] | type[APGD]) -> None:
    target = TorchTarget(_Saturated(), input_shape=(30,), bounds=Bounds(torch.tensor(-3.0), torch.tensor(3.0)))
    x = torch.full((6, 30), 0.5)
    y = torch.zeros(6, dtype=torch.long)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(target.logits(x), y), x)
    x = x.detach()
    assert float(grad.abs().max()) == 0.0  # the premise: no direction at x
    result = factory(steps=3).run(target, x, y, eps=0.1, bounds=target.input_spec.bounds, rng=torch.Generator())  # type: ignore[arg-type]
    moved = flat_norm(result.x_adv - x, "linf")
    assert bool((moved > 0).all())  # without the fallback the sign step of a zero gradient never moves
    assert bool((moved <= 0.1 + TOL).all())
