"""Core types: findings, severities, taxonomy, the report schema, the registry."""

from __future__ import annotations

import json

import jsonschema
import pytest

from hoplon.core import (
    REPORT_SCHEMA,
    Finding,
    HoplonError,
    InputError,
    Report,
    Severity,
    describe,
    load_taxonomy,
    report_schema,
)
from hoplon.core.registry import Registry


def _finding(**overrides: object) -> Finding:
    base: dict[str, object] = {
        "id": "evasion.pgd.linf",
        "title": "t",
        "severity": Severity.HIGH,
        "asset": "m.pt",
        "summary": "s",
        "taxonomy": ("atlas:AML.T0043", "owasp-ml:ML01", "owasp-llm:LLM01", "nist-ai-rmf:MEASURE", "cwe:CWE-502"),
    }
    base.update(overrides)
    return Finding(**base)  # type: ignore[arg-type]


def test_taxonomy_has_every_scheme_and_known_names() -> None:
    data = load_taxonomy()
    assert describe("atlas:AML.T0043") == "Craft Adversarial Data"
    assert describe("owasp-ml:ML01") == "Input Manipulation Attack"
    assert describe("owasp-llm:LLM01") == "Prompt Injection"
    assert describe("cwe:CWE-502") == "Deserialization of Untrusted Data"
    assert set(data["nist-ai-rmf"]) >= {"GOVERN", "MAP", "MEASURE", "MANAGE"}
    assert len(data["owasp-ml"]) == 10
    assert len(data["owasp-llm"]) == 10


@pytest.mark.parametrize("tag", ["atlas:AML.T9999", "owasp-ml:ML11", "nope:X", "AML.T0043"])
def test_unknown_taxonomy_ids_are_refused(tag: str) -> None:
    with pytest.raises(InputError):
        _finding(taxonomy=(tag,))


def test_severity_is_ordered_and_parses() -> None:
    assert Severity.CRITICAL > Severity.HIGH > Severity.MEDIUM > Severity.LOW > Severity.INFO
    assert Severity.parse("Medium") is Severity.MEDIUM
    with pytest.raises(InputError, match="Unknown severity"):
        Severity.parse("severe")


def test_finding_round_trips_and_nan_becomes_null() -> None:
    finding = _finding(metrics={"robust_accuracy": float("nan"), "n": 3})
    data = finding.to_dict()
    assert data["metrics"]["robust_accuracy"] is None
    assert Finding.from_dict(data) == finding


def test_report_json_matches_shipped_schema_and_round_trips() -> None:
    report = Report(kind="robustness", seed=1, findings=[_finding()], results={"robustness": []})
    data = json.loads(report.to_json())
    assert data["schema"] == REPORT_SCHEMA
    jsonschema.validate(data, report_schema())
    again = Report.from_dict(data)
    assert again.findings == report.findings
    assert again.max_severity is Severity.HIGH


def test_schema_rejects_a_bad_robustness_row() -> None:
    report = Report(kind="robustness", results={"robustness": [{"attack": "pgd", "eps": -1}]})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report.to_dict(), report_schema())


def test_errors_share_one_base_and_input_errors_are_value_errors() -> None:
    assert issubclass(InputError, HoplonError)
    assert issubclass(InputError, ValueError)


def test_registry_is_explicit_and_scoped() -> None:
    registry: Registry[int] = Registry("thing")
    registry.add("one", 1)
    with pytest.raises(InputError, match="already registered"):
        registry.add("one", 2)
    with registry.scoped():
        registry.add("two", 2)
        assert registry.get("two") == 2
    assert "two" not in registry
    with pytest.raises(InputError, match="Unknown thing 'three'; known: one"):
        registry.get("three")
