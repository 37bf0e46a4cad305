"""Inline SVG charts for the HTML report: line charts (linear or log–log axes) and horizontal bars.

Plain strings, no plotting library; every label passes through :func:`~hoplon.report._text.esc`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from hoplon.report._text import esc, truncate

__all__ = [
    "PALETTE",
    "WORST_COLOUR",
    "Bar",
    "Scale",
    "Series",
    "bar_chart",
    "decade_label",
    "line_chart",
    "nice_ticks",
]

PALETTE = ("#4e79a7", "#59a14f", "#b07aa1", "#76b7b2", "#9c755f", "#edc948", "#f28e2b", "#ff9da7", "#bab0ac")
WORST_COLOUR = "#b3261e"
_AXIS = "#6b7280"
_GRID = "#e5e7eb"
Scale = Literal["linear", "log"]
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


@dataclass(frozen=True, slots=True)
class Series:
    """One line: ``points`` are ``(x, y)`` with ``y`` in [0, 1]; ``markers=False`` draws the line alone."""

    name: str
    points: tuple[tuple[float, float], ...]
    emphasis: bool = False
    dashed: bool = False
    markers: bool = True
    colour: str = ""  # a fixed colour (the same attack in the same colour across charts); default: the palette


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


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def decade_label(value: float) -> str:
    """``1e-4`` → ``'10⁻⁴'``; 1, 10, 100 and 1000 stay plain numbers."""
    k = round(math.log10(value))
    return str(10**k) if 0 <= k <= 3 else "10" + str(k).translate(_SUPERSCRIPT)


@dataclass(frozen=True, slots=True)
class _Axis:
    """Maps data values to pixels along one axis: ``lo`` → ``start``, ``hi`` → ``end`` (linear or log10)."""

    lo: float
    hi: float
    start: float
    end: float
    is_log: bool

    def __call__(self, value: float) -> float:
        if self.is_log:
            v = math.log10(max(value, self.lo)) if value > 0 else math.log10(self.lo)
            lo, hi = math.log10(self.lo), math.log10(self.hi)
        else:
            v, lo, hi = value, self.lo, self.hi
        v = max(lo, min(hi, v))
        return self.start + (v - lo) / (hi - lo) * (self.end - self.start)

    def decades(self) -> list[float]:
        first, last = math.ceil(math.log10(self.lo) - 1e-9), math.floor(math.log10(self.hi) + 1e-9)
        return [10.0**k for k in range(first, last + 1)]

    def minor(self) -> list[float]:
        """2, 3, …, 9 × each decade inside the range (the faint grid of a log axis)."""
        out = []
        for k in range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))):
            out += [m * 10.0**k for m in range(2, 10) if self.lo < m * 10.0**k < self.hi]
        return out


def _log_range(values: Sequence[float], fallback: tuple[float, float]) -> tuple[float, float]:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return fallback
    lo = 10.0 ** math.floor(math.log10(min(positive)) + 1e-9)
    hi = 10.0 ** math.ceil(math.log10(max(positive)) - 1e-9)
    return (lo, hi) if hi > lo else (lo, lo * 10)


def line_chart(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    thresholds: Sequence[tuple[float, str]] = (),
    width: int = 1000,
    height: int = 380,
    title: str = "",
    x_scale: Scale = "linear",
    y_scale: Scale = "linear",
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    x_ticks: Sequence[tuple[float, str]] = (),
    x_markers: Sequence[tuple[float, str]] = (),
    x_bands: Sequence[tuple[float, float, str]] = (),
    diagonal: str = "",
    legend_w: int = 170,
) -> str:
    """A line chart with axes, ticks, grid, a legend on the right and optional reference lines.

    By default ``y`` is a share in [0, 1] (labelled in percent) and ``x`` is linear from 0. A ``log`` scale
    takes decade ticks and a faint grid at 2…9 × each decade; values ≤ 0 are drawn on the axis floor.
    ``x_ticks`` replaces the automatic x ticks by ``(value, label)`` pairs; ``x_markers`` draws labelled
    vertical lines and ``x_bands`` shades ``(from, to, label)`` spans; ``diagonal`` draws ``y = x`` (the
    chance line of a ROC curve) labelled with its text.
    """
    left, right, top, bottom = 64, legend_w + 16, 20, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for s in series for x, _ in s.points] or [0.0, 1.0]
    xs += [x for x, _ in x_ticks] + [x for x, _ in x_markers]
    if x_scale == "log":
        x_lo, x_hi = x_range or _log_range(xs, (1e-4, 1.0))
        x_grid = [(t, decade_label(t)) for t in _Axis(x_lo, x_hi, 0, 1, True).decades()]
    else:
        grid = nice_ticks(min(0.0, min(xs)), max(xs)) if x_range is None else [*x_range]
        x_lo, x_hi = grid[0], grid[-1]
        x_grid = [(t, _tick_label(t)) for t in grid]
    if x_ticks:
        x_grid = list(x_ticks)
    y_lo, y_hi = y_range or ((1e-4, 1.0) if y_scale == "log" else (0.0, 1.0))
    px = _Axis(x_lo, x_hi, left, left + plot_w, x_scale == "log")
    py = _Axis(y_lo, y_hi, top + plot_h, top, y_scale == "log")
    if y_scale == "log":
        y_grid = [(t, decade_label(t)) for t in py.decades()]
    else:
        y_grid = [(y_lo + i / 5 * (y_hi - y_lo), "") for i in range(6)]
        y_grid = [(y, f"{round(y * 100)}%") for y, _ in y_grid]

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{esc(title or y_label)}" {_FONT} font-size="12">'
    ]
    if title:
        out.append(f"<title>{esc(title)}</title>")
    for x0, x1, label in x_bands:
        a, b = sorted((px(x0), px(x1)))
        if b - a < 1:
            continue
        out.append(
            f'<rect x="{a:.1f}" y="{top}" width="{b - a:.1f}" height="{plot_h}" fill="#f3f4f6"/>'
            f'<text x="{(a + b) / 2:.1f}" y="{top + 14}" text-anchor="middle" fill="{_AXIS}" font-size="11">'
            f"{esc(label)}</text>"
        )
    for axis, is_x in ((px, True), (py, False)):
        for t in axis.minor() if axis.is_log and not (is_x and x_ticks) else []:
            p = axis(t)
            out.append(
                f'<line x1="{p:.1f}" x2="{p:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#f3f4f6"/>'
                if is_x
                else f'<line x1="{left}" x2="{left + plot_w}" y1="{p:.1f}" y2="{p:.1f}" stroke="#f3f4f6"/>'
            )
    for y, label in y_grid:
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="{_GRID}"/>'
            f'<text x="{left - 8}" y="{py(y) + 4:.1f}" text-anchor="end" fill="{_AXIS}">'
            f"{esc(label)}</text>"
        )
    for t, label in x_grid:
        out.append(
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + plot_h}" stroke="{_GRID}"/>'
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top + plot_h}" y2="{top + plot_h + 5}" '
            f'stroke="{_AXIS}"/>'
            f'<text x="{px(t):.1f}" y="{top + plot_h + 19}" text-anchor="middle" fill="{_AXIS}">'
            f"{esc(label)}</text>"
        )
    out.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{_AXIS}"/>'
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="{_AXIS}"/>'
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 12}" text-anchor="middle" fill="#111827" '
        f'font-weight="600">{esc(x_label)}</text>'
        f'<text transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
        f'fill="#111827" font-weight="600">{esc(y_label)}</text>'
    )
    if diagonal:
        lo, hi = max(x_lo, y_lo), min(x_hi, y_hi)
        # The label sits a quarter of the way up the line, just below it, where a useful curve is not.
        at = lo * (hi / lo) ** 0.25 if px.is_log and py.is_log and lo > 0 else lo + (hi - lo) * 0.25
        lx, ly = px(at) + 4, py(at) + 14
        out.append(
            f'<line x1="{px(lo):.1f}" x2="{px(hi):.1f}" y1="{py(lo):.1f}" y2="{py(hi):.1f}" stroke="#9ca3af" '
            'stroke-width="1.2" stroke-dasharray="4 4"/>'
            f'<text x="{lx:.1f}" y="{ly:.1f}" fill="{_AXIS}" '
            f'transform="rotate({_slope(px, py, lo, hi):.1f} {lx:.1f} {ly:.1f})">{esc(diagonal)}</text>'
        )
    for value, label in thresholds:
        y = py(value)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#7c3aed" '
            f'stroke-width="1.2" stroke-dasharray="6 4"/>'
            f'<text x="{left + plot_w - 4}" y="{y - 5:.1f}" text-anchor="end" fill="#7c3aed">'
            f"{esc(label)}</text>"
        )
    for value, label in x_markers:
        x = px(value)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#7c3aed" '
            f'stroke-width="1.4" stroke-dasharray="6 4"/>'
            f'<text x="{x - 5:.1f}" y="{top + 30}" text-anchor="end" fill="#7c3aed">{esc(label)}</text>'
        )
    # The emphasised line (the headline) is drawn last, over a translucent band, so it is never hidden.
    ordered = sorted(enumerate(series), key=lambda item: item[1].emphasis)
    colours = _colours(series)
    y_text = _y_text(y_scale)
    for index, s in ordered:
        colour = colours[index]
        pts = sorted(s.points, key=lambda p: p[0])  # stable: a step keeps its order at one x
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
        tip = "" if s.markers else f"<title>{esc(s.name)}</title>"
        close = f">{tip}</polyline>" if tip else "/>"
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="{stroke_w}"{dash} '
            f'stroke-linejoin="round" stroke-linecap="round"{close}'
        )
        radius = 4.5 if s.emphasis else 3.2
        for x, y in pts if s.markers else ():
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{radius}" fill="#fff" stroke="{colour}" '
                f'stroke-width="2"><title>{esc(s.name)}: {esc(_tick_label(x))} → {y_text(y)}</title>'
                "</circle>"
            )
    lx = width - legend_w + 4
    chars = max(8, round((legend_w - 34) / 6.8))  # legend names fit their column (20 at the default)
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
        dot = (
            f'<circle cx="13" cy="{y + 6}" r="3.2" fill="#fff" stroke="{colours[index]}" stroke-width="2"/>'
            if s.markers
            else ""
        )
        out.append(
            f'{band}<line x1="0" x2="26" y1="{y + 6}" y2="{y + 6}" stroke="{colours[index]}" '
            f'stroke-width="{3.0 if s.emphasis else 1.8}"{dash}/>{dot}'
            f'<text x="34" y="{y + 10}" fill="#111827"{weight}>{esc(truncate(s.name, chars))}</text>'
        )
    out.append("</g></svg>")
    return "".join(out)


def _y_text(scale: Scale) -> Callable[[float], str]:
    if scale == "log":
        return lambda y: f"{y:.3g}"
    return lambda y: f"{100 * y:.1f}%"


def _slope(px: _Axis, py: _Axis, lo: float, hi: float) -> float:
    """The on-screen angle of the segment from ``(lo, lo)`` to ``(hi, hi)``, in degrees (for its label)."""
    return math.degrees(math.atan2(py(hi) - py(lo), px(hi) - px(lo)))


def _colours(series: Sequence[Series]) -> list[str]:
    colours, k = [], 0
    for s in series:
        if s.colour:
            colours.append(esc(s.colour))
        elif s.emphasis:
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
