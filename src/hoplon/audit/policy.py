"""Policy gates: ``robust_accuracy=0.6`` style floors checked against report rows."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hoplon.core.errors import InputError

__all__ = ["Gate", "GateResult", "check_gates", "parse_gate"]

GATED_METRICS = ("robust_accuracy", "clean_accuracy")


@dataclass(frozen=True, slots=True)
class Gate:
    """A floor on a metric of the worst-case rows: at one ε (``eps``), or at every ε when ``eps`` is None."""

    metric: str
    threshold: float
    eps: float | None = None

    def describe(self) -> str:
        at = f" at eps={self.eps:g}" if self.eps is not None else " at every eps"
        return f"{self.metric} >= {self.threshold:g}{at}"


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: Gate
    value: float | None
    eps: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.gate.metric,
            "threshold": self.gate.threshold,
            "eps": self.eps,
            "value": self.value,
            "passed": self.passed,
        }


def parse_gate(text: str) -> Gate:
    """Parse ``robust_accuracy=0.6`` or ``robust_accuracy@0.1=0.6``."""
    name, sep, value = text.partition("=")
    if not sep:
        raise InputError(f"A gate must be written METRIC=VALUE or METRIC@EPS=VALUE. Got {text!r}.")
    metric, _, eps_text = name.strip().partition("@")
    if metric not in GATED_METRICS:
        raise InputError(f"Unknown gate metric {metric!r}; use one of: {', '.join(GATED_METRICS)}.")
    try:
        threshold = float(value)
        eps = float(eps_text) if eps_text else None
    except ValueError:
        raise InputError(f"The gate {text!r} has a value that is not a number.") from None
    if not 0 <= threshold <= 1:
        raise InputError(f"The gate threshold for {metric} must be in [0, 1]. Got {threshold}.")
    return Gate(metric, threshold, eps)


def check_gates(gates: Iterable[Gate], rows: Sequence[Mapping[str, Any]]) -> list[GateResult]:
    """Check each gate against the headline rows (one per ε). A gate at an ε with no row fails."""
    results = []
    for gate in gates:
        chosen = [r for r in rows if gate.eps is None or math.isclose(float(r["eps"]), gate.eps, rel_tol=1e-9)]
        if not chosen:
            results.append(GateResult(gate, None, gate.eps or math.nan, False))
            continue
        for row in chosen:
            value = row.get(gate.metric)
            passed = value is not None and float(value) >= gate.threshold
            results.append(GateResult(gate, None if value is None else float(value), float(row["eps"]), passed))
    return results
