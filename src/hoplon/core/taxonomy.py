"""Vendored taxonomy data: MITRE ATLAS, OWASP ML Top 10 2023, OWASP LLM Top 10 2025, NIST AI RMF, CWE.

Finding taxonomy ids are written ``<scheme>:<id>``, e.g. ``atlas:AML.T0043``, ``owasp-ml:ML01``,
``owasp-llm:LLM01``, ``nist-ai-rmf:MEASURE-2.7``, ``cwe:CWE-502``. :func:`validate_ids` checks them against
the vendored data so a typo can never reach a report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from hoplon.core.errors import InputError

__all__ = ["SCHEMES", "describe", "load_taxonomy", "validate_ids"]

SCHEMES: tuple[str, ...] = ("atlas", "owasp-ml", "owasp-llm", "nist-ai-rmf", "cwe")


@cache
def load_taxonomy() -> Mapping[str, Mapping[str, str]]:
    """Return ``{scheme: {id: name}}`` from the vendored ``taxonomy.json``."""
    text = (Path(__file__).parent / "data" / "taxonomy.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    return {scheme: dict(raw[scheme]) for scheme in SCHEMES}


def _split(tag: str) -> tuple[str, str]:
    scheme, sep, ident = tag.partition(":")
    if not sep or not ident:
        raise InputError(f"A taxonomy id must be written 'scheme:id' (e.g. 'atlas:AML.T0043'). Got {tag!r}.")
    return scheme, ident


def describe(tag: str) -> str:
    """Return the published name of a taxonomy id, e.g. ``'Craft Adversarial Data'``."""
    scheme, ident = _split(tag)
    table = load_taxonomy().get(scheme)
    if table is None:
        raise InputError(f"Unknown taxonomy scheme {scheme!r} in {tag!r}; known: {', '.join(SCHEMES)}.")
    try:
        return table[ident]
    except KeyError:
        raise InputError(f"Unknown {scheme} id {ident!r} in {tag!r}.") from None


def validate_ids(tags: Iterable[str]) -> None:
    """Raise :class:`InputError` naming the first taxonomy id that is not in the vendored data."""
    for tag in tags:
        describe(tag)
