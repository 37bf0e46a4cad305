"""Training-data defences: dataset scanners for poisoned records, and sanitising."""

from hoplon.defenses.data._features import penultimate_features
from hoplon.defenses.data.sanitize import RemovalRule, parse_removal, sanitize
from hoplon.defenses.data.scanner import METHODS, DatasetScanner, ScanResult

__all__ = [
    "METHODS",
    "DatasetScanner",
    "RemovalRule",
    "ScanResult",
    "parse_removal",
    "penultimate_features",
    "sanitize",
]
