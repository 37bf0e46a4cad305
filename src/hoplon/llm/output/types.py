"""The record every output scanner returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Category", "OutputHit"]

Category = Literal["secrets", "pii", "leakage", "exfil"]


@dataclass(frozen=True, slots=True)
class OutputHit:
    """One finding in a model's output. ``start``/``end`` index the scanned text (``-1`` when the hit is about
    the whole text, e.g. system-prompt containment); ``kind`` is the detector id, e.g. ``secret.aws-access-key``."""

    category: Category
    kind: str
    start: int
    end: int
    text: str
    tags: tuple[str, ...]
    score: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        shown = self.text if self.category in ("exfil", "leakage") else _mask(self.text)
        return {
            "category": self.category,
            "rule": self.kind,
            "start": self.start,
            "end": self.end,
            "text": shown,
            "tags": list(self.tags),
            "score": round(self.score, 4),
        }


def _mask(value: str) -> str:
    # A verdict must not re-leak the secret it found: keep a short prefix and the length only.
    if len(value) <= 6:
        return "*" * len(value)
    return value[:4] + "…" + f"({len(value)} chars)"
