"""The framework function and the gradient attacks: invariants that hold for every attack and ε."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoplon.attacks import ATTACKS, FGSM, PGD, Attack, evaluate, make, merge
from hoplon.attacks.evasion.ops import flat_norm
from hoplon.core import InputError
from hoplon.data import Dataset
from hoplon.metrics import robustness_rows
from hoplon.targets import Bounds, OnnxTarget, TorchTarget

TOL = 1e-6
PROPERTY = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check_valid(x: torch.Tensor, x_adv: torch.Tensor, norm: str, eps: float, bounds: Bounds) -> None:
    assert bool((flat_norm(x_adv - x, norm) <= eps + TOL).all())  # type: ignore[arg-type]
    assert bool(bounds.contains(x_adv, tol=TOL).all())


@PROPERTY
@given(
    name=st.sampled_from(["fgsm", "pgd"]),
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.01, 2.0),
    seed=st.integers(0, 2**16),
)
def test_outputs_stay_in_ball_and_box(
    digits_target: TorchTarget, digits_test: Dataset, name: str, norm: str, eps: float, seed: int
) -> None:
    config = {"steps": 5} if name == "pgd" else {}
    attack = make(name, norm=norm, **config)
    x, y = digits_test.x[:24], digits_test.y[:24]
    result = evaluate(attack, digits_target, x, y, eps=[eps], bounds=digits_test.bounds, seed=seed)
    _check_valid(x, result.outcomes[0].x_adv, norm, eps, digits_test.bounds)


@PROPERTY
@given(norm=st.sampled_from(["linf", "l2"]), eps=st.floats(0.05, 1.5))
def test_tabular_box_is_respected_without_rescaling(
    cancer_target: TorchTarget, cancer_test: Dataset, norm: str, eps: float
) -> None:
    x, y = cancer_test.x, cancer_test.y
    result = evaluate(PGD(norm=norm, steps=5), cancer_target, x, y, eps=[eps], bounds=cancer_test.bounds)  # type: ignore[arg-type]
    _check_valid(x, result.outcomes[0].x_adv, norm, eps, cancer_test.bounds)


def test_per_feature_box_is_respected(cancer_target: TorchTarget, cancer_test: Dataset) -> None:
    lower = torch.full((30,), -3.0)
    upper = torch.full((30,), 3.0)
    upper[:10] = cancer_test.x[:, :10].amax(0)  # some features may not grow at all
    bounds = Bounds(lower, upper)
    result = evaluate(PGD(steps=10), cancer_target, cancer_test.x, cancer_test.y, eps=[1.0], bounds=bounds)
    _check_valid(cancer_test.x, result.outcomes[0].x_adv, "linf", 1.0, bounds)


def test_same_seed_same_output(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:40], digits_test.y[:40]
    attack = PGD(steps=5, init="random")
    runs = [evaluate(attack, digits_target, x, y, eps=[0.1], seed=3, bounds=digits_test.bounds) for _ in range(2)]
    assert torch.equal(runs[0].outcomes[0].x_adv, runs[1].outcomes[0].x_adv)
    other = evaluate(attack, digits_target, x, y, eps=[0.1], seed=4, bounds=digits_test.bounds)
    assert not torch.equal(runs[0].outcomes[0].x_adv, other.outcomes[0].x_adv)


@PROPERTY
@given(eps=st.lists(st.floats(0.01, 0.4), min_size=2, max_size=5, unique=True), name=st.sampled_from(["fgsm", "pgd"]))
def test_robustness_curve_never_increases(
    digits_target: TorchTarget, digits_test: Dataset, eps: list[float], name: str
) -> None:
    attack = make(name, **({"steps": 5} if name == "pgd" else {}))
    x, y = digits_test.x[:40], digits_test.y[:40]
    rows = robustness_rows(evaluate(attack, digits_target, x, y, eps=eps, bounds=digits_test.bounds), x)
    accuracies = [r["robust_accuracy"] for r in rows]
    assert [r["eps"] for r in rows] == sorted(eps)
    assert all(b <= a for a, b in itertools.pairwise(accuracies))


def test_success_is_rechecked_not_trusted(digits_target: TorchTarget, digits_test: Dataset) -> None:
    class Liar:
        """Claims success by returning its input unchanged with a made-up target class."""

        info = FGSM.info
        norm = "linf"

        def run(self, target, x, y, *, eps, bounds, rng):  # type: ignore[no-untyped-def]
            from hoplon.attacks import AdversarialBatch

            return AdversarialBatch(x.clone() + 10.0, None)  # far outside ball and box: gets projected

    liar: Any = Liar()
    result = evaluate(
        liar, digits_target, digits_test.x[:50], digits_test.y[:50], eps=[0.01], bounds=digits_test.bounds
    )
    _check_valid(digits_test.x[:50], result.outcomes[0].x_adv, "linf", 0.01, digits_test.bounds)
    assert float(result.outcomes[0].is_adv.float().mean()) < 0.2


def test_queries_are_counted_and_fooled_samples_stop_costing(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:100], digits_test.y[:100]
    result = evaluate(PGD(steps=40), digits_target, x, y, eps=[0.3], bounds=digits_test.bounds)
    # Every sample needs at most one forward/backward per step plus the framework's re-check.
    assert result.outcomes[0].queries <= 100 * 41
    # At eps=0.3 almost everything falls in a few steps, so far fewer rows are spent than 40 per sample.
    assert result.outcomes[0].queries < 100 * 20


def test_pgd_is_at_least_as_strong_as_fgsm(digits_target: TorchTarget, digits_test: Dataset) -> None:
    eps = [0.05, 0.1, 0.2]
    x, y = digits_test.x, digits_test.y
    fgsm = robustness_rows(evaluate(FGSM(), digits_target, x, y, eps=eps, bounds=digits_test.bounds), x)
    pgd = robustness_rows(evaluate(PGD(), digits_target, x, y, eps=eps, bounds=digits_test.bounds), x)
    for f, p in zip(fgsm, pgd, strict=True):
        assert p["robust_accuracy"] <= f["robust_accuracy"] + 1e-9


def test_ensemble_and_merge_are_per_sample_worst_case(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:120], digits_test.y[:120]
    singles = [evaluate(a, digits_target, x, y, eps=[0.1], bounds=digits_test.bounds) for a in (FGSM(), PGD(steps=10))]
    merged = merge(singles)
    union = singles[0].outcomes[0].is_adv | singles[1].outcomes[0].is_adv
    assert torch.equal(merged.outcomes[0].is_adv, union)
    chained = evaluate([FGSM(), PGD(steps=10)], digits_target, x, y, eps=[0.1], bounds=digits_test.bounds)
    assert chained.attack == "worst-case" and chained.components == ("fgsm", "pgd")
    assert int(chained.outcomes[0].is_adv.sum()) >= max(int(s.outcomes[0].is_adv.sum()) for s in singles)


def test_white_box_attacks_refuse_black_box_targets(tmp_path, cancer_model, cancer_test) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    from tests.conftest import export_onnx

    target = OnnxTarget(
        str(export_onnx(cancer_model, cancer_test.x[:1], tmp_path / "m.onnx")), bounds=cancer_test.bounds
    )
    with pytest.raises(InputError, match="needs a target with 'gradients'"):
        evaluate(PGD(), target, cancer_test.x, cancer_test.y, eps=[0.1])


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: PGD(steps=0), "'steps' parameter of PGD must be an int >= 1. Got 0"),
        (lambda: PGD(norm="l7"), "'norm' parameter of PGD"),  # type: ignore[arg-type]
        (lambda: PGD(rel_stepsize=2.0), "'rel_stepsize' parameter of PGD must be in"),
        (lambda: PGD(init="zero"), "The 'init' parameter of PGD must be 'x' or 'random'. Got 'zero'."),  # type: ignore[arg-type]
        (lambda: FGSM(loss="dlr"), "'loss' parameter of FGSM"),
        (lambda: make("nope"), "Unknown attack 'nope'"),
    ],
)
def test_bad_configuration_is_refused(factory, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message):
        factory()


def test_bad_epsilons_and_labels(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:5], digits_test.y[:5]
    with pytest.raises(InputError, match="epsilon must be > 0"):
        evaluate(FGSM(), digits_target, x, y, eps=[0.0], bounds=digits_test.bounds)
    with pytest.raises(InputError, match=r"Labels must be in 0 \.\. 9"):
        evaluate(FGSM(), digits_target, x, y + 10, eps=[0.1], bounds=digits_test.bounds)
    with pytest.raises(InputError, match="outside the declared bounds"):
        evaluate(FGSM(), digits_target, x + 2, y, eps=[0.1], bounds=digits_test.bounds)


def test_every_registered_attack_is_an_attack() -> None:
    for name in ATTACKS.names():
        attack = make(name)
        assert isinstance(attack, Attack)
