"""APGD and its presets: the paper's schedule, the threat model, strength against PGD, and validation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoplon.attacks import APGD, PGD, Attack, evaluate, make
from hoplon.attacks.evasion.apgd import checkpoints
from hoplon.attacks.evasion.ops import flat_norm
from hoplon.core import InputError
from hoplon.data import Dataset
from hoplon.metrics import robustness_rows
from hoplon.targets import TorchTarget

TOL = 1e-6
N = 100  # test samples: enough for percentage-point comparisons, a second or two per attack
PROPERTY = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _robust_accuracy(attack: Attack, target: TorchTarget, data: Dataset, eps: float) -> float:
    x, y = data.x[:N], data.y[:N]
    result = evaluate(attack, target, x, y, eps=[eps], bounds=data.bounds, seed=0)
    return float(robustness_rows(result, x)[0]["robust_accuracy"])


def test_checkpoints_follow_the_paper() -> None:
    # Croce & Hein 2020, Section 3.2, and AutoAttack's schedule for 100 iterations (first interval 22,
    # shrinking by 3 down to 6): 22, 41, 57, 70, 80, 87, 93, 99.
    assert checkpoints(100) == (22, 41, 57, 70, 80, 87, 93, 99)
    assert checkpoints(1) == (1,)
    for steps in (5, 10, 37, 250):
        marks = checkpoints(steps)
        assert list(marks) == sorted(set(marks))
        assert marks[0] >= 1 and marks[-1] <= steps


@pytest.mark.parametrize(
    ("name", "loss", "targeted"), [("apgd-ce", "ce", False), ("apgd-dlr", "dlr", False), ("apgd-t", "dlr", True)]
)
def test_presets_carry_their_names_and_metadata(name: str, loss: str, targeted: bool) -> None:
    attack = make(name)
    assert isinstance(attack, APGD)
    assert (attack.loss, attack.targeted, attack.n_target_classes) == (loss, targeted, 9)
    assert attack.info.name == name
    assert attack.info.url == "https://arxiv.org/abs/2003.01690"
    assert attack.info.citation and attack.info.threat_model and attack.info.norms == ("linf", "l2")
    assert APGD.info.name == "apgd"  # the class keeps the family's name


@PROPERTY
@given(norm=st.sampled_from(["linf", "l2"]), eps=st.floats(0.02, 2.0), targeted=st.booleans())
def test_raw_output_stays_in_ball_and_box(
    digits_target: TorchTarget, digits_test: Dataset, norm: str, eps: float, targeted: bool
) -> None:
    x, y = digits_test.x[:16], digits_test.y[:16]
    attack = APGD(norm=norm, steps=8, loss="dlr", targeted=targeted, n_target_classes=2)  # type: ignore[arg-type]
    result = attack.run(digits_target, x, y, eps=eps, bounds=digits_test.bounds, rng=torch.Generator().manual_seed(1))
    assert result.y_target is None  # success is any misclassification, also for APGD-T
    assert bool((flat_norm(result.x_adv - x, norm) <= eps + TOL).all())  # type: ignore[arg-type]
    assert bool(digits_test.bounds.contains(result.x_adv, tol=TOL).all())


def test_same_seed_gives_the_same_output(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:32], digits_test.y[:32]
    attack = APGD(norm="l2", steps=20, restarts=2)
    first, second = (
        attack.run(digits_target, x, y, eps=0.8, bounds=digits_test.bounds, rng=torch.Generator().manual_seed(7))
        for _ in range(2)
    )
    assert torch.equal(first.x_adv, second.x_adv)


def test_apgd_ce_is_at_least_as_strong_as_pgd(digits_target: TorchTarget, digits_test: Dataset) -> None:
    # On the demo CNN at eps = 0.1 (L-inf): PGD-40 leaves 55 % robust, APGD-CE 54 % (seed 0, 100 samples).
    pgd = _robust_accuracy(PGD(steps=40), digits_target, digits_test, 0.1)
    apgd = _robust_accuracy(make("apgd-ce"), digits_target, digits_test, 0.1)
    assert apgd <= pgd + 0.01
    assert apgd < 0.9  # the attack does work: clean accuracy is about 98 %


def test_apgd_t_is_at_least_as_strong_as_apgd_ce(digits_target: TorchTarget, digits_test: Dataset) -> None:
    # Three target classes instead of nine keep this fast; the nine-class preset is measured in the report.
    apgd_ce = _robust_accuracy(make("apgd-ce"), digits_target, digits_test, 0.1)
    apgd_t = _robust_accuracy(make("apgd-t", n_target_classes=3), digits_target, digits_test, 0.1)
    assert apgd_t <= apgd_ce + 0.01


def test_fooled_samples_stop_costing_queries(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:N], digits_test.y[:N]
    attack = APGD(steps=100)
    before = digits_target.counter.queries
    result = attack.run(digits_target, x, y, eps=0.3, bounds=digits_test.bounds, rng=torch.Generator().manual_seed(0))
    used = digits_target.counter.queries - before
    fooled = digits_target.predict(result.x_adv).argmax(1) != y
    assert float(fooled.float().mean()) >= 0.95  # the first fooling iterate is what comes back
    assert used < len(x) * (attack.steps + 1) / 4


def test_dlr_needs_enough_classes(cancer_target: TorchTarget, cancer_test: Dataset) -> None:
    x, y, rng = cancer_test.x[:8], cancer_test.y[:8], torch.Generator().manual_seed(0)
    with pytest.raises(InputError, match="targeted dlr loss needs at least 4 classes; the model has 2"):
        make("apgd-t").run(cancer_target, x, y, eps=0.5, bounds=cancer_test.bounds, rng=rng)
    with pytest.raises(InputError, match="dlr loss needs at least 3 classes"):
        make("apgd-dlr").run(cancer_target, x, y, eps=0.5, bounds=cancer_test.bounds, rng=rng)
    result = make("apgd-ce").run(cancer_target, x, y, eps=0.5, bounds=cancer_test.bounds, rng=rng)
    assert bool(cancer_test.bounds.contains(result.x_adv, tol=TOL).all())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"steps": 0}, "The 'steps' parameter of APGD must be an int >= 1. Got 0."),
        ({"norm": "l1"}, "The 'norm' parameter of APGD must be one of linf, l2. Got 'l1'."),
        ({"loss": "hinge"}, "The 'loss' parameter of APGD must be ce, dlr or margin. Got 'hinge'."),
        ({"restarts": 0}, "The 'restarts' parameter of APGD must be an int >= 1. Got 0."),
        ({"n_target_classes": 0}, "The 'n_target_classes' parameter of APGD must be an int >= 1. Got 0."),
        ({"rho": 0.0}, r"The 'rho' parameter of APGD must be a float in \(0, 1\]. Got 0.0."),
        ({"momentum": 1.5}, r"The 'momentum' parameter of APGD must be a float in \[0, 1\]. Got 1.5."),
        ({"init": "zero"}, "The 'init' parameter of APGD must be 'x' or 'random'. Got 'zero'."),
    ],
)
def test_invalid_configuration_is_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        APGD(**config)  # type: ignore[arg-type]
