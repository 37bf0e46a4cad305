"""A short Markdown summary of a report, for CI comments (pull-request notes, job summaries)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hoplon.report._robustness import gate_text, headline
from hoplon.report._text import NORM_LABELS, num, pct, plain, truncate

if TYPE_CHECKING:
    from hoplon.core.report import Report

__all__ = ["render_markdown"]

_SEVERITIES = ("critical", "high", "medium", "low", "info")


def _cell(value: Any, limit: int = 300) -> str:
    """Text safe inside a Markdown table cell: no raw HTML, no pipes, no line breaks."""
    text = truncate(plain(value), limit)
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "'")):
        text = text.replace(raw, safe)
    return " ".join(text.split())


def render_markdown(report: Report) -> str:
    """Return a short Markdown summary: the headline per ε, the gates and a findings table."""
    return render_markdown_dict(report.to_dict())


def render_markdown_dict(doc: Mapping[str, Any]) -> str:
    meta = doc.get("meta", {}) if isinstance(doc.get("meta"), Mapping) else {}
    kind = _cell(doc.get("kind", "")) or "hoplon"
    assets = ", ".join(_cell(a.get("name")) for a in doc.get("assets", []) or [] if isinstance(a, Mapping))
    lines = [f"### hoplon {kind} report" + (f": {assets}" if assets else ""), ""]
    lines.append(
        f"hoplon {_cell(meta.get('hoplon_version', ''))} · seed {_cell(meta.get('seed'))} · "
        f"{_cell(meta.get('created', ''))}"
    )
    lines.append("")
    name, rows = headline(doc)
    if rows:
        norm = NORM_LABELS.get(str(rows[0].get("norm", "")), _cell(rows[0].get("norm", "")))
        lines += [
            f"**Robust accuracy ({_cell(name)}, {norm})**, clean accuracy {pct(rows[0].get('clean_accuracy'))}",
            "",
            "| ε | robust accuracy | attack success rate |",
            "|---:|---:|---:|",
        ]
        lines += [
            f"| {num(r.get('eps'))} | {pct(r.get('robust_accuracy'))} | {pct(r.get('attack_success_rate'))} |"
            for r in rows
        ]
        lines.append("")
    gates = [g for g in doc.get("results", {}).get("gates", []) or [] if isinstance(g, Mapping)]
    if gates:
        failed = sum(1 for g in gates if not g.get("passed"))
        lines.append(f"**Gates:** {len(gates) - failed} passed, {failed} failed")
        lines += [f"- {'✅' if g.get('passed') else '❌'} {_cell(gate_text(g))}" for g in gates]
        lines.append("")
    findings = [f for f in doc.get("findings", []) or [] if isinstance(f, Mapping)]
    findings.sort(key=lambda f: _SEVERITIES.index(s) if (s := str(f.get("severity"))) in _SEVERITIES else 9)
    if findings:
        lines += [f"**Findings ({len(findings)})**", "", "| severity | id | summary |", "|---|---|---|"]
        lines += [
            f"| {_cell(f.get('severity'))} | `{_cell(f.get('id'), 80)}` | {_cell(f.get('summary'))} |" for f in findings
        ]
    else:
        lines.append("No findings.")
    return "\n".join(lines) + "\n"
