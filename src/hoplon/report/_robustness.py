"""The robustness sections of the HTML report: headline, ε curve, per-attack table, examples.

Everything reads the JSON form of a report (:meth:`Report.to_dict`) and tolerates missing or odd fields:
a report from an older or newer hoplon still renders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hoplon.report._text import DASH, NORM_LABELS, esc, is_number, num, pct, plain
from hoplon.report.png import image_pixels, perturbation_pixels, png_data_uri
from hoplon.report.svg import Bar, Series, bar_chart, line_chart

__all__ = [
    "curve_section",
    "examples_section",
    "gate_text",
    "headline",
    "headline_section",
    "robustness_rows",
    "table_section",
]

WORST = "worst-case"
MAX_EXAMPLES = 12
Row = Mapping[str, Any]


def robustness_rows(doc: Mapping[str, Any]) -> list[Row]:
    rows = doc.get("results", {}).get("robustness")
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, Mapping) and "attack" in r and is_number(r.get("eps"))]


def _f(row: Row, key: str) -> float:
    value = row.get(key)
    return float(value) if is_number(value) else math.nan


def headline(doc: Mapping[str, Any]) -> tuple[str, list[Row]]:
    """The rows of the headline attack (``results.headline``, else ``worst-case``, else the per-ε minimum)."""
    rows = robustness_rows(doc)
    attacks = list(dict.fromkeys(str(r["attack"]) for r in rows))
    named = doc.get("results", {}).get("headline")
    for name in (named, WORST):
        if isinstance(name, str) and name in attacks:
            return name, sorted((r for r in rows if r["attack"] == name), key=lambda r: _f(r, "eps"))
    if len(attacks) == 1:
        return attacks[0], sorted(rows, key=lambda r: _f(r, "eps"))
    by_eps: dict[float, Row] = {}
    for r in rows:
        eps = _f(r, "eps")
        best = by_eps.get(eps)
        if best is None or _f(r, "robust_accuracy") < _f(best, "robust_accuracy"):
            by_eps[eps] = r
    return "lowest over attacks", [by_eps[e] for e in sorted(by_eps)]


def _norm(doc: Mapping[str, Any], rows: Sequence[Row]) -> str:
    norm = rows[0].get("norm") if rows else doc.get("meta", {}).get("config", {}).get("norm")
    return str(norm) if norm else ""


def gate_text(gate: Mapping[str, Any]) -> str:
    """``robust_accuracy ≥ 50% at ε=0.1: 50.4%`` (plain text, escape before use in HTML)."""
    metric = str(gate.get("metric", "metric"))
    threshold, value, eps = gate.get("threshold"), gate.get("value"), gate.get("eps")
    is_rate = "accuracy" in metric or "rate" in metric
    at = f" at ε={num(eps)}" if eps is not None else ""
    if is_rate:
        floor = pct(threshold, 0) if is_number(threshold) and float(threshold) * 100 % 1 == 0 else pct(threshold)
        return f"{metric} ≥ {floor}{at}: {pct(value)}"
    return f"{metric} ≥ {num(threshold)}{at}: {num(value)}"


def headline_section(doc: Mapping[str, Any]) -> str:
    name, rows = headline(doc)
    if not rows:
        return ""
    norm = NORM_LABELS.get(_norm(doc, rows), _norm(doc, rows))
    clean = rows[0].get("clean_accuracy")
    tiles = [
        f'<div class="tile clean"><div class="label">clean accuracy</div><div class="value">{pct(clean)}</div></div>'
    ]
    for r in rows:
        value = r.get("robust_accuracy")
        low = " low" if is_number(value) and is_number(clean) and float(value) < 0.5 * float(clean) else ""
        tiles.append(
            f'<div class="tile{low}"><div class="label">robust accuracy, ε = {esc(num(r["eps"]))}</div>'
            f'<div class="value">{pct(value)}</div></div>'
        )
    gates = [g for g in doc.get("results", {}).get("gates", []) or [] if isinstance(g, Mapping)]
    gate_html = ""
    if gates:
        failed = sum(1 for g in gates if not g.get("passed"))
        summary = (
            f'<span class="pill bad">{failed} of {len(gates)} gates failed</span>'
            if failed
            else f'<span class="pill ok">all {len(gates)} gates passed</span>'
        )
        items = "".join(
            f'<span class="gate {"ok" if g.get("passed") else "bad"}">{"✓" if g.get("passed") else "✗"} '
            f"{esc(gate_text(g))}</span>"
            for g in gates
        )
        gate_html = f'<h3 style="margin:4px 0 8px">Policy gates {summary}</h3><div class="gates">{items}</div>'
    return (
        '<section class="card" id="headline"><h2>Headline</h2>'
        '<p class="muted small" style="margin-top:-6px">'
        f"Robust accuracy of <b>{esc(name)}</b> at each {esc(norm)} budget ε: the share of all samples"
        " still classified correctly under attack (lower is worse).</p>"
        f'<div class="headline">{"".join(tiles)}</div>{gate_html}</section>'
    )


def curve_section(doc: Mapping[str, Any]) -> str:
    rows = robustness_rows(doc)
    if not rows:
        return ""
    head, _ = headline(doc)
    series = []
    for attack in dict.fromkeys(str(r["attack"]) for r in rows):
        mine = [r for r in rows if str(r["attack"]) == attack]
        points = [(_f(r, "eps"), _f(r, "robust_accuracy")) for r in mine]
        clean = _f(mine[0], "clean_accuracy")
        if math.isfinite(clean) and all(x > 0 for x, _ in points):
            points.append((0.0, clean))  # at ε = 0 the robust accuracy is the clean accuracy
        series.append(
            Series(
                name=attack,
                points=tuple(p for p in points if math.isfinite(p[1])),
                emphasis=attack == head,
                dashed=any(bool(r.get("partial")) for r in mine),
            )
        )
    norm = _norm(doc, rows)
    thresholds = [
        (float(g["threshold"]), f"gate {pct(g['threshold'], 0)}")
        for g in doc.get("results", {}).get("gates", []) or []
        if isinstance(g, Mapping) and g.get("metric") == "robust_accuracy" and is_number(g.get("threshold"))
    ]
    svg = line_chart(
        series,
        x_label=f"perturbation budget ε ({NORM_LABELS.get(norm, norm) or 'norm'} norm)",
        y_label="robust accuracy",
        thresholds=list(dict.fromkeys(thresholds)),
        title="Robust accuracy against ε",
    )
    return (
        '<section class="card" id="curve"><h2>Robustness curve</h2>'
        f"<figure>{svg}<figcaption>Robust accuracy against the perturbation budget, one line per attack; "
        f"<b>{esc(head)}</b> in bold red, drawn over any attack that matches it. "
        "ε = 0 is the clean accuracy; dashed lines are partial runs.</figcaption>"
        "</figure></section>"
    )


_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("eps", "ε", "num"),
    ("n", "n", "int"),
    ("clean_accuracy", "clean acc", "pct"),
    ("robust_accuracy", "robust acc", "pct"),
    ("attack_success_rate", "ASR", "pct"),
    ("median_linf", "median L∞", "num"),
    ("median_l2", "median L2", "num"),
    ("queries_per_sample", "queries / sample", "q"),
    ("cpu_s", "CPU s", "s"),
)


def _cell(value: Any, how: str) -> str:
    if how == "pct":
        return pct(value)
    if how == "q":
        return f"{float(value):.1f}" if is_number(value) else DASH
    if how == "s":
        return f"{float(value):.2f}" if is_number(value) else DASH
    return num(value)


def table_section(doc: Mapping[str, Any]) -> str:
    rows = robustness_rows(doc)
    if not rows:
        return ""
    head, _ = headline(doc)
    attacks = list(dict.fromkeys(str(r["attack"]) for r in rows))
    attacks.sort(key=lambda a: a == head)  # the headline attack last, right above the reader's eye line
    body = []
    for attack in attacks:
        mine = sorted((r for r in rows if str(r["attack"]) == attack), key=lambda r: _f(r, "eps"))
        for i, r in enumerate(mine):
            classes = [c for c in ("emph" if attack == head else "", "group" if i == 0 else "") if c]
            partial = '<span class="tag" title="the run stopped early">partial</span>' if r.get("partial") else ""
            components = r.get("components")
            title = f' title="{esc(plain(components))}"' if isinstance(components, list) and components else ""
            cells = "".join(f'<td class="n">{esc(_cell(r.get(key), how))}</td>' for key, _, how in _COLUMNS)
            body.append(f'<tr class="{" ".join(classes)}"><td{title}>{esc(attack)}{partial}</td>{cells}</tr>')
    header = "<th>attack</th>" + "".join(f'<th class="n">{esc(label)}</th>' for _, label, _ in _COLUMNS)
    return (
        '<section class="card" id="attacks"><h2>Per-attack results</h2><div class="wrap"><table>'
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        '<p class="muted small">ASR: attack success rate over the samples classified correctly before the '
        "attack. Median norms are over successful adversarial examples. CPU s: processor time of the attack."
        "</p></section>"
    )


def _bounds(figure: Mapping[str, Any]) -> tuple[float, float]:
    bounds = figure.get("bounds")
    if isinstance(bounds, list) and len(bounds) == 2 and all(is_number(b) for b in bounds):
        lo, hi = float(bounds[0]), float(bounds[1])
        if hi > lo:
            return lo, hi
    return 0.0, 1.0


def _label(value: Any, names: Any) -> str:
    if isinstance(names, list) and isinstance(value, int) and 0 <= value < len(names):
        return f"{plain(names[value])} ({value})"
    return plain(value)


def _image_cell(item: Mapping[str, Any], key: str, *, lo: float, hi: float, scale: float, alt: str) -> str:
    try:
        if key == "perturbation":
            pixels = perturbation_pixels(item[key], scale=scale)
        else:
            pixels = image_pixels(item[key], lower=lo, upper=hi)
    except (KeyError, ValueError, TypeError, IndexError):
        return f'<div><div class="muted" style="width:92px;height:92px">n/a</div>{esc(alt)}</div>'
    return f'<div><img src="{png_data_uri(pixels)}" alt="{esc(alt)}">{esc(alt)}</div>'


def _max_abs(values: Any) -> float:
    if isinstance(values, list):
        return max((_max_abs(v) for v in values), default=0.0)
    return abs(float(values)) if is_number(values) else 0.0


def examples_section(doc: Mapping[str, Any]) -> str:
    figure = doc.get("figures", {}).get("examples")
    if not isinstance(figure, Mapping):
        return ""
    attack, eps = esc(plain(figure.get("attack", "?"))), esc(num(figure.get("eps")))
    norm = esc(NORM_LABELS.get(str(figure.get("norm", "")), plain(figure.get("norm", ""))))
    intro = f"Examples from <b>{attack}</b> at {norm} ε = {eps}"
    if is_number(figure.get("n_fooled")):
        intro += f" ({int(figure['n_fooled'])} samples fooled)"
    if isinstance(figure.get("features"), list):
        return _feature_section(figure, intro)
    items = [i for i in figure.get("items", []) or [] if isinstance(i, Mapping)][:MAX_EXAMPLES]
    if not items:
        return (
            f'<section class="card" id="examples"><h2>Examples</h2><p class="muted">{intro}: '
            "no adversarial example to show.</p></section>"
        )
    lo, hi = _bounds(figure)
    scale = float(figure["eps"]) if is_number(figure.get("eps")) and str(figure.get("norm")) == "linf" else 0.0
    scale = scale or max((_max_abs(i.get("perturbation")) for i in items), default=1.0) or 1.0
    names = figure.get("class_names")
    cards = []
    for item in items:
        imgs = "".join(
            _image_cell(item, key, lo=lo, hi=hi, scale=scale, alt=alt)
            for key, alt in (
                ("clean", "clean"),
                ("adversarial", "adversarial"),
                ("perturbation", "perturbation"),
            )
        )
        index = f" · sample {esc(plain(item['index']))}" if "index" in item else ""
        cards.append(
            f'<div class="example"><div class="imgs">{imgs}</div><div class="caption">label '
            f"<b>{esc(_label(item.get('label'), names))}</b> → predicted "
            f'<span class="to">{esc(_label(item.get("adversarial_prediction"), names))}</span>'
            f'<span class="muted small">{index}</span></div></div>'
        )
    return (
        f'<section class="card" id="examples"><h2>Examples</h2><p class="muted">{intro}.</p>'
        f'<div class="scale">perturbation <span>−{esc(num(scale, 3))}</span><span class="bar"></span>'
        f"<span>+{esc(num(scale, 3))}</span> (mean over channels)</div>"
        f'<div class="examples">{"".join(cards)}</div></section>'
    )


def _feature_section(figure: Mapping[str, Any], intro: str) -> str:
    names = [plain(n) for n in figure.get("features", [])]
    magnitudes = figure.get("mean_abs_perturbation") or []
    signed = figure.get("mean_perturbation") or []
    bars = []
    for i, name in enumerate(names):
        value = float(magnitudes[i]) if i < len(magnitudes) and is_number(magnitudes[i]) else math.nan
        sign = float(signed[i]) if i < len(signed) and is_number(signed[i]) else 0.0
        bars.append(Bar(label=name, value=value, signed=sign, tooltip=f"{name}: |δ| {value:.4g}, mean δ {sign:+.4g}"))
    bars.sort(key=lambda b: -b.value if math.isfinite(b.value) else math.inf)
    if not bars:
        return ""
    svg = bar_chart(bars, x_label="mean |perturbation| per feature", title="Per-feature perturbation")
    return (
        f'<section class="card" id="examples"><h2>Per-feature perturbation</h2><p class="muted">{intro}.</p>'
        f"<figure>{svg}<figcaption>Mean absolute change per feature over the fooled samples, largest first; "
        "red: the attack mostly increases the feature, blue: mostly decreases it.</figcaption></figure>"
        "</section>"
    )
