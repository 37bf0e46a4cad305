"""The page as a person sees it: headless Chromium renders the sample, privacy and certification reports to
screenshots, and the charts' line colours must be on them."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from hoplon.core.report import Report
from hoplon.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _screenshot(report: Report, tmp_path: Path) -> bytes:
    assert CHROMIUM is not None
    paths = write_report(report, tmp_path / "out", formats=("html",))
    shot = tmp_path / "page.png"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,2000",
        paths["html"].resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.exists(), done.stderr.decode(errors="replace")[-2000:]
    return shot.read_bytes()


# Colours only a rendered chart puts on the page in quantity, with the fewest pixels each must cover: the
# worst-case and certified-accuracy curves (emphasis red), the strongest attack's ROC line (rmia's palette
# green in the privacy fixture) and the violet dashed line at the largest certifiable radius.
RED, GREEN, VIOLET = (0xB3, 0x26, 0x1E), (0x59, 0xA1, 0x4F), (0x7C, 0x3A, 0xED)
CHART_COLOURS = {"sample": [(RED, 1000)], "privacy": [(GREEN, 500)], "certified": [(RED, 1000), (VIOLET, 40)]}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); no screenshot")
@pytest.mark.parametrize("name", ["sample", "privacy", "certified"])
def test_report_screenshot(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    data = _screenshot(request.getfixturevalue(name), tmp_path)
    assert _png_size(data) == (1200, 2000)
    # A blank or error page compresses to a few kB; the report (tables, chart, images) does not.
    assert len(data) > 60_000
    pixels = _rows(data).astype(np.int64)
    assert pixels.shape == (2000, 1200, 3)
    for colour, least in CHART_COLOURS[name]:
        hits = int((np.abs(pixels - np.array(colour)) <= 6).all(axis=2).sum())
        assert hits >= least, f"the chart colour {colour} covers only {hits} pixels"


def _rows(data: bytes) -> np.ndarray:
    """The RGB pixels (height × width × 3) of an 8-bit RGB or RGBA, non-interlaced PNG, as Chromium writes."""
    width, height = _png_size(data)
    depth, colour, _, _, interlace = data[24:29]
    assert depth == 8 and colour in (2, 6) and interlace == 0
    channels = 3 if colour == 2 else 4
    idat = b"".join(
        data[p + 8 : p + 8 + struct.unpack(">I", data[p : p + 4])[0]] for p in _chunk_offsets(data, b"IDAT")
    )
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), dtype=np.uint8)
    previous = np.zeros(width * channels, dtype=np.uint8)
    for y in range(height):
        kind, line = int(raw[y, 0]), raw[y, 1:].astype(np.int64)
        if kind == 1:  # Sub: a running sum along each channel
            line = line.reshape(width, channels).cumsum(axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            line = (line + previous) % 256
        elif kind in (3, 4):  # Average and Paeth depend on the byte just decoded: one at a time
            up = previous.astype(np.int64)
            for i in range(len(line)):
                a = int(line[i - channels]) if i >= channels else 0
                b, c = int(up[i]), int(up[i - channels]) if i >= channels else 0
                if kind == 3:
                    line[i] = (line[i] + (a + b) // 2) % 256
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) % 256
        out[y] = previous = line.astype(np.uint8)
    return out.reshape(height, width, channels)[:, :, :3]


def _chunk_offsets(data: bytes, tag: bytes) -> list[int]:
    offsets, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == tag:
            offsets.append(pos)
        pos += 12 + length
    return offsets
