"""hoplon's foundation types: findings, severities, reports, errors, the vendored taxonomy, and RFC 9162
Merkle hashing (``hoplon.core.merkle``, shared by the ledger and dataset fingerprints)."""

from typing import TYPE_CHECKING

from hoplon.core.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_POLICY,
    BudgetExceeded,
    HoplonError,
    InputError,
    ModelLoadError,
    PolicyViolation,
    TrustRequiredError,
    UnsafeArtifactError,
    UnsupportedFormatError,
)
from hoplon.core.finding import Finding, MetricValue, Severity
from hoplon.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from hoplon.core.report import REPORT_SCHEMA, Asset, Report, json_safe, report_schema
    from hoplon.core.taxonomy import describe, load_taxonomy, validate_ids

# Reports pull in importlib.resources, tempfile and datetime: loaded on first use, so that ``hoplon scan``
# (which needs only errors and findings) starts fast.
_LAZY = {
    "REPORT_SCHEMA": "hoplon.core.report",
    "Asset": "hoplon.core.report",
    "Report": "hoplon.core.report",
    "json_safe": "hoplon.core.report",
    "report_schema": "hoplon.core.report",
    "describe": "hoplon.core.taxonomy",
    "load_taxonomy": "hoplon.core.taxonomy",
    "validate_ids": "hoplon.core.taxonomy",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_POLICY",
    "REPORT_SCHEMA",
    "Asset",
    "BudgetExceeded",
    "Finding",
    "HoplonError",
    "InputError",
    "MetricValue",
    "ModelLoadError",
    "PolicyViolation",
    "Report",
    "Severity",
    "TrustRequiredError",
    "UnsafeArtifactError",
    "UnsupportedFormatError",
    "describe",
    "json_safe",
    "load_taxonomy",
    "report_schema",
    "validate_ids",
]
