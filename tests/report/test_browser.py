"""The page as a person sees it: headless Chromium renders the sample report to a screenshot."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from hoplon.core.report import Report
from hoplon.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); no screenshot")
def test_sample_report_screenshot(sample: Report, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    paths = write_report(sample, tmp_path / "out", formats=("html",))
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
    data = shot.read_bytes()
    assert _png_size(data) == (1200, 2000)
    # A blank or error page compresses to a few kB; the report (tables, chart, images) does not.
    assert len(data) > 60_000
    idat = b"".join(
        data[p + 8 : p + 8 + struct.unpack(">I", data[p : p + 4])[0]] for p in _chunk_offsets(data, b"IDAT")
    )
    assert len(zlib.decompress(idat)) >= 1200 * 2000 * 3


def _chunk_offsets(data: bytes, tag: bytes) -> list[int]:
    offsets, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == tag:
            offsets.append(pos)
        pos += 12 + length
    return offsets
