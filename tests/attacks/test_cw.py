"""Carlini–Wagner L2: small adversarial perturbations, the box kept by construction, and validation."""

from __future__ import annotations

import pytest
import torch

from hoplon.attacks import PGD, CarliniWagnerL2, evaluate, make
from hoplon.attacks.evasion.ops import flat_norm, margin_loss
from hoplon.core import InputError
from hoplon.data import Dataset
from hoplon.targets import Bounds, TorchTarget

N = 60
NO_LIMIT = 1e3  # an L2 budget no perturbation of these inputs reaches: the attack's own result is scored


def _unchanged_or_adversarial(target: TorchTarget, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor) -> None:
    unchanged = (x_adv == x).reshape(len(x), -1).all(1)
    fooled = target.predict(x_adv).argmax(1) != y
    assert bool((unchanged | fooled).all())


def test_registered_as_minimum_norm() -> None:
    attack = make("cw-l2")
    assert isinstance(attack, CarliniWagnerL2)
    assert attack.info.name == "cw-l2" and attack.info.kind == "minimum-norm" and attack.info.norms == ("l2",)
    assert attack.info.url == "https://arxiv.org/abs/1608.04644"


@pytest.mark.parametrize("init", ["x", "random"])
def test_finds_smaller_perturbations_than_pgd(digits_target: TorchTarget, digits_test: Dataset, init: str) -> None:
    x, y = digits_test.x[:N], digits_test.y[:N]
    cw = evaluate(CarliniWagnerL2(), digits_target, x, y, eps=[NO_LIMIT]).outcomes[0]
    pgd = evaluate(PGD(norm="l2", steps=40, init=init), digits_target, x, y, eps=[1.0]).outcomes[0]  # type: ignore[arg-type]
    # On the first 60 test digits CW fools every correctly classified one (median L2 0.54); PGD-L2 at eps = 1
    # fools 97-98 % of them and keeps its first fooling iterate: median L2 0.98 from a random start, 0.54 from
    # x (a small-step path from x crosses the boundary close to where it is nearest). On the samples both
    # fool, CW's perturbation is the smaller one for most of them.
    assert float(cw.is_adv.float().mean()) >= 0.95
    both = cw.is_adv & pgd.is_adv
    assert int(both.sum()) >= 0.9 * int(cw.is_adv.sum())
    cw_l2, pgd_l2 = flat_norm(cw.x_adv - x, "l2")[both], flat_norm(pgd.x_adv - x, "l2")[both]
    assert float(cw_l2.median()) < float(pgd_l2.median())
    assert float((cw_l2 <= pgd_l2 + 1e-6).float().mean()) >= 0.6


def test_output_is_unchanged_or_adversarial(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:40], digits_test.y[:40]
    weak = CarliniWagnerL2(steps=5, binary_search_steps=2, initial_const=1e-3)  # finds few
    result = weak.run(digits_target, x, y, eps=NO_LIMIT, bounds=digits_test.bounds, rng=torch.Generator())
    assert result.y_target is None
    _unchanged_or_adversarial(digits_target, x, y, result.x_adv)


def test_tabular_box_is_kept(cancer_target: TorchTarget, cancer_test: Dataset) -> None:
    x, y = cancer_test.x, cancer_test.y
    result = CarliniWagnerL2().run(cancer_target, x, y, eps=NO_LIMIT, bounds=cancer_test.bounds, rng=torch.Generator())
    assert float(result.x_adv.min()) >= -3.0 and float(result.x_adv.max()) <= 3.0
    _unchanged_or_adversarial(cancer_target, x, y, result.x_adv)
    fooled = cancer_target.predict(result.x_adv).argmax(1) != y
    assert float(fooled.float().mean()) >= 0.95


def test_per_feature_box_with_fixed_features(cancer_target: TorchTarget, cancer_test: Dataset) -> None:
    x, y = cancer_test.x[:40].clone(), cancer_test.y[:40]
    x[:, :3] = 0.5  # three features the attacker may not change: lower == upper there
    lower, upper = torch.full((30,), -3.0), torch.full((30,), 3.0)
    lower[:3] = upper[:3] = 0.5
    upper[3:10] = x[:, 3:10].amax(0)  # and some that may not grow
    bounds = Bounds(lower, upper)
    result = CarliniWagnerL2(steps=50).run(cancer_target, x, y, eps=NO_LIMIT, bounds=bounds, rng=torch.Generator())
    assert torch.equal(result.x_adv[:, :3], x[:, :3])
    assert bool(((result.x_adv >= lower) & (result.x_adv <= upper)).all())
    _unchanged_or_adversarial(cancer_target, x, y, result.x_adv)


def test_confidence_is_honoured(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:20], digits_test.y[:20]
    bounds = digits_test.bounds
    plain = CarliniWagnerL2(steps=50).run(digits_target, x, y, eps=NO_LIMIT, bounds=bounds, rng=torch.Generator())
    sure = CarliniWagnerL2(steps=50, confidence=5.0).run(
        digits_target, x, y, eps=NO_LIMIT, bounds=bounds, rng=torch.Generator()
    )
    found = (sure.x_adv != x).reshape(len(x), -1).any(1)
    assert int(found.sum()) >= 15
    assert bool((margin_loss(digits_target.predict(sure.x_adv[found]), y[found]) >= 5.0 - 1e-3).all())
    plain_l2 = (plain.x_adv - x).reshape(len(x), -1).norm(dim=1)
    sure_l2 = (sure.x_adv - x).reshape(len(x), -1).norm(dim=1)
    assert float(sure_l2[found].median()) > float(plain_l2[found].median())


def test_deterministic(cancer_target: TorchTarget, cancer_test: Dataset) -> None:
    x, y = cancer_test.x[:32], cancer_test.y[:32]
    attack = CarliniWagnerL2(steps=30, binary_search_steps=4)
    first, second = (
        attack.run(cancer_target, x, y, eps=NO_LIMIT, bounds=cancer_test.bounds, rng=torch.Generator())
        for _ in range(2)
    )
    assert torch.equal(first.x_adv, second.x_adv)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"norm": "linf"}, "The 'norm' parameter of CarliniWagnerL2 must be 'l2'. Got 'linf'."),
        ({"steps": 0}, "The 'steps' parameter of CarliniWagnerL2 must be an int >= 1. Got 0."),
        ({"binary_search_steps": 0}, "The 'binary_search_steps' parameter of CarliniWagnerL2 must be an int >= 1"),
        ({"learning_rate": 0.0}, "The 'learning_rate' parameter of CarliniWagnerL2 must be a float > 0. Got 0.0."),
        ({"initial_const": -1.0}, "The 'initial_const' parameter of CarliniWagnerL2 must be 'auto' or a float > 0"),
        ({"initial_const": "big"}, "The 'initial_const' parameter of CarliniWagnerL2 must be 'auto' or a float > 0"),
        ({"confidence": -1.0}, "The 'confidence' parameter of CarliniWagnerL2 must be a float >= 0. Got -1.0."),
    ],
)
def test_invalid_configuration_is_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        CarliniWagnerL2(**config)  # type: ignore[arg-type]


def test_auto_constant_starts_at_the_linearised_boundary(cancer_test: Dataset) -> None:
    # For a linear model the linearised constant is exact: at twice it the first search step fools every sample.
    model = torch.nn.Linear(30, 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([-torch.linspace(-1, 1, 30), torch.linspace(-1, 1, 30)]))
        model.bias.zero_()
    target = TorchTarget(model, input_shape=(30,), bounds=cancer_test.bounds)
    x, y = cancer_test.x[:40], cancer_test.y[:40]
    correct = target.predict(x).argmax(1) == y
    x, y = x[correct], y[correct]
    one_step = CarliniWagnerL2(binary_search_steps=1, steps=100, learning_rate=0.05)
    result = one_step.run(target, x, y, eps=NO_LIMIT, bounds=cancer_test.bounds, rng=torch.Generator())
    assert len(y) >= 20
    assert bool((target.predict(result.x_adv).argmax(1) != y).all())


def test_auto_constant_needs_fewer_search_steps(cancer_target: TorchTarget, cancer_test: Dataset) -> None:
    """3 search steps (the default) from the per-sample constant match 9 from c = 0.01 in fewer rows (median ±1 %)."""
    x, y, bounds = cancer_test.x[:40], cancer_test.y[:40], cancer_test.bounds
    x, y = x[cancer_target.predict(x).argmax(1) == y], y[cancer_target.predict(x).argmax(1) == y]

    def run(attack: CarliniWagnerL2) -> tuple[torch.Tensor, int]:
        before = cancer_target.counter.queries
        out = attack.run(cancer_target, x, y, eps=NO_LIMIT, bounds=bounds, rng=torch.Generator()).x_adv
        return out, cancer_target.counter.queries - before

    auto, auto_rows = run(CarliniWagnerL2())
    fixed, fixed_rows = run(CarliniWagnerL2(binary_search_steps=9, initial_const=0.01))
    fooled_auto = cancer_target.predict(auto).argmax(1) != y
    fooled_fixed = cancer_target.predict(fixed).argmax(1) != y
    assert bool(fooled_auto.all()) and bool(fooled_fixed.all())
    assert float(flat_norm(auto - x, "l2").median()) <= 1.01 * float(flat_norm(fixed - x, "l2").median())
    assert auto_rows < 0.85 * fixed_rows
