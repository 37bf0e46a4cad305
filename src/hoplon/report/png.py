"""Minimal PNG encoding with the standard library, and the colour maps of the example images.

The example grid of a report shows tiny images (8×8 to 224×224). They are encoded at their native size and
scaled up by the browser (``image-rendering: pixelated``), so no imaging library is needed.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Sequence
from typing import Any

__all__ = ["RGB", "diverging", "encode_png", "image_pixels", "perturbation_pixels", "png_data_uri"]

RGB = tuple[int, int, int]

# ColorBrewer RdBu end points and a neutral centre: negative perturbations blue, positive red.
_NEG: RGB = (33, 102, 172)
_MID: RGB = (247, 247, 247)
_POS: RGB = (178, 24, 43)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(pixels: Sequence[Sequence[RGB]]) -> bytes:
    """Encode rows of ``(r, g, b)`` bytes as an 8-bit RGB PNG."""
    height = len(pixels)
    width = len(pixels[0]) if height else 0
    if height == 0 or width == 0 or any(len(row) != width for row in pixels):
        raise ValueError("A PNG needs a non-empty rectangular grid of pixels.")
    raw = bytearray()
    for row in pixels:
        raw.append(0)  # filter type 0 (none) for every scanline
        for r, g, b in row:
            raw.extend((r, g, b))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + _chunk(b"IEND", b"")
    )


def png_data_uri(pixels: Sequence[Sequence[RGB]]) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(pixels)).decode("ascii")


def _byte(v: float) -> int:
    return max(0, min(255, round(v * 255)))


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def diverging(v: float) -> RGB:
    """Map ``v`` in [-1, 1] (clipped; NaN → centre) to a blue–white–red colour."""
    if not math.isfinite(v):
        return _MID
    v = max(-1.0, min(1.0, v))
    return _mix(_MID, _POS, v) if v >= 0 else _mix(_MID, _NEG, -v)


def _number(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _channels(image: Any) -> list[list[list[float]]]:
    """Coerce a nested list into C×H×W floats; an H×W image becomes one channel. Raises ValueError."""
    if not isinstance(image, list) or not image:
        raise ValueError("An image must be a non-empty nested list.")
    if isinstance(image[0], list) and image[0] and not isinstance(image[0][0], list):
        image = [image]
    chans = [[[_number(v) for v in row] for row in chan] for chan in image]
    height = len(chans[0])
    width = len(chans[0][0]) if height else 0
    if height == 0 or width == 0:
        raise ValueError("An image must have at least one pixel.")
    for chan in chans:
        if len(chan) != height or any(len(row) != width for row in chan):
            raise ValueError("The channels of an image must all have the same height and width.")
    return chans


def image_pixels(image: Any, *, lower: float = 0.0, upper: float = 1.0) -> list[list[RGB]]:
    """C×H×W values within ``[lower, upper]`` → RGB rows (one channel: grey; three: colour)."""
    chans = _channels(image)
    span = upper - lower if upper > lower else 1.0

    def level(v: float) -> int:
        return _byte((v - lower) / span) if math.isfinite(v) else 0

    if len(chans) >= 3:
        r, g, b = chans[:3]
        return [[(level(r[i][j]), level(g[i][j]), level(b[i][j])) for j in range(len(r[0]))] for i in range(len(r))]
    levels = [[level(v) for v in row] for row in chans[0]]
    return [[(g, g, g) for g in row] for row in levels]


def perturbation_pixels(delta: Any, *, scale: float) -> list[list[RGB]]:
    """C×H×W perturbation → diverging colours; channels are averaged, ``±scale`` maps to full colour."""
    chans = _channels(delta)
    scale = scale if scale > 0 else 1.0
    height, width = len(chans[0]), len(chans[0][0])
    return [[diverging(sum(c[i][j] for c in chans) / len(chans) / scale) for j in range(width)] for i in range(height)]
