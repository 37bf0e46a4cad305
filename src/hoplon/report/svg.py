"""Inline SVG charts for the HTML report: a line chart (the robustness curve) and horizontal bars.

Plain strings, no plotting library; every label passes through :func:`~hoplon.report._text.esc`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hoplon.report._text import esc, truncate

__all__ = ["PALETTE", "WORST_COLOUR", "Bar", "Series", "bar_chart", "line_chart", "nice_ticks"]

PALETTE = ("#4e79a7", "#59a14f", "#b07aa1", "#76b7b2", "#9c755f", "#edc948", "#f28e2b", "#ff9da7", "#bab0ac")
WORST_COLOUR = "#b3261e"
_AXIS = "#6b7280"
_GRID = "#e5e7eb"
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


@dataclass(frozen=True, slots=True)
class Series:
    """One line: ``points`` are ``(x, y)`` with ``y`` in [0, 1]."""

    name: str
    points: tuple[tuple[float, float], ...]
    emphasis: bool = False
    dashed: bool = False


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    signed: float = 0.0  # the sign picks the colour (red positive, blue negative)
    tooltip: str = ""


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 × 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    n = math.ceil((hi - start) / step - 1e-9)
    return [round(start + k * step, 12) for k in range(max(n, 1) + 1)]


def _tick_label(value: float) -> str:
    return f"{round(value, 10):g}"


def line_chart(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    thresholds: Sequence[tuple[float, str]] = (),
    width: int = 1000,
    height: int = 380,
    title: str = "",
) -> str:
    """A y-in-[0, 1] line chart with axes, ticks, grid, a legend on the right and optional threshold lines."""
    legend_w = 170
    left, right, top, bottom = 64, legend_w + 16, 20, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for s in series for x, _ in s.points] or [0.0, 1.0]
    x_ticks = nice_ticks(min(0.0, min(xs)), max(xs))
    x_lo, x_hi = x_ticks[0], x_ticks[-1]

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return top + (1.0 - max(0.0, min(1.0, y))) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{esc(title or y_label)}" {_FONT} font-size="12">'
    ]
    if title:
        out.append(f"<title>{esc(title)}</title>")
    for i in range(6):
        y = i / 5
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="{_GRID}"/>'
            f'<text x="{left - 8}" y="{py(y) + 4:.1f}" text-anchor="end" fill="{_AXIS}">'
            f"{round(y * 100)}%</text>"
        )
    for t in x_ticks:
        out.append(
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + plot_h}" stroke="{_GRID}"/>'
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top + plot_h}" y2="{top + plot_h + 5}" '
            f'stroke="{_AXIS}"/>'
            f'<text x="{px(t):.1f}" y="{top + plot_h + 19}" text-anchor="middle" fill="{_AXIS}">'
            f"{esc(_tick_label(t))}</text>"
        )
    out.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{_AXIS}"/>'
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="{_AXIS}"/>'
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 12}" text-anchor="middle" fill="#111827" '
        f'font-weight="600">{esc(x_label)}</text>'
        f'<text transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
        f'fill="#111827" font-weight="600">{esc(y_label)}</text>'
    )
    for value, label in thresholds:
        y = py(value)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#7c3aed" '
            f'stroke-width="1.2" stroke-dasharray="6 4"/>'
            f'<text x="{left + plot_w - 4}" y="{y - 5:.1f}" text-anchor="end" fill="#7c3aed">'
            f"{esc(label)}</text>"
        )
    # The emphasised line (the headline) is drawn last, over a translucent band, so it is never hidden.
    ordered = sorted(enumerate(series), key=lambda item: item[1].emphasis)
    colours = _colours(series)
    for index, s in ordered:
        colour = colours[index]
        pts = sorted(s.points)
        if not pts:
            continue
        stroke_w = 3.0 if s.emphasis else 1.8
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        if s.emphasis:
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="11" '
                'stroke-opacity="0.16" stroke-linejoin="round" stroke-linecap="round"/>'
            )
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="{stroke_w}"{dash} '
            f'stroke-linejoin="round" stroke-linecap="round"/>'
        )
        radius = 4.5 if s.emphasis else 3.2
        for x, y in pts:
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{radius}" fill="#fff" stroke="{colour}" '
                f'stroke-width="2"><title>{esc(s.name)}: {esc(_tick_label(x))} → {100 * y:.1f}%</title>'
                "</circle>"
            )
    lx = width - legend_w + 4
    out.append(f'<g transform="translate({lx} {top + 4})">')
    for row, (index, s) in enumerate(sorted(enumerate(series), key=lambda item: not item[1].emphasis)):
        y = row * 22
        weight = ' font-weight="700"' if s.emphasis else ""
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        band = (
            f'<line x1="0" x2="26" y1="{y + 6}" y2="{y + 6}" stroke="{colours[index]}" stroke-width="11" '
            'stroke-opacity="0.16"/>'
            if s.emphasis
            else ""
        )
        out.append(
            f'{band}<line x1="0" x2="26" y1="{y + 6}" y2="{y + 6}" stroke="{colours[index]}" '
            f'stroke-width="{3.0 if s.emphasis else 1.8}"{dash}/>'
            f'<circle cx="13" cy="{y + 6}" r="3.2" fill="#fff" stroke="{colours[index]}" stroke-width="2"/>'
            f'<text x="34" y="{y + 10}" fill="#111827"{weight}>{esc(truncate(s.name, 20))}</text>'
        )
    out.append("</g></svg>")
    return "".join(out)


def _colours(series: Sequence[Series]) -> list[str]:
    colours, k = [], 0
    for s in series:
        if s.emphasis:
            colours.append(WORST_COLOUR)
        else:
            colours.append(PALETTE[k % len(PALETTE)])
            k += 1
    return colours


def bar_chart(bars: Sequence[Bar], *, x_label: str, width: int = 1000, title: str = "") -> str:
    """Horizontal bars (one row per label), values ≥ 0, with a value label at the end of each bar."""
    row_h = 20
    label_w = min(220, 16 + 7 * max((len(truncate(b.label, 30)) for b in bars), default=4))
    left, right, top, bottom = label_w, 70, 8, 46
    plot_w = width - left - right
    height = top + bottom + row_h * max(len(bars), 1)
    peak = max((b.value for b in bars if math.isfinite(b.value)), default=0.0)
    ticks = nice_ticks(0.0, peak if peak > 0 else 1.0, 4)
    x_hi = ticks[-1]

    def px(v: float) -> float:
        return left + max(0.0, v) / x_hi * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{esc(title or x_label)}" {_FONT} font-size="12">'
    ]
    if title:
        out.append(f"<title>{esc(title)}</title>")
    base = top + row_h * len(bars)
    for t in ticks:
        out.append(
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{base}" stroke="{_GRID}"/>'
            f'<text x="{px(t):.1f}" y="{base + 16}" text-anchor="middle" fill="{_AXIS}">'
            f"{esc(_tick_label(t))}</text>"
        )
    for i, b in enumerate(bars):
        y = top + i * row_h
        value = b.value if math.isfinite(b.value) else 0.0
        colour = "#c0392b" if b.signed > 0 else "#2166ac" if b.signed < 0 else "#6b7280"
        tip = esc(b.tooltip or f"{b.label}: {value:.4g}")
        out.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" fill="#111827">'
            f"{esc(truncate(b.label, 30))}<title>{tip}</title></text>"
            f'<rect x="{left}" y="{y + 3}" width="{max(px(value) - left, 0.5):.1f}" height="{row_h - 6}" '
            f'fill="{colour}" fill-opacity="0.85" rx="2"><title>{tip}</title></rect>'
            f'<text x="{px(value) + 5:.1f}" y="{y + 14}" fill="{_AXIS}">{value:.3g}</text>'
        )
    out.append(
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{base}" stroke="{_AXIS}"/>'
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle" fill="#111827" '
        f'font-weight="600">{esc(x_label)}</text></svg>'
    )
    return "".join(out)
