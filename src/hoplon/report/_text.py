"""Escaping and number formatting shared by the renderers.

Every string that comes from a report can carry attacker-influenced text (file names, labels, feature
names), so the HTML and SVG renderers pass all of it through :func:`esc`.
"""

from __future__ import annotations

import html
import math
from typing import Any, TypeGuard

__all__ = ["DASH", "NORM_LABELS", "esc", "is_number", "num", "pct", "plain", "truncate"]

DASH = "—"
NORM_LABELS = {"linf": "L∞", "l2": "L2", "l1": "L1", "l0": "L0"}


def esc(value: object) -> str:
    """HTML-escape ``value`` (quotes too, so the result is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def pct(value: Any, digits: int = 1) -> str:
    """``0.8844`` → ``'88.4%'``; anything that is not a finite number → an em dash."""
    return f"{100 * float(value):.{digits}f}%" if is_number(value) else DASH


def num(value: Any, digits: int = 4) -> str:
    """A compact number (``digits`` significant figures), a plain rendering of other values."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return DASH
        return f"{value:.{digits}g}"
    return plain(value)


def plain(value: Any) -> str:
    """A short, unescaped text form of a JSON value (lists joined with commas)."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value) if value else DASH
    if isinstance(value, dict):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items())
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return num(value)
    return str(value)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"
