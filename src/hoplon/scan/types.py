"""The scanner's result and configuration types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from hoplon.core.errors import InputError
from hoplon.core.finding import Finding, Severity

__all__ = ["TAXONOMY", "FileRecord", "ScanLimits", "Verdict", "verdict_of"]

Verdict = Literal["clean", "suspicious", "unsafe", "error"]

#: Taxonomy ids every code-execution finding of the scanner carries.
TAXONOMY: Final = ("cwe:CWE-502", "atlas:AML.T0011.000", "atlas:AML.T0010.003", "owasp-ml:ML06")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanLimits:
    """Bounds that keep a scan fast and its memory flat; going past one is a finding, never a crash.

    Args:
        timeout_s: wall-clock limit per file (or archive member), seconds, > 0. Default 30.
        max_archive_entries: most members read from one archive, >= 1. Default 10 000.
        max_nesting: most levels of archives inside archives, >= 0. Default 4.
        max_ratio: largest decompressed-to-compressed size ratio, >= 1. Default 200.
        max_unpacked_bytes: most bytes unpacked from one archive or wrapper. Default 8 GiB.
        max_pickle_opcodes: most opcodes walked in one pickle stream. Default 50 million.
        max_header_bytes: largest safetensors/GGUF/NumPy header read, bytes. Default 100 MiB.
    """

    timeout_s: float = 30.0
    max_archive_entries: int = 10_000
    max_nesting: int = 4
    max_ratio: float = 200.0
    max_unpacked_bytes: int = 8 << 30
    max_pickle_opcodes: int = 50_000_000
    max_header_bytes: int = 100 << 20

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise InputError(f"The 'timeout_s' parameter of ScanLimits must be > 0. Got {self.timeout_s!r}.")
        for name in ("max_archive_entries", "max_pickle_opcodes", "max_header_bytes", "max_unpacked_bytes"):
            if getattr(self, name) < 1:
                raise InputError(f"The {name!r} parameter of ScanLimits must be >= 1. Got {getattr(self, name)!r}.")
        if self.max_nesting < 0:
            raise InputError(f"The 'max_nesting' parameter of ScanLimits must be >= 0. Got {self.max_nesting!r}.")
        if self.max_ratio < 1:
            raise InputError(f"The 'max_ratio' parameter of ScanLimits must be >= 1. Got {self.max_ratio!r}.")


def verdict_of(findings: Sequence[Finding]) -> Verdict:
    """``unsafe`` with a critical finding, ``suspicious`` with any low-to-high one, else ``clean``."""
    worst = max((f.severity for f in findings), default=Severity.INFO)
    if worst >= Severity.CRITICAL:
        return "unsafe"
    if worst >= Severity.LOW:
        return "suspicious"
    return "clean"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRecord:
    """The scan of one file or archive member (``archive.zip!inner/data.pkl``).

    ``severity`` is the worst finding's severity (``info`` when there is none). ``verdict`` is
    ``error`` only when the file could not be read at all; everything else that goes wrong while reading
    it is a finding.
    """

    path: str
    format: str
    verdict: Verdict
    severity: Severity
    findings: tuple[Finding, ...] = ()
    size_bytes: int | None = None
    sha256: str | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "verdict": self.verdict,
            "severity": self.severity.label,
            "findings": [f.to_dict() for f in self.findings],
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "duration_s": round(self.duration_s, 6),
        }
