"""``examples/robustness/audit_tabular.py`` runs end to end: reports written, the ordering of attacks, the gate."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "robustness" / "audit_tabular.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_tabular_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_audits_writes_the_reports_and_gates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = _example()
    assert example.main(["--out", str(tmp_path / "pass")]) == 0
    written = {p.name for p in (tmp_path / "pass").iterdir()}
    assert {"report.json", "report.html", "report.sarif"} <= written
    report = json.loads((tmp_path / "pass" / "report.json").read_text())
    assert report["schema"] == "hoplon.report/v1"
    rows = {(r["attack"], r["eps"]): r["robust_accuracy"] for r in report["results"]["robustness"]}
    for eps in (0.1, 0.3, 0.5):
        # The worst case is per sample over every attack run; PGD-40 beats one FGSM step (seeded, so stable).
        assert rows[("worst-case", eps)] <= rows[("pgd", eps)] <= rows[("fgsm", eps)]
    assert rows[("worst-case", 0.5)] < rows[("worst-case", 0.3)] < rows[("worst-case", 0.1)]
    assert "gate robust_accuracy >= 0.6 at eps=0.1: pass" in capsys.readouterr().out

    # A floor above the model's robust accuracy fails the gate: exit code 1, the reports still written.
    assert example.main(["--out", str(tmp_path / "fail"), "--eps", "0.1", "--gate", "0.99"]) == 1
    assert (tmp_path / "fail" / "report.json").exists()
    assert "FAIL" in capsys.readouterr().out
