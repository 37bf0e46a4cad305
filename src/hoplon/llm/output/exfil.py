"""Exfiltration through rendering: markdown images and links that carry data to hosts off an allowlist,
HTML that loads by itself, and terminal escape sequences."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence

from hoplon.llm.output.types import OutputHit

__all__ = ["host_allowed", "scan_exfil"]

_TAGS = ("owasp-llm:LLM05", "owasp-llm:LLM02", "atlas:AML.T0057")
_MD_IMAGE = re.compile(r"!\[[^\]]{0,500}\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
_MD_LINK = re.compile(r"(?<!!)\[[^\]]{0,500}\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
_MD_REF_DEF = re.compile(r"^\s{0,3}\[([^\]]+)\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_MD_REF_IMAGE = re.compile(r"!\[[^\]]*\]\[([^\]]+)\]")
_HTML_AUTOLOAD = re.compile(
    r"<(?:img|iframe|script|embed|object|video|audio|source|link|meta)\b[^>]*?"
    r"(?:\b(?:src|href|data|poster|content)\s*=\s*[\"']?[^\s\"'>]+)[^>]*>|url\(\s*[\"']?https?://[^)]+\)",
    re.I,
)
_HTML_URL = re.compile(r"https?://[^\s\"'<>)]+", re.I)
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_BARE_URL = re.compile(r"https?://[^\s)\]>\"']+")


def host_allowed(url: str, allowed: Sequence[str]) -> bool:
    """Whether ``url``'s host is one of ``allowed`` or a subdomain of one (relative URLs are allowed)."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.scheme and not parsed.netloc:
        return True
    host = (parsed.hostname or "").lower().rstrip(".")
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in allowed)


def _carries_data(url: str) -> bool:
    parsed = urllib.parse.urlsplit(url)
    values = [v for _, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)]
    if any(len(v) >= 12 for v in values) or len(parsed.fragment) >= 16:
        return True
    segments = [s for s in parsed.path.split("/") if s]
    return any(len(s) >= 32 for s in segments)


def scan_exfil(text: str, *, allowed_domains: Sequence[str] = ()) -> list[OutputHit]:
    """Find rendering constructs in ``text`` that would send data to a host off ``allowed_domains``."""
    hits: list[OutputHit] = []
    for m in _MD_IMAGE.finditer(text):
        url = m.group(1)
        if not host_allowed(url, allowed_domains):
            hits.append(OutputHit("exfil", "exfil.markdown-image", m.start(), m.end(), m.group(0), _TAGS))
    refs = {k.lower(): v for k, v in _MD_REF_DEF.findall(text)}
    for m in _MD_REF_IMAGE.finditer(text):
        url = refs.get(m.group(1).lower(), "")
        if url and not host_allowed(url, allowed_domains):
            hits.append(OutputHit("exfil", "exfil.markdown-image", m.start(), m.end(), m.group(0), _TAGS))
    for m in _MD_LINK.finditer(text):
        url = m.group(1)
        if not host_allowed(url, allowed_domains) and _carries_data(url):
            hits.append(OutputHit("exfil", "exfil.markdown-link", m.start(), m.end(), m.group(0), _TAGS, 0.7))
    for m in _HTML_AUTOLOAD.finditer(text):
        urls = _HTML_URL.findall(m.group(0))
        if any(not host_allowed(u, allowed_domains) for u in urls):
            hits.append(OutputHit("exfil", "exfil.html-autoload", m.start(), m.end(), m.group(0)[:300], _TAGS))
    for m in _ANSI.finditer(text):
        hits.append(OutputHit("exfil", "output.ansi-escape", m.start(), m.end(), repr(m.group(0)), _TAGS, 0.8))
    return sorted(hits, key=lambda h: h.start)
