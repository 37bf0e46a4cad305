"""Extraction attacks and the extraction audit on the digits demo model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hoplon.attacks.extraction import (
    JacobianAugmentation,
    KnockoffNets,
    fidelity,
    make_extraction_attack,
    transformed_digits,
)
from hoplon.audit.extraction import HardenedTarget, HardeningSetting, extraction, parse_setting
from hoplon.core.errors import InputError
from hoplon.data import Dataset
from hoplon.targets import Budget, TorchTarget
from hoplon.targets.types import Capability


def test_knockoff_spends_exactly_its_budget_and_copies_the_model(
    digits_target: TorchTarget, digits_test: Dataset
) -> None:
    result = KnockoffNets(budget=300, train_steps=150).run(digits_target, transformed_digits(400), seed=0)
    assert result.n_queries == 300 and digits_target.counter.queries == 300
    victim = digits_target.predict(digits_test.x).argmax(1)
    assert fidelity(result.surrogate, victim, digits_test.x) > 0.3  # chance is 0.1


def test_jbda_is_deterministic_respects_the_budget_and_stays_in_the_box(digits_target: TorchTarget) -> None:
    view = HardenedTarget(digits_target, HardeningSetting("label-only", label_only=True))
    pool = transformed_digits(64, seed=3)
    a = JacobianAugmentation(budget=45, n_seed=10, train_steps=20).run(view, pool, seed=0)
    b = JacobianAugmentation(budget=45, n_seed=10, train_steps=20).run(view, pool, seed=0)
    assert a.n_queries == 45 and torch.equal(a.queries, b.queries) and a.label_only
    assert float(a.queries.min()) >= 0.0 and float(a.queries.max()) <= 1.0
    # Synthetic children sit at a fixed step from a parent: the signature PRADA and the similarity detector use.
    d = torch.cdist(a.queries[10:20].flatten(1), a.queries[:10].flatten(1)).min(1).values
    assert float(d.max()) <= 0.1 * 8 + 1e-5
    blinded = JacobianAugmentation(budget=45, n_seed=10, train_steps=20, blinding=0.1).run(view, pool, seed=0)
    assert not torch.equal(blinded.queries[10:], a.queries[10:])


def test_an_exhausted_budget_stops_the_attack(digits_model: torch.nn.Module, digits_test: Dataset) -> None:
    from hoplon.core.errors import BudgetExceeded

    target = TorchTarget(digits_model, input_shape=(1, 8, 8), bounds=digits_test.bounds, budget=Budget(20))
    with pytest.raises(BudgetExceeded):
        KnockoffNets(budget=30, train_steps=5).run(target, transformed_digits(30), seed=0)


@pytest.mark.parametrize(
    "config", [{"budget": 0}, {"budget": 10, "step": 0.0}, {"budget": 10, "blinding": -1.0}, {"budget": 10, "tau": 0}]
)
def test_bad_configuration_is_refused(config: dict[str, float]) -> None:
    with pytest.raises(InputError):
        make_extraction_attack("jbda", **config)


def test_hardened_views_apply_the_gateway_functions(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x = digits_test.x[:8]
    labels = HardenedTarget(digits_target, parse_setting("label-only"))
    assert labels.capabilities == frozenset({Capability.LABELS})
    one_hot = labels.predict(x)
    assert torch.equal(one_hot.sum(1), torch.ones(8)) and set(one_hot.unique().tolist()) == {0.0, 1.0}
    noisy = HardenedTarget(digits_target, parse_setting("noise-0.1"))
    assert torch.equal(noisy.predict(x), noisy.predict(x))  # keyed noise: the same input, the same noise
    top = HardenedTarget(digits_target, parse_setting("top-1")).predict(x)
    assert int((top > 0).sum()) == 8
    with pytest.raises(InputError):
        parse_setting("median-3")


def test_the_audit_reports_a_budget_curve_per_setting(digits_target: TorchTarget, digits_test: Dataset) -> None:
    report = extraction(
        digits_target,
        digits_test,
        budgets=[40, 80],
        attacks=["knockoff", "jbda"],
        settings=[parse_setting("none"), parse_setting("label-only")],
        train_steps=40,
        command="hoplon audit extraction",
    )
    rows = report.results["extraction"]
    assert len(rows) == 8 and {r["setting"] for r in rows} == {"none", "label-only"}
    assert all(r["queries"] == r["budget"] for r in rows)
    assert {f.id for f in report.findings} >= {"extraction.knockoff.none", "extraction.jbda.label-only"}
    assert "fidelity_reduction_vs_none" in next(f for f in report.findings if f.id.endswith("label-only")).metrics
    assert len(report.figures["extraction_curve"]) == 4


def test_cli_audit_extraction_writes_the_reports(
    digits_model: torch.nn.Module, digits_test: Dataset, tmp_path: Path
) -> None:
    from hoplon.cli.main import main
    from hoplon.targets.torch_target import quiet_torchscript

    model = tmp_path / "digits.pt"
    with quiet_torchscript(), torch.no_grad():
        torch.jit.save(torch.jit.trace(digits_model.eval(), digits_test.x[:1]), str(model))
    out = tmp_path / "out"
    code = main(
        [
            "audit",
            "extraction",
            "--model",
            str(model),
            "--budget",
            "30",
            "--attacks",
            "knockoff",
            "--outputs",
            "none,round-1",
            "--train-steps",
            "20",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and (out / "report.json").is_file() and (out / "report.html").is_file()
    assert main(["audit", "extraction", "--model", str(model), "--budget", "0"]) == 2
