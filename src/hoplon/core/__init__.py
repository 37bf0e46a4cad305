"""hoplon's foundation types: findings, severities, reports, errors, the vendored taxonomy, and RFC 9162
Merkle hashing (``hoplon.core.merkle``, shared by the ledger and dataset fingerprints)."""

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
from hoplon.core.report import REPORT_SCHEMA, Asset, Report, json_safe, report_schema
from hoplon.core.taxonomy import describe, load_taxonomy, validate_ids

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
