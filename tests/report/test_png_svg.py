"""The standard-library PNG encoder, the colour maps and the SVG charts."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
import zlib

import pytest

from hoplon.report.png import diverging, encode_png, image_pixels, perturbation_pixels
from hoplon.report.svg import Bar, Series, bar_chart, line_chart, nice_ticks


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
