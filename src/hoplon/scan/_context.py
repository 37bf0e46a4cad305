"""Shared state of one scan: limits, the clock, the records found so far, and a finding factory."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from hoplon.core.finding import Finding, Severity
from hoplon.scan.types import TAXONOMY, FileRecord, ScanLimits

__all__ = ["INTEGRITY", "RESOURCE", "Context", "StreamScanner", "finding"]

StreamScanner = Callable[["Context", str, BinaryIO, int, int], None]

#: malformed or tampered containers that could hide content from a scanner
INTEGRITY = ("cwe:CWE-20", "atlas:AML.T0010.003", "owasp-ml:ML06")
#: over-limit input (bombs, huge headers, time limits)
RESOURCE = ("cwe:CWE-409", "cwe:CWE-400", "atlas:AML.T0010.003", "owasp-ml:ML06")


def finding(
    id: str,
    severity: Severity,
    asset: str,
    summary: str,
    *,
    title: str = "",
    evidence: Mapping[str, Any] | None = None,
    remediation: str = "",
    taxonomy: tuple[str, ...] = TAXONOMY,
) -> Finding:
    """A scanner finding with the scanner's taxonomy ids."""
    return Finding(
        id=id,
        title=title or summary,
        severity=severity,
        asset=asset,
        summary=summary,
        evidence=dict(evidence or {}),
        taxonomy=taxonomy,
        remediation=remediation
        or "Do not load this file with a pickle-based loader; get the model from a trusted source or in a "
        "format that stores no code (safetensors, ONNX).",
    )


@dataclass(slots=True)
class Context:
    """One top-level file's scan. ``records`` collects the file's and its members' records in order."""

    limits: ScanLimits
    scan_stream: StreamScanner
    deadline: float = 0.0
    unpacked_bytes: int = 0
    records: list[FileRecord] = field(default_factory=list)

    def start_clock(self) -> None:
        self.deadline = time.monotonic() + self.limits.timeout_s

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline
