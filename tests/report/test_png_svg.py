"""The standard-library PNG encoder, the colour maps and the SVG charts."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
import zlib

import pytest

from hoplon.report.png import diverging, encode_png, image_pixels, perturbation_pixels
from hoplon.report.svg import Bar, Series, bar_chart, decade_label, line_chart, nice_ticks


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        out.append((tag, body))
        pos += 12 + length
    return out


def test_png_round_trip() -> None:
    pixels = [[(255, 0, 0), (0, 255, 0), (0, 0, 255)], [(1, 2, 3), (4, 5, 6), (7, 8, 9)]]
    chunks = _chunks(encode_png(pixels))
    assert [t for t, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (width, height, depth, colour) == (3, 2, 8, 2)
    raw = zlib.decompress(chunks[1][1])
    assert raw == b"\x00" + bytes([255, 0, 0, 0, 255, 0, 0, 0, 255]) + b"\x00" + bytes(range(1, 10))


def test_png_rejects_ragged_input() -> None:
    with pytest.raises(ValueError, match="rectangular"):
        encode_png([[(0, 0, 0)], []])


def test_images_map_bounds_to_grey_and_colour() -> None:
    assert image_pixels([[[0.0, 0.5, 1.0]]]) == [[(0, 0, 0), (128, 128, 128), (255, 255, 255)]]
    assert image_pixels([[[-1.0, 1.0]]], lower=-1, upper=1) == [[(0, 0, 0), (255, 255, 255)]]
    rgb = image_pixels([[[1.0]], [[0.0]], [[0.5]]])
    assert rgb == [[(255, 0, 128)]]
    assert image_pixels([[0.0, 1.0]]) == [[(0, 0, 0), (255, 255, 255)]]  # H×W without a channel axis


def test_diverging_map() -> None:
    assert diverging(0.0) == (247, 247, 247)
    assert diverging(1.0) == (178, 24, 43)
    assert diverging(-5.0) == (33, 102, 172)
    assert diverging(float("nan")) == (247, 247, 247)
    assert perturbation_pixels([[[0.1, -0.1]]], scale=0.1) == [[(178, 24, 43), (33, 102, 172)]]


def test_nice_ticks() -> None:
    assert nice_ticks(0, 0.2) == [0.0, 0.05, 0.1, 0.15, 0.2]
    assert nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 8 / 255)[-1] >= 8 / 255
    assert nice_ticks(0, 0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_charts_are_well_formed_svg() -> None:
    evil = "<b>&'\""
    svg = line_chart(
        [Series(evil, ((0.0, 1.0), (0.1, 0.4)), emphasis=True), Series("b", ((0.1, 0.5),), dashed=True)],
        x_label=evil,
        y_label="y",
        thresholds=[(0.5, evil)],
        title=evil,
    )
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert evil in "".join(root.itertext())
    bars = bar_chart([Bar(evil, 0.3, 1.0), Bar("b", float("nan"))], x_label=evil)
    assert ET.fromstring(bars).tag.endswith("svg")


def test_decade_labels() -> None:
    assert [decade_label(10.0**k) for k in range(-4, 4)] == ["10⁻⁴", "10⁻³", "10⁻²", "10⁻¹", "1", "10", "100", "1000"]
    assert decade_label(1e6) == "10⁶"


SVG = "{http://www.w3.org/2000/svg}"


def _points(root: ET.Element) -> list[list[tuple[float, float]]]:
    return [
        [(float(p.split(",")[0]), float(p.split(",")[1])) for p in line.get("points", "").split()]
        for line in root.iter(f"{SVG}polyline")
    ]


def test_log_log_chart_places_decades_evenly_and_clamps_zeros() -> None:
    svg = line_chart(
        [Series("roc", ((0.0, 0.01), (1e-3, 1e-3), (1e-2, 0.1), (1.0, 1.0)), markers=False)],
        x_label="false-positive rate",
        y_label="true-positive rate",
        x_scale="log",
        y_scale="log",
        x_range=(1e-4, 1.0),
        y_range=(1e-4, 1.0),
        diagonal="chance",
        x_bands=[(1e-4, 5e-3, "below 1/n")],
        width=500,
        height=400,
        legend_w=100,
    )
    root = ET.fromstring(svg)
    text = "".join(root.itertext())
    for label in ("10⁻⁴", "10⁻³", "10⁻²", "10⁻¹", "chance", "below 1/n"):
        assert label in text
    assert "%" not in text  # log axes are labelled in decades, not percent
    ((p0, p1, p2, p3),) = _points(root)
    left, right = 64, 500 - 100 - 16
    assert p0[0] == left  # FPR 0 on the axis
    # One decade is a quarter of the width: 1e-3 → 1e-2 → 1 spans 1 and 2 decades.
    assert p2[0] - p1[0] == pytest.approx((right - left) / 4, abs=0.2)
    assert p3[0] - p2[0] == pytest.approx((right - left) / 2, abs=0.2)
    assert p1[1] > p2[1] > p3[1]  # higher TPR is higher on the page
    assert not root.findall(f"{SVG}circle")  # markers=False
    diagonal = [ln for ln in root.iter(f"{SVG}line") if ln.get("stroke-dasharray") == "4 4"]
    assert len(diagonal) == 1
    d = diagonal[0]
    dx = float(d.get("x2", 0)) - float(d.get("x1", 0))
    dy = float(d.get("y1", 0)) - float(d.get("y2", 0))
    assert dx > 0 and dy > 0  # from the lower left to the upper right


def test_linear_chart_with_markers_and_custom_ticks() -> None:
    svg = line_chart(
        [Series("acc", ((0.0, 0.9), (0.5, 0.3), (0.5, 0.1), (1.0, 0.0)), colour="#123456")],
        x_label="r",
        y_label="acc",
        x_markers=[(0.55, "cap")],
        x_bands=[(0.55, float("inf"), "beyond")],
        x_ticks=[(0.0, "zero"), (1.0, "one")],
    )
    root = ET.fromstring(svg)
    text = "".join(root.itertext())
    assert "cap" in text and "beyond" in text and "zero" in text and "one" in text
    ((_, b, c, _),) = _points(root)
    assert b[0] == c[0] and b[1] < c[1]  # points at one x keep their order: a step down stays a step down
    assert 'stroke="#123456"' in svg
