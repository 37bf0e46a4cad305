"""Renderer fixtures: the sample robustness report, a tabular one, a scan report, a hostile one, a privacy
audit and a certification (built in ``tests/report/kinds.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from hoplon.core.finding import Finding, Severity
from hoplon.core.report import Asset, Report
from tests.report.kinds import certified_report, privacy_report

HERE = Path(__file__).parent
SAMPLE = HERE / "sample_report.json"
GOLDEN = HERE.parent / "golden" / "report"
EVIL = "<script>alert('x')</script>"


def _zero_timings(value: Any) -> Any:
    """Timings vary from run to run: set every ``*_s`` figure to 0.0, recursively."""
    if isinstance(value, dict):
        return {
            k: 0.0 if k.endswith("_s") and isinstance(value[k], float) else _zero_timings(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_zero_timings(v) for v in value]
    return value


def normalise(report: Report) -> Report:
    """The report with its time, hoplon version, environment and timings replaced by fixed values."""
    return dataclasses.replace(
        report,
        created="2000-01-01T00:00:00+00:00",
        version="0.0.0+golden",
        env={"python": "3.x", "platform": "golden"},
        results=_zero_timings(dict(report.results)),
    )


@pytest.fixture(scope="session")
def sample() -> Report:
    return Report.read(SAMPLE)


@pytest.fixture()
def tabular() -> Report:
    features = ["mean radius", "mean texture", "worst <b>area</b>"]
    rows = [
        {
            "attack": a,
            "norm": "l2",
            "eps": e,
            "n": 114,
            "clean_accuracy": 0.97,
            "robust_accuracy": r,
            "attack_success_rate": 1 - r / 0.97,
            "median_linf": e / 2,
            "median_l2": e,
            "mean_linf": e / 2,
            "mean_l2": e,
            "queries_per_sample": 20.0,
            "cpu_s": 0.1,
            "wall_s": 0.1,
            "components": [a],
            "partial": a == "pgd",
        }
        for a in ("pgd", "worst-case")
        for e, r in ((0.5, 0.8), (1.0, 0.6))
    ]
    return Report(
        kind="robustness",
        command="hoplon audit robustness --data breast-cancer",
        seed=1,
        assets=[Asset(kind="model", name="cancer-mlp"), Asset(kind="dataset", name="breast-cancer:test")],
        results={"robustness": rows, "headline": "worst-case", "gates": []},
        figures={
            "examples": {
                "attack": "worst-case",
                "norm": "l2",
                "eps": 1.0,
                "kind": "tabular",
                "n_fooled": 40,
                "features": features,
                "mean_abs_perturbation": [0.2, 0.05, 0.4],
                "mean_perturbation": [0.1, -0.05, -0.3],
                "items": [],
            }
        },
    )


@pytest.fixture()
def scan() -> Report:
    finding = Finding(
        id="scan.pickle.global",
        title="Pickle imports os.system",
        severity=Severity.CRITICAL,
        asset="models/evil model.pkl",
        summary="Loading this file runs os.system.",
        evidence={"path": "models/evil model.pkl", "opcodes": [12, 40]},
        taxonomy=("cwe:CWE-502", "atlas:AML.T0010"),
        remediation="Do not load it; ask for a safetensors file.",
    )
    return Report(
        kind="scan",
        command="hoplon scan models/",
        assets=[Asset(kind="model-file", name="models/evil model.pkl", digest="sha256:ab")],
        findings=[finding],
        results={
            "files": [
                {"path": "models/evil model.pkl", "verdict": "unsafe", "size": 1024},
                {"path": "models/ok.safetensors", "verdict": "safe", "size": 2048},
            ],
            "summary": {"n_files": 2, "unsafe": 1},
            "note": "two files scanned",
            "nested": {"a": {"b": [1, 2]}},
        },
    )


@pytest.fixture()
def hostile() -> Report:
    """Attacker-chosen text in every string field a renderer shows."""
    finding = Finding(
        id="evasion.pgd.linf",
        title=f"title {EVIL}",
        severity=Severity.HIGH,
        asset=EVIL,
        summary=f"summary {EVIL}",
        metrics={f"m{EVIL}": 0.5, "text": EVIL},
        evidence={"path": f"dir/{EVIL}.pt", EVIL: EVIL},
        remediation=f"fix {EVIL}",
    )
    row = {
        "attack": EVIL,
        "norm": "linf",
        "eps": 0.1,
        "n": 3,
        "clean_accuracy": 1.0,
        "robust_accuracy": 0.0,
        "attack_success_rate": 1.0,
        "partial": True,
    }
    image = [[[0.0, 1.0], [1.0, 0.0]]]
    return Report(
        kind=f"robustness{EVIL}",
        command=f"hoplon audit {EVIL}",
        env={"python": EVIL},
        assets=[Asset(kind=EVIL, name=EVIL, digest=EVIL, details={EVIL: EVIL})],
        findings=[finding],
        results={
            "robustness": [row],
            "headline": EVIL,
            "gates": [{"metric": EVIL, "threshold": 0.5, "eps": 0.1, "value": 0.0, "passed": False}],
            EVIL: [{EVIL: EVIL}],
        },
        figures={
            "examples": {
                "attack": EVIL,
                "norm": EVIL,
                "eps": 0.1,
                "kind": "image",
                "class_names": [EVIL, "b"],
                "items": [
                    {
                        "index": EVIL,
                        "label": 0,
                        "adversarial_prediction": EVIL,
                        "clean": image,
                        "adversarial": image,
                        "perturbation": image,
                    }
                ],
            }
        },
        config={EVIL: EVIL},
    )


@pytest.fixture()
def privacy() -> Report:
    return privacy_report()


@pytest.fixture()
def certified() -> Report:
    return certified_report()
