"""Render a :class:`~hoplon.core.report.Report` as one self-contained HTML page.

The page needs nothing but a browser: inline CSS, inline SVG charts, PNG images as data URIs, no script and
no external URL. It is rendered from :meth:`Report.to_dict` (JSON is the truth), so a saved ``report.json``
re-renders to the same page. Every string from the report is escaped: file names, labels and feature names
can be chosen by an attacker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hoplon.core.errors import InputError
from hoplon.core.taxonomy import describe
from hoplon.report._certify import CERTIFIED_KEYS, certified_rows, certified_section
from hoplon.report._css import CSS
from hoplon.report._privacy import PRIVACY_KEYS, has_privacy, privacy_sections
from hoplon.report._robustness import (
    curve_section,
    examples_section,
    headline_section,
    robustness_rows,
    table_section,
)
from hoplon.report._text import esc, is_number, num, pct, plain, truncate

if TYPE_CHECKING:
    from hoplon.core.report import Report

__all__ = ["render_html"]

SEVERITIES = ("critical", "high", "medium", "low", "info")
_ROBUSTNESS_KEYS = frozenset({"robustness", "gates", "headline"})
_MAX_ROWS = 500
_MAX_PRE = 20_000


def render_html(report: Report) -> str:
    """Return the report as a self-contained HTML document (a ``str`` ending in a newline)."""
    return render_html_dict(report.to_dict())


def render_html_dict(doc: Mapping[str, Any]) -> str:
    """Render the JSON form of a report (``Report.to_dict()``)."""
    kind = plain(doc.get("kind", "")) or "hoplon"
    has_rows = bool(robustness_rows(doc))
    skip: frozenset[str] = frozenset()
    parts = [
        _header(doc),
        _run_section(doc),
        _assets_section(doc),
    ]
    if has_rows:
        parts += [headline_section(doc), curve_section(doc), table_section(doc)]
        skip |= _ROBUSTNESS_KEYS
    if has_privacy(doc):
        parts.append(privacy_sections(doc))
        skip |= PRIVACY_KEYS
    if certified_rows(doc):
        parts.append(certified_section(doc))
        skip |= CERTIFIED_KEYS
    parts.append(examples_section(doc))
    parts.append(_findings_section(doc))
    parts.append(_results_section(doc, skip=skip))
    version = esc(plain(doc.get("meta", {}).get("hoplon_version", "")))
    schema = esc(plain(doc.get("schema", "")))
    body = "\n".join(p for p in parts if p)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">"
        f"<title>hoplon {esc(kind)} report</title><style>{CSS}</style></head>\n"
        f"<body><main>\n{body}\n"
        f"<footer>Rendered by hoplon {version} from the report's JSON ({schema}).</footer>\n"
        "</main></body></html>\n"
    )


def _status(doc: Mapping[str, Any]) -> str:
    gates = [g for g in doc.get("results", {}).get("gates", []) or [] if isinstance(g, Mapping)]
    failed = sum(1 for g in gates if not g.get("passed"))
    findings = _findings(doc)
    worst = next((s for s in SEVERITIES if any(f["severity"] == s for f in findings)), None)
    pills = []
    if gates:
        pills.append(
            f'<span class="pill bad">policy failed: {failed}/{len(gates)} gates</span>'
            if failed
            else f'<span class="pill ok">policy passed ({len(gates)} gates)</span>'
        )
    if worst is not None:
        pills.append(f'<span class="badge {worst}" style="padding:5px 12px">max severity {worst}</span>')
    else:
        pills.append('<span class="pill neutral">no findings</span>')
    return f'<div class="counts" style="align-items:center">{"".join(pills)}</div>'


def _header(doc: Mapping[str, Any]) -> str:
    kind = plain(doc.get("kind", "")) or "unknown"
    meta = doc.get("meta", {})
    names = ", ".join(plain(a.get("name")) for a in _assets(doc))
    subtitle = f"{names} · " if names else ""
    return (
        '<header class="top"><div><div class="brand">hoplon</div>'
        f"<h1>{esc(kind.capitalize())} report</h1>"
        f'<div class="muted">{esc(truncate(subtitle, 200))}{esc(plain(meta.get("created", "")))}</div></div>'
        f"{_status(doc)}</header>"
    )


def _chips(mapping: Any) -> str:
    if not isinstance(mapping, Mapping) or not mapping:
        return '<span class="muted">—</span>'
    return (
        '<div class="chips">'
        + "".join(
            f'<span class="chip"><b>{esc(k)}</b> {esc(truncate(plain(v), 120))}</span>' for k, v in mapping.items()
        )
        + "</div>"
    )


def _run_section(doc: Mapping[str, Any]) -> str:
    meta = doc.get("meta", {})
    if not isinstance(meta, Mapping):
        meta = {}
    rows = [
        ("hoplon", esc(plain(meta.get("hoplon_version", "")))),
        ("command", f"<code>{esc(plain(meta.get('command', '')))}</code>"),
        ("seed", esc(plain(meta.get("seed")))),
        ("created", esc(plain(meta.get("created", "")))),
        ("environment", _chips(meta.get("environment"))),
        ("configuration", _chips(meta.get("config"))),
    ]
    items = "".join(f"<dt>{esc(label)}</dt><dd>{value}</dd>" for label, value in rows)
    return f'<section class="card" id="run"><h2>Run</h2><dl class="meta">{items}</dl></section>'


def _assets(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    assets = doc.get("assets", [])
    return [a for a in assets if isinstance(a, Mapping)] if isinstance(assets, list) else []


def _assets_section(doc: Mapping[str, Any]) -> str:
    assets = _assets(doc)
    if not assets:
        return ""
    rows = "".join(
        f"<tr><td>{esc(plain(a.get('kind', '')))}</td><td><b>{esc(plain(a.get('name', '')))}</b></td>"
        f'<td class="mono" style="overflow-wrap:anywhere">{esc(plain(a.get("digest")))}</td>'
        f"<td>{_chips(a.get('details'))}</td></tr>"
        for a in assets
    )
    return (
        '<section class="card" id="assets"><h2>Assets</h2><div class="wrap"><table>'
        '<thead><tr><th>kind</th><th>name</th><th style="width:34%">digest</th><th>details</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def _findings(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = doc.get("findings", [])
    found = [f for f in raw if isinstance(f, Mapping)] if isinstance(raw, list) else []
    normal = []
    for f in found:
        severity = str(f.get("severity", "info")).lower()
        normal.append({**f, "severity": severity if severity in SEVERITIES else "info"})
    return sorted(normal, key=lambda f: SEVERITIES.index(f["severity"]))


def _taxonomy(tags: Any) -> str:
    if not isinstance(tags, list) or not tags:
        return ""
    items = []
    for tag in tags:
        try:
            name = describe(str(tag))
        except InputError:
            name = "not in the vendored taxonomy"
        items.append(f"<li><code>{esc(tag)}</code> {esc(name)}</li>")
    return f'<ul class="tax">{"".join(items)}</ul>'


def _metric(key: str, value: Any) -> str:
    is_share = ("accuracy" in key or "rate" in key) and is_number(value) and 0 <= float(value) <= 1
    shown = pct(value) if is_share else num(value)
    return f'<span class="chip"><b>{esc(key)}</b> {esc(truncate(shown, 80))}</span>'


def _finding(f: Mapping[str, Any]) -> str:
    sev = f["severity"]
    metrics = f.get("metrics")
    metric_html = (
        '<div class="metrics">' + "".join(_metric(str(k), v) for k, v in metrics.items()) + "</div>"
        if isinstance(metrics, Mapping) and metrics
        else ""
    )
    evidence = f.get("evidence")
    evidence_html = (
        '<div class="metrics"><span class="muted small">evidence</span>'
        + "".join(
            f'<span class="chip"><b>{esc(k)}</b> {esc(truncate(plain(v), 160))}</span>' for k, v in evidence.items()
        )
        + "</div>"
        if isinstance(evidence, Mapping) and evidence
        else ""
    )
    remediation = plain(f.get("remediation", ""))
    remedy = f'<div class="remedy"><b>Remediation.</b> {esc(remediation)}</div>' if remediation else ""
    return (
        f'<article class="finding sev-{sev}"><div class="head"><span class="badge {sev}">{sev}</span>'
        f'<h3>{esc(plain(f.get("title", "")))}</h3><code class="id">{esc(plain(f.get("id", "")))}</code>'
        f'<span class="muted small">on {esc(plain(f.get("asset", "")))}</span></div>'
        f"<p>{esc(plain(f.get('summary', '')))}</p>{metric_html}{evidence_html}{remedy}"
        f"{_taxonomy(f.get('taxonomy'))}</article>"
    )


def _findings_section(doc: Mapping[str, Any]) -> str:
    findings = _findings(doc)
    counts = "".join(
        f'<span class="badge {s}">{n} {s}</span>'
        for s in SEVERITIES
        if (n := sum(1 for f in findings if f["severity"] == s))
    )
    body = "".join(_finding(f) for f in findings) or '<p class="muted">No findings.</p>'
    return (
        f'<section class="card" id="findings"><div class="head" style="display:flex;gap:10px;'
        f'align-items:baseline"><h2>Findings ({len(findings)})</h2><div class="counts">{counts}</div></div>'
        f"{body}</section>"
    )


def _is_flat(value: Any) -> bool:
    if isinstance(value, list):
        return all(v is None or isinstance(v, str | int | float | bool) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def _generic_cell(value: Any) -> str:
    """A table cell for any JSON value: flat values as text, nested ones summarised."""
    if _is_flat(value):
        return truncate(num(value), 200)
    if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        return f"{len(value)} {'entry' if len(value) == 1 else 'entries'}"
    return truncate(json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": ")), 200)


def _generic_table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(dict.fromkeys(str(k) for r in rows for k in r))
    numeric = {c for c in columns if all(is_number(r.get(c)) or r.get(c) is None for r in rows)}
    right = ' class="n"'
    head = "".join(f"<th{right if c in numeric else ''}>{esc(c)}</th>" for c in columns)
    body = []
    for r in rows[:_MAX_ROWS]:
        cells = []
        for c in columns:
            value = r.get(c)
            cls = ' class="n"' if is_number(value) else ""
            cells.append(f"<td{cls}>{esc(_generic_cell(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = (
        f'<p class="muted small">{len(rows) - _MAX_ROWS} more rows in report.json.</p>' if len(rows) > _MAX_ROWS else ""
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="wrap generic">{table}</div>{more}'


def _generic_block(key: str, value: Any) -> str:
    title = f'<h3 style="margin:14px 0 8px">{esc(key.replace("_", " "))}</h3>'
    if isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
        return title + _generic_table(value)
    if isinstance(value, Mapping) and value and all(_is_flat(v) for v in value.values()):
        return title + _generic_table([{"name": k, "value": v} for k, v in value.items()])
    if _is_flat(value):
        return title + f"<p>{esc(truncate(plain(value), 2000))}</p>"
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return title + f"<pre>{esc(truncate(text, _MAX_PRE))}</pre>"


def _results_section(doc: Mapping[str, Any], *, skip: frozenset[str]) -> str:
    results = doc.get("results", {})
    if not isinstance(results, Mapping):
        return ""
    blocks = [_generic_block(str(k), v) for k, v in results.items() if str(k) not in skip]
    if not blocks:
        return ""
    return f'<section class="card" id="results"><h2>Results</h2>{"".join(blocks)}</section>'
