"""Carlini–Wagner L2: small adversarial perturbations, the box kept by construction, and validation."""

from __future__ import annotations

import pytest
import torch

from hoplon.attacks import PGD, CarliniWagnerL2, evaluate, make
from hoplon.attacks.evasion._private import margin_loss
from hoplon.core import InputError
from hoplon.data import Dataset
from hoplon.metrics import robustness_rows
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


def test_finds_smaller_perturbations_than_pgd(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:N], digits_test.y[:N]
    cw = robustness_rows(evaluate(CarliniWagnerL2(), digits_target, x, y, eps=[NO_LIMIT]), x)[0]
    pgd = robustness_rows(evaluate(PGD(norm="l2", steps=40), digits_target, x, y, eps=[1.0]), x)[0]
    # On the first 60 test digits, PGD-L2 at eps = 1 fools 98 % of the correctly classified ones with a
    # median L2 of 0.98; CW fools all of them with a median L2 of 0.54.
    assert pgd["attack_success_rate"] >= 0.9
    assert cw["attack_success_rate"] >= 0.95
    assert cw["median_l2"] < pgd["median_l2"]


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
        ({"initial_const": -1.0}, "The 'initial_const' parameter of CarliniWagnerL2 must be a float > 0"),
        ({"confidence": -1.0}, "The 'confidence' parameter of CarliniWagnerL2 must be a float >= 0. Got -1.0."),
    ],
)
def test_invalid_configuration_is_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        CarliniWagnerL2(**config)  # type: ignore[arg-type]
