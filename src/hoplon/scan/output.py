"""Scan output formats: the documented per-file JSON list, SARIF 2.1.0 and plain text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from hoplon.core.finding import Severity
from hoplon.scan.types import FileRecord

__all__ = ["JSON_SCHEMA_VERSION", "to_json", "to_sarif", "to_text"]

JSON_SCHEMA_VERSION: Final = "hoplon.scan/v1"
_SARIF_LEVEL: Final = {
    Severity.INFO: "note",
    Severity.LOW: "note",
    Severity.MEDIUM: "warning",
    Severity.HIGH: "error",
    Severity.CRITICAL: "error",
}
_SARIF_SCORE: Final = {
    Severity.INFO: "0.0",
    Severity.LOW: "3.0",
    Severity.MEDIUM: "5.0",
    Severity.HIGH: "8.0",
    Severity.CRITICAL: "9.5",
}


def to_json(records: Sequence[FileRecord]) -> str:
    """The list of per-file records (see ``docs/scan.md``), as indented JSON."""
    return json.dumps([r.to_dict() for r in records], indent=2, allow_nan=False) + "\n"


def _location(path: str) -> dict[str, Any]:
    outer, _, member = path.partition("!")
    loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": outer.replace("\\", "/")}}}
    if member:
        loc["logicalLocations"] = [{"fullyQualifiedName": member, "kind": "member"}]
    return loc


def to_sarif(records: Sequence[FileRecord]) -> str:
    """A SARIF 2.1.0 log with one result per finding and one rule per finding id."""
    from hoplon.core.report import hoplon_version

    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    for record in records:
        for f in record.findings:
            if f.severity < Severity.LOW:
                continue
            rules.setdefault(
                f.id,
                {
                    "id": f.id,
                    "shortDescription": {"text": f.id},
                    "help": {"text": f.remediation or f.summary},
                    "properties": {"tags": list(f.taxonomy), "security-severity": _SARIF_SCORE[f.severity]},
                },
            )
            location = _location(record.path)
            offset = f.evidence.get("offset")
            if isinstance(offset, int):
                location["physicalLocation"]["region"] = {"byteOffset": offset, "byteLength": 1}
            results.append(
                {
                    "ruleId": f.id,
                    "level": _SARIF_LEVEL[f.severity],
                    "message": {"text": f.summary},
                    "locations": [location],
                    "properties": {
                        "severity": f.severity.label,
                        "verdict": record.verdict,
                        "format": record.format,
                        "evidence": {k: v for k, v in f.evidence.items() if isinstance(v, str | int | float | bool)},
                    },
                }
            )
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "hoplon-scan",
                        "version": hoplon_version(),
                        "informationUri": "https://github.com/hoplon/hoplon",
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


def offending(record: FileRecord) -> list[str]:
    """``callable@offset`` (or the finding id) for each finding of at least low severity."""
    items: list[str] = []
    for f in record.findings:
        if f.severity < Severity.LOW:
            continue
        name = f.evidence.get("callable")
        offset = f.evidence.get("offset")
        label = str(name) if name else f.id.removeprefix("scan.")
        items.append(f"{label}@{offset}" if isinstance(offset, int) else label)
    return items


def to_text(records: Sequence[FileRecord]) -> str:
    """One line per record, then one indented line per finding."""
    lines: list[str] = []
    for r in records:
        lines.append(f"{r.verdict.upper():10} {r.severity.label:8} {r.format:14} {r.path}")
        for f in r.findings:
            if f.severity >= Severity.LOW:
                lines.append(f"    {f.severity.label:8} {f.id}: {f.summary}")
    return "\n".join(lines) + "\n"
