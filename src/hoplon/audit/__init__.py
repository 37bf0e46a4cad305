"""Audits: plans of checks whose results become findings and a report (``hoplon.audit.robustness``)."""

from hoplon.audit.policy import Gate, GateResult, check_gates, parse_gate
from hoplon.audit.robustness import AUTO, DEFAULT_ATTACKS, auto_attacks, findings_from_rows, robustness

__all__ = [
    "AUTO",
    "DEFAULT_ATTACKS",
    "Gate",
    "GateResult",
    "auto_attacks",
    "check_gates",
    "findings_from_rows",
    "parse_gate",
    "robustness",
]
