"""Credentials in model output: known token formats, and key/value assignments of high-entropy strings."""

from __future__ import annotations

import math
import re
from collections import Counter

from hoplon.llm.output.types import OutputHit

__all__ = ["scan_secrets", "shannon_entropy"]

_TAGS = ("owasp-llm:LLM02", "atlas:AML.T0057", "cwe:CWE-798")
_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("secret.aws-access-key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("secret.github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b")),
    ("secret.openai-key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}")),
    ("secret.slack-token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("secret.google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("secret.stripe-key", re.compile(r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}")),
    ("secret.private-key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("secret.jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("secret.url-credentials", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:[^\s:/@]{3,}@[^\s/]+")),
)
_ASSIGNMENT = re.compile(
    r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|token)"
    r"\s*[:=]\s*[\"']?([^\s\"',;]{8,})"
)
_LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}")


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``."""
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _classes(text: str) -> int:
    return sum((any(c.islower() for c in text), any(c.isupper() for c in text), any(c.isdigit() for c in text)))


def scan_secrets(text: str) -> list[OutputHit]:
    """Find credentials in ``text``."""
    hits: list[OutputHit] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _FORMATS:
        for m in pattern.finditer(text):
            hits.append(OutputHit("secrets", kind, m.start(), m.end(), m.group(0), _TAGS))
            taken.append((m.start(), m.end()))
    for m in _ASSIGNMENT.finditer(text):
        value = m.group(1)
        if any(s <= m.start(1) < e for s, e in taken):
            continue
        if shannon_entropy(value) >= 3.0 and _classes(value) >= 2:
            hits.append(OutputHit("secrets", "secret.assignment", m.start(1), m.end(1), value, _TAGS, 0.8))
            taken.append((m.start(1), m.end(1)))
    for m in _LONG_TOKEN.finditer(text):
        value = m.group(0)
        if any(s <= m.start() < e for s, e in taken):
            continue
        if shannon_entropy(value) >= 4.2 and _classes(value) == 3:
            hits.append(OutputHit("secrets", "secret.high-entropy", m.start(), m.end(), value, _TAGS, 0.6))
    return sorted(hits, key=lambda h: h.start)
