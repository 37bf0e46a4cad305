"""Personal data in model output (e-mail, phone, payment card, IBAN, IP address, US SSN), with validators, and
reversible pseudonymisation: ``<EMAIL_1>`` in the text, the original kept in the :class:`Pseudonymizer`."""

from __future__ import annotations

import ipaddress
import re

from hoplon.llm.output.types import OutputHit

__all__ = ["Pseudonymizer", "iban_valid", "luhn_valid", "scan_pii"]

_TAGS = ("owasp-llm:LLM02", "atlas:AML.T0057", "cwe:CWE-359")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){2,4}(?![\w-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}(?![\w:])")
_SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN (spaces ignored)."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def scan_pii(text: str) -> list[OutputHit]:
    """Find personal data in ``text``; overlapping candidates keep the first (most specific) kind."""
    hits: list[OutputHit] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, start: int, end: int) -> None:
        if any(s < end and start < e for s, e in taken):
            return
        hits.append(OutputHit("pii", kind, start, end, text[start:end], _TAGS))
        taken.append((start, end))

    for m in _EMAIL.finditer(text):
        add("pii.email", m.start(), m.end())
    for m in _IBAN.finditer(text):
        if iban_valid(m.group(0)):
            add("pii.iban", m.start(), m.end())
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            add("pii.payment-card", m.start(), m.end())
    for m in _SSN.finditer(text):
        add("pii.us-ssn", m.start(), m.end())
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group(0))
        except ValueError:
            continue
        add("pii.ip-address", m.start(), m.end())
    for m in _IPV6.finditer(text):
        try:
            ipaddress.IPv6Address(m.group(0))
        except ValueError:
            continue
        add("pii.ip-address", m.start(), m.end())
    for m in _PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 9 <= len(digits) <= 15:
            add("pii.phone", m.start(), m.end())
    return sorted(hits, key=lambda h: h.start)


class Pseudonymizer:
    """Replaces values with stable placeholders (``<EMAIL_1>``) and restores them later.

    One instance per conversation: the same value always gets the same placeholder, so a model can still
    refer to "<EMAIL_1>" consistently, and :meth:`restore` puts the originals back for the user.
    """

    def __init__(self) -> None:
        self._forward: dict[str, str] = {}
        self._backward: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, kind: str, value: str) -> str:
        existing = self._forward.get(value)
        if existing is not None:
            return existing
        label = kind.rsplit(".", 1)[-1].replace("-", "_").upper()
        self._counts[label] = self._counts.get(label, 0) + 1
        token = f"<{label}_{self._counts[label]}>"
        self._forward[value] = token
        self._backward[token] = value
        return token

    def apply(self, text: str, hits: list[OutputHit]) -> str:
        """Replace each hit (non-overlapping, positions in ``text``) by its placeholder."""
        out: list[str] = []
        pos = 0
        for hit in sorted(hits, key=lambda h: h.start):
            if hit.start < pos or hit.start < 0:
                continue
            out.append(text[pos : hit.start])
            out.append(self.placeholder(hit.kind, hit.text))
            pos = hit.end
        out.append(text[pos:])
        return "".join(out)

    def restore(self, text: str) -> str:
        """Put the original values back in place of their placeholders."""
        if not self._backward:
            return text
        pattern = re.compile("|".join(re.escape(t) for t in sorted(self._backward, key=len, reverse=True)))
        return pattern.sub(lambda m: self._backward[m.group(0)], text)

    @property
    def mapping(self) -> dict[str, str]:
        return dict(self._backward)
