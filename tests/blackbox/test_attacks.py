"""Square Attack and HopSkipJump: strength with few queries, query accounting, budgets, every target kind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from hoplon.attacks import HopSkipJump, SquareAttack, evaluate, make
from hoplon.attacks.evasion.ops import flat_norm
from hoplon.core import InputError
from hoplon.data import Dataset
from hoplon.targets import (
    Budget,
    Capability,
    InputSpec,
    OnnxTarget,
    QueryCounter,
    ScoreKind,
    SklearnTarget,
    TorchTarget,
)
from tests.conftest import export_onnx


class LabelsOnly:
    """A target that reveals only the top-1 label (as one-hot scores), like a decision-only API."""

    def __init__(self, inner: TorchTarget) -> None:
        self.inner = inner
        self.name = "labels-only"
        self.score_kind: ScoreKind = "probabilities"
        self.n_classes = inner.n_classes
        self.input_spec: InputSpec = inner.input_spec
        self.capabilities = frozenset({Capability.LABELS})
        self.counter: QueryCounter = inner.counter

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        labels = self.inner.predict(x).argmax(1)
        return torch.nn.functional.one_hot(labels, self.n_classes).float()


def _robust(ev_clean: torch.Tensor, is_adv: torch.Tensor) -> float:
    return float((ev_clean & ~is_adv).float().mean())


def test_registered_by_name() -> None:
    assert isinstance(make("square"), SquareAttack)
    assert isinstance(make("hsja"), HopSkipJump)
    assert make("square").info.capability is Capability.SCORES
    assert make("hsja").info.capability is Capability.LABELS


def test_square_linf_fools_the_digits_cnn_with_1000_queries(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:50], digits_test.y[:50]
    ev = evaluate(SquareAttack(max_queries=1000), digits_target, x, y, eps=[0.2], bounds=digits_test.bounds)
    outcome = ev.outcomes[0]
    # Measured: 1 % robust accuracy at eps=0.2 (APGD: 0 %); a clear margin for seeds and platforms.
    assert _robust(ev.clean_correct, outcome.is_adv) <= 0.1
    assert bool((flat_norm(outcome.x_adv - x, "linf") <= 0.2 + 1e-6).all())
    # One query per iteration and sample at most, plus the framework's clean and re-check passes.
    assert outcome.queries <= 1000 * len(x) + 2 * len(x)


def test_square_l2_and_more_queries_help(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:40], digits_test.y[:40]
    few = evaluate(SquareAttack(norm="l2", max_queries=20, p_init=0.1), digits_target, x, y, eps=[1.5])
    many = evaluate(SquareAttack(norm="l2", max_queries=600, p_init=0.1), digits_target, x, y, eps=[1.5])
    assert int(many.outcomes[0].is_adv.sum()) > int(few.outcomes[0].is_adv.sum())
    assert _robust(many.clean_correct, many.outcomes[0].is_adv) <= 0.3
    assert bool((flat_norm(many.outcomes[0].x_adv - x, "l2") <= 1.5 + 1e-5).all())


def test_square_stops_inside_a_query_budget_and_keeps_what_it_found(
    digits_model: torch.nn.Module, digits_test: Dataset
) -> None:
    target = TorchTarget(digits_model, input_shape=(1, 8, 8), bounds=digits_test.bounds, budget=Budget(1500))
    x, y = digits_test.x[:50], digits_test.y[:50]
    ev = evaluate(SquareAttack(max_queries=5000), target, x, y, eps=[0.2])
    assert target.counter.queries <= 1500
    assert int(ev.outcomes[0].is_adv.sum()) >= 10  # what it found before the budget ran out is kept


def test_square_needs_scores(digits_target: TorchTarget, digits_test: Dataset) -> None:
    with pytest.raises(InputError, match="needs a target with 'scores'"):
        evaluate(SquareAttack(), LabelsOnly(digits_target), digits_test.x[:4], digits_test.y[:4], eps=[0.1])


@pytest.mark.parametrize("bad", [{"max_queries": 1}, {"p_init": 0.0}, {"norm": "l1"}])
def test_square_validates_its_configuration(bad: dict[str, object]) -> None:
    with pytest.raises(InputError, match="parameter of SquareAttack"):
        SquareAttack(**bad)  # type: ignore[arg-type]


def test_hsja_shrinks_the_perturbation_over_iterations(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:20], digits_test.y[:20]
    target = LabelsOnly(digits_target)
    medians = []
    for steps in (1, 8):
        result = HopSkipJump(steps=steps, init_evals=50).run(
            target, x, y, eps=1.0, bounds=digits_test.bounds, rng=torch.Generator().manual_seed(0)
        )
        fooled = target.predict(result.x_adv).argmax(1) != y
        assert bool(fooled.all())  # every point HSJA returns is misclassified (it stays on the adversarial side)
        medians.append(float(flat_norm(result.x_adv - x, "l2").median()))
    assert medians[1] < 0.8 * medians[0]


def test_hsja_linf_through_evaluate(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:20], digits_test.y[:20]
    ev = evaluate(HopSkipJump(norm="linf", steps=6, init_evals=50), digits_target, x, y, eps=[0.05, 0.3])
    small, large = (int(o.is_adv.sum()) for o in ev.outcomes)
    assert large >= small and large >= 0.9 * int(ev.clean_correct.sum())


def test_hsja_stops_inside_a_query_budget(digits_model: torch.nn.Module, digits_test: Dataset) -> None:
    target = TorchTarget(digits_model, input_shape=(1, 8, 8), bounds=digits_test.bounds, budget=Budget(3000))
    x, y = digits_test.x[:10], digits_test.y[:10]
    ev = evaluate(HopSkipJump(steps=50), target, x, y, eps=[3.0])
    assert target.counter.queries <= 3000
    assert int(ev.outcomes[0].is_adv.sum()) >= 5


def test_both_run_on_the_tabular_box_with_sklearn(cancer_train: Dataset, cancer_test: Dataset) -> None:
    model = LogisticRegression(max_iter=500).fit(cancer_train.x.numpy(), cancer_train.y.numpy())
    target = SklearnTarget(model, bounds=cancer_test.bounds)
    x, y = cancer_test.x[:30], cancer_test.y[:30]
    square = evaluate(SquareAttack(max_queries=300), target, x, y, eps=[1.0])
    assert int(square.outcomes[0].is_adv.sum()) >= 0.5 * int(square.clean_correct.sum())
    assert bool(cancer_test.bounds.contains(square.outcomes[0].x_adv).all())
    hsja = evaluate(HopSkipJump(steps=5, init_evals=50), target, x, y, eps=[6.0])
    assert bool(cancer_test.bounds.contains(hsja.outcomes[0].x_adv).all())
    assert int(hsja.outcomes[0].is_adv.sum()) >= 0.9 * int(hsja.clean_correct.sum())


def test_square_on_an_onnx_target(digits_model: torch.nn.Module, digits_test: Dataset, tmp_path: Path) -> None:
    path = export_onnx(digits_model, digits_test.x[:1], tmp_path / "m.onnx")
    target = OnnxTarget(str(path), bounds=digits_test.bounds)
    x, y = digits_test.x[:30], digits_test.y[:30]
    ev = evaluate(SquareAttack(max_queries=300), target, x, y, eps=[0.2])
    assert _robust(ev.clean_correct, ev.outcomes[0].is_adv) <= 0.2


def test_the_audit_uses_the_black_box_ensemble_without_gradients(
    cancer_train: Dataset, cancer_test: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    from hoplon.audit import robustness

    model = LogisticRegression(max_iter=500).fit(cancer_train.x.numpy(), cancer_train.y.numpy())
    target = SklearnTarget(model, bounds=cancer_test.bounds, name="logreg")
    data = cancer_test.subset(slice(0, 20))
    report = robustness(target, data, eps=[1.5], command="test")  # the defaults: fgsm, pgd, auto
    assert "skipping fgsm, pgd" in caplog.text
    (row,) = report.results["robustness"]
    assert row["attack"] == "worst-case" and row["components"] == ["square", "hsja"]
    assert row["attack_success_rate"] > 0.3
