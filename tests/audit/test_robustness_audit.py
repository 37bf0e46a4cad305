"""The robustness audit from Python: headline figures, findings, gates and figures."""

from __future__ import annotations

import pytest

from hoplon.audit import parse_gate, robustness
from hoplon.core import InputError, Severity
from hoplon.data import Dataset
from hoplon.targets import TorchTarget


def test_worst_case_at_eps_03_breaks_the_demo_cnn(digits_target: TorchTarget, digits_test: Dataset) -> None:
    # The strength oracle: at L-inf eps = 0.3 (the usual MNIST budget) an undefended CNN keeps <= 5 %.
    report = robustness(digits_target, digits_test, eps=[0.3], attacks=["auto"])
    (row,) = [r for r in report.results["robustness"] if r["attack"] == "worst-case"]
    assert row["n"] == digits_test.n
    assert row["clean_accuracy"] > 0.95
    assert row["robust_accuracy"] <= 0.05
    headline = next(f for f in report.findings if f.id == "evasion.worst-case.linf")
    assert headline.severity is Severity.CRITICAL


def test_worst_case_is_never_weaker_than_any_single_attack(digits_target: TorchTarget, digits_test: Dataset) -> None:
    data = digits_test.subset(slice(0, 150))
    report = robustness(digits_target, data, eps=[0.05, 0.1], attacks=["fgsm", "pgd", "auto"])
    rows = report.results["robustness"]
    for eps in (0.05, 0.1):
        at = {r["attack"]: r["robust_accuracy"] for r in rows if r["eps"] == eps}
        assert at["worst-case"] <= min(at["fgsm"], at["pgd"])


def test_gates_findings_and_examples(digits_target: TorchTarget, digits_test: Dataset) -> None:
    data = digits_test.subset(slice(0, 60))
    report = robustness(
        digits_target, data, eps=[0.1, 0.2], attacks=["pgd"], gates=[parse_gate("robust_accuracy@0.2=0.9")]
    )
    (gate,) = report.results["gates"]
    assert gate["eps"] == 0.2 and not gate["passed"]
    assert {f.id for f in report.findings} >= {"evasion.pgd.linf"}
    examples = report.figures["examples"]
    assert examples["kind"] == "image" and 0 < len(examples["items"]) <= 8
    item = examples["items"][0]
    assert item["label"] != item["adversarial_prediction"]
    assert all(f.taxonomy for f in report.findings)


def test_tabular_report_has_per_feature_perturbations(cancer_target: TorchTarget, cancer_test: Dataset) -> None:
    report = robustness(cancer_target, cancer_test, eps=[0.5, 1.0], attacks=["pgd", "cw-l2"], norm="l2")
    examples = report.figures["examples"]
    assert examples["kind"] == "tabular"
    assert len(examples["features"]) == 30 == len(examples["mean_abs_perturbation"])
    assert examples["features"][0] == "mean radius"


def test_subset_and_bad_arguments(digits_target: TorchTarget, digits_test: Dataset) -> None:
    report = robustness(digits_target, digits_test, eps=[0.1], attacks=["fgsm"], n_samples=40, seed=3)
    assert report.results["robustness"][0]["n"] == 40
    with pytest.raises(InputError, match="Unknown attack 'nope'"):
        robustness(digits_target, digits_test, eps=[0.1], attacks=["nope"])
    with pytest.raises(InputError, match="must be > 0"):
        robustness(digits_target, digits_test, eps=[0.0], attacks=["fgsm"])
    with pytest.raises(InputError, match="'norm' parameter must be 'linf' or 'l2'"):
        robustness(digits_target, digits_test, eps=[0.1], attacks=["fgsm"], norm="l1")
