"""`Severity` and `Finding`: what every check in hoplon turns its result into."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hoplon.core.errors import InputError
from hoplon.core.taxonomy import validate_ids

__all__ = ["Finding", "MetricValue", "Severity"]

MetricValue = float | int | str | bool | None


class Severity(enum.IntEnum):
    """How urgently a finding needs a person's attention. Ordered, so gates can say ``>= MEDIUM``."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Parse ``'medium'`` (any case) into :attr:`MEDIUM`; raise :class:`InputError` otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise InputError(f"Unknown severity {text!r}; expected one of: {names}.") from None


def _clean_metric(value: MetricValue) -> MetricValue:
    # JSON has no NaN/inf: a figure that could not be computed is recorded as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One thing hoplon found about an asset, with the figures that support it.

    Args:
        id: stable dotted identifier of the check and case, e.g. ``evasion.pgd.linf``.
        title: short headline.
        severity: :class:`Severity`.
        asset: what was examined (a path, a model name, a URL).
        summary: one sentence a person reads.
        metrics: named figures, units in the names (``robust_accuracy``, ``cpu_s``).
        evidence: supporting detail (paths, sample ids, opcode offsets).
        taxonomy: ids such as ``atlas:AML.T0043``, checked against the vendored taxonomy.
        remediation: one or two sentences on what to do.
    """

    id: str
    title: str
    severity: Severity
    asset: str
    summary: str
    metrics: Mapping[str, MetricValue] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    taxonomy: tuple[str, ...] = ()
    remediation: str = ""

    def __post_init__(self) -> None:
        if not self.id or " " in self.id:
            raise InputError(f"A finding id must be a non-empty dotted name without spaces. Got {self.id!r}.")
        if not isinstance(self.severity, Severity):
            raise InputError(f"The 'severity' of a finding must be a Severity. Got {self.severity!r}.")
        validate_ids(self.taxonomy)
        object.__setattr__(self, "metrics", {k: _clean_metric(v) for k, v in self.metrics.items()})
        object.__setattr__(self, "taxonomy", tuple(self.taxonomy))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity.label,
            "asset": self.asset,
            "summary": self.summary,
            "metrics": dict(self.metrics),
            "evidence": dict(self.evidence),
            "taxonomy": list(self.taxonomy),
            "remediation": self.remediation,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            id=str(data["id"]),
            title=str(data["title"]),
            severity=Severity.parse(str(data["severity"])),
            asset=str(data["asset"]),
            summary=str(data["summary"]),
            metrics=dict(data.get("metrics", {})),
            evidence=dict(data.get("evidence", {})),
            taxonomy=tuple(data.get("taxonomy", ())),
            remediation=str(data.get("remediation", "")),
        )
