"""Red-team runner for LLM endpoints: probes as data, converters, mock targets, judges, Wilson intervals."""

from hoplon.llm.redteam.judges import is_refusal, judge, refusal_judge_quality
from hoplon.llm.redteam.probes import BUILTIN_SUITES, Probe, load_suite
from hoplon.llm.redteam.runner import (
    BASELINE_FORMAT,
    Attempt,
    ProbeResult,
    RunResult,
    compare_baseline,
    run_suite,
    to_report,
)
from hoplon.llm.redteam.targets import Reply, Target, make_target

__all__ = [
    "BASELINE_FORMAT",
    "BUILTIN_SUITES",
    "Attempt",
    "Probe",
    "ProbeResult",
    "Reply",
    "RunResult",
    "Target",
    "compare_baseline",
    "is_refusal",
    "judge",
    "load_suite",
    "make_target",
    "refusal_judge_quality",
    "run_suite",
    "to_report",
]
