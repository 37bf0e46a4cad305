"""The certified-robustness section of the HTML report: randomized smoothing (``hoplon certify``).

It reads ``results.certified`` (one row per L2 radius, each stating n, α and σ; layout in
:func:`hoplon.audit.certify.certification_rows`) and tolerates missing or odd fields.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

from hoplon.report._text import DASH, esc, is_number, num, pct
from hoplon.report.svg import Series, line_chart

__all__ = ["CERTIFIED_KEYS", "certified_rows", "certified_section", "exact_curve"]

CERTIFIED_KEYS = frozenset({"certified", "samples", "certified_samples", "partial", "queries", "cpu_s"})
MAX_TILES = 5
MAX_STEPS = 1000
Row = Mapping[str, Any]


def certified_rows(doc: Mapping[str, Any]) -> list[Row]:
    """The rows of ``results.certified`` that have a radius and a certified accuracy, by radius."""
    results = doc.get("results")
    rows = results.get("certified") if isinstance(results, Mapping) else None
    if not isinstance(rows, list):
        return []
    good = [r for r in rows if isinstance(r, Mapping) and is_number(r.get("radius"))]
    return sorted((r for r in good if is_number(r.get("certified_accuracy"))), key=lambda r: float(r["radius"]))


def _first(rows: list[Row], key: str) -> Any:
    return next((r[key] for r in rows if r.get(key) is not None), None)


def _tile(label: str, value: str, *, low: bool = False) -> str:
    return (
        f'<div class="tile{" low" if low else ""}"><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(value)}</div></div>'
    )


def _confidence(alpha: Any) -> str:
    """``0.001`` → ``'99.9%'`` (as many digits as α needs, no more)."""
    return f"{100 * (1 - float(alpha)):.6g}%" if is_number(alpha) else DASH


def _statement(rows: list[Row], results: Mapping[str, Any]) -> str:
    n, n0, alpha = _first(rows, "n"), _first(rows, "n0"), _first(rows, "alpha")
    sigma, cap, abstain = _first(rows, "sigma"), _first(rows, "max_certifiable_radius"), _first(rows, "abstain_rate")
    samples = _first(rows, "samples")
    draws = f"<b>n = {esc(num(n))}</b> Monte Carlo noise draws per sample"
    if is_number(n0):
        draws += f" (and n₀ = {esc(num(n0))} more to choose its class)"
    text = (
        f"Each certificate uses {draws} at noise level <b>σ = {esc(num(sigma))}</b> and holds with probability "
        f"<b>1 − α = {_confidence(alpha)}</b> "
        f"(α = {esc(num(alpha))}) per sample. <b>{pct(abstain)}</b> of the {esc(num(samples))} samples abstain "
        "(the noisy votes are too close to call); they count as wrong."
    )
    if is_number(cap):
        text += (
            f" With n = {esc(num(n))} draws no radius above <b>{esc(num(cap, 3))}</b> can be certified, however "
            "robust the model: beyond it the curve is cut by the sample count, not by the model."
        )
    chips = []
    for key, label in (("certified_samples", "samples certified"), ("queries", "model queries")):
        if is_number(results.get(key)):
            chips.append(f'<span class="chip"><b>{label}</b> {esc(num(results[key]))}</span>')
    if is_number(results.get("cpu_s")):
        chips.append(f'<span class="chip"><b>CPU s</b> {float(results["cpu_s"]):.2f}</span>')
    return f'<p class="statement">{text}</p><div class="metrics">{"".join(chips)}</div>'


def exact_curve(samples: Any, x_hi: float) -> tuple[tuple[float, float], ...]:
    """The certified-accuracy step curve from per-sample results, ``(radius, accuracy)`` from 0 to ``x_hi``.

    A sample counts at radius r if it is predicted correctly with a certified radius of at least r (an
    abstention never is), as in ``results.certified``. With more than ``MAX_STEPS`` distinct radii they are
    floored to a grid of ``x_hi / MAX_STEPS`` (never overstating). Empty if ``samples`` is not usable.
    """
    if not isinstance(samples, list) or not samples or x_hi <= 0:
        return ()
    radii: list[float] = []
    for item in samples:
        if not isinstance(item, Mapping) or not is_number(item.get("radius")):
            return ()
        if item.get("prediction") is not None and item.get("prediction") == item.get("label"):
            radii.append(float(item["radius"]))
    if len(set(radii)) > MAX_STEPS:
        grain = x_hi / MAX_STEPS
        radii = [math.floor(r / grain + 1e-9) * grain for r in radii]
    radii.sort()
    total, n = len(samples), len(radii)

    def at_least(value: float) -> float:
        return (n - bisect.bisect_left(radii, value)) / total

    points = [(0.0, at_least(0.0))]
    for value in sorted({r for r in radii if 0 < r < x_hi}):
        points += [(value, at_least(value)), (value, (n - bisect.bisect_right(radii, value)) / total)]
    points.append((x_hi, at_least(x_hi)))
    return tuple(points)


def _chart(rows: list[Row], samples: Any) -> str:
    points = tuple((float(r["radius"]), float(r["certified_accuracy"])) for r in rows)
    cap = _first(rows, "max_certifiable_radius")
    partial = any(bool(r.get("partial")) for r in rows)
    markers, bands = [], []
    x_hi = max([x for x, _ in points] + ([float(cap)] if is_number(cap) else []))
    if is_number(cap) and cap > 0:
        markers.append((float(cap), f"max certifiable radius {num(cap, 3)}"))
        if float(cap) < x_hi:
            bands.append((float(cap), math.inf, "not certifiable with this n"))  # to the plot's right edge
    exact = exact_curve(samples, x_hi)
    series = Series("certified accuracy", exact or points, emphasis=True, dashed=partial, markers=not exact)
    svg = line_chart(
        [series],
        x_label="L2 radius r",
        y_label="certified accuracy",
        title="Certified accuracy against the L2 radius",
        x_markers=markers,
        x_bands=bands,
        height=340,
    )
    how = "computed from every sample's certificate" if exact else "at the radii of the table"
    return (
        f"<figure>{svg}<figcaption>The share of samples the smoothed classifier gets right with a certified "
        f"L2 radius of at least r ({how}; abstentions count as wrong): no L2 perturbation smaller than r can "
        "change those predictions. The dashed violet line is the largest radius n draws can certify."
        f"{' Dashed curve: a partial run.' if partial else ''}</figcaption></figure>"
    )


def _table(rows: list[Row]) -> str:
    cap = _first(rows, "max_certifiable_radius")
    body = []
    for r in rows:
        beyond = bool(r.get("beyond_cap")) or (is_number(cap) and float(r["radius"]) > float(cap))
        note = '<span class="muted">beyond the largest certifiable radius</span>' if beyond else ""
        partial = '<span class="tag" title="the run stopped early">partial</span>' if r.get("partial") else ""
        muted = ' class="muted"' if beyond else ""
        body.append(
            f'<tr{muted}><td class="n">{esc(num(r["radius"]))}</td>'
            f'<td class="n">{pct(r.get("certified_accuracy"))}</td>'
            f'<td class="n">{pct(r.get("abstain_rate"))}</td><td class="n">{esc(num(r.get("n")))}</td>'
            f'<td class="n">{esc(num(r.get("alpha")))}</td><td class="n">{esc(num(r.get("sigma")))}</td>'
            f"<td>{note}{partial}</td></tr>"
        )
    return (
        '<div class="wrap"><table><thead><tr><th class="n">L2 radius</th><th class="n">certified accuracy</th>'
        '<th class="n">abstain</th><th class="n">n</th><th class="n">α</th><th class="n">σ</th><th></th>'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def certified_section(doc: Mapping[str, Any]) -> str:
    """The section for a certification report (an empty string if ``results.certified`` has no rows)."""
    rows = certified_rows(doc)
    if not rows:
        return ""
    results: Mapping[str, Any] = doc["results"]  # a Mapping: certified_rows found rows in it
    first = rows[0]
    cap = _first(rows, "max_certifiable_radius")
    abstain = _first(rows, "abstain_rate")
    clean = float(first["certified_accuracy"])
    shown = [r for r in rows if not (is_number(cap) and float(r["radius"]) > float(cap))][:MAX_TILES] or [first]
    tiles = [
        _tile(
            f"certified accuracy, r = {num(r['radius'])}",
            pct(r["certified_accuracy"]),
            low=float(r["certified_accuracy"]) < 0.5 * clean,
        )
        for r in shown
    ]
    tiles += [
        _tile("abstain", pct(abstain), low=is_number(abstain) and float(abstain) > 0.2),
        _tile("max certifiable radius", num(cap, 3) if is_number(cap) else DASH),
    ]
    samples = results.get("samples")
    note = (
        f'<p class="muted small">Per-sample predictions and radii of the {len(samples)} samples: '
        "<code>results.samples</code> in report.json.</p>"
        if isinstance(samples, list) and samples
        else ""
    )
    tag = '<span class="tag">partial</span>' if results.get("partial") is True else ""
    return (
        f'<section class="card" id="certified"><h2>Certified robustness (randomized smoothing){tag}</h2>'
        f'<div class="headline">{"".join(tiles)}</div>{_statement(rows, results)}{_chart(rows, samples)}'
        f"{_table(rows)}{note}</section>"
    )
