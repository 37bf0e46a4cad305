"""hoplon's own 7z reader: every codec py7zr writes that the standard library decodes, bounds, and fallbacks.

py7zr is only the *writer* of the test archives here; the reader under test is ``hoplon.scan._sevenzip``.
"""

from __future__ import annotations

import io
import lzma
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoplon.scan import ScanLimits, scan_file
from hoplon.scan import _sevenzip as sz
from hoplon.scan import _sevenzip_coders as szc
from tests.scan import builders as b
from tests.scan.conftest import ScanBytes

py7zr = pytest.importorskip("py7zr")

_PAYLOAD = b.call("os", "system", "id")
# x86 call/jump opcodes and a long, partly random body: BCJ rewrites the former, the latter spans several chunks
_CODE = (b"\x55\x48\x89\xe5\xe8\x10\x20\x00\x00\xe9\x00\x01\x00\x00" * 4000) + os.urandom(40_000)
_MEMBERS: dict[str, bytes] = {
    "model/data.pkl": _PAYLOAD,
    "empty.txt": b"",
    "bin/code.so": _CODE,
    "ok.pkl": b.benign(),
}
_FILTERS: dict[str, list[dict[str, Any]]] = {
    "lzma2": [{"id": lzma.FILTER_LZMA2, "preset": 1}],
    "lzma": [{"id": lzma.FILTER_LZMA1, "preset": 1}],
    "bzip2": [{"id": py7zr.FILTER_BZIP2}],
    "deflate": [{"id": py7zr.FILTER_DEFLATE}],
    "copy": [{"id": py7zr.FILTER_COPY}],
    "bcj-lzma2": [{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2, "preset": 1}],
    "arm-lzma": [{"id": lzma.FILTER_ARM}, {"id": lzma.FILTER_LZMA1, "preset": 1}],
    "delta-lzma2": [{"id": lzma.FILTER_DELTA, "dist": 4}, {"id": lzma.FILTER_LZMA2, "preset": 1}],
}


def _write(
    members: dict[str, bytes],
    filters: list[dict[str, Any]] | None = None,
    *,
    encoded: bool = True,
    folder: Path | None = None,
) -> bytes:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", filters=filters) as archive:
        archive.set_encoded_header_mode(encoded)
        if folder is not None:
            archive.write(folder, "dir")
        for name, data in members.items():
            archive.writestr(data, name)
    return buf.getvalue()


def _unpack(data: bytes) -> dict[str, bytes | None]:
    """Every entry through hoplon's reader: bytes for files, ``None`` for directories."""
    stream = io.BytesIO(data)
    archive = sz.read_archive(stream, len(data), ScanLimits())
    assert not archive.header_crc_errors
    out: dict[str, bytes | None] = {m.name: None if m.is_dir else b"" for m in archive.members if not m.has_stream}
    for index, folder in enumerate(archive.folders):
        reader = szc.open_folder(stream, folder, lambda: False)
        for member in (m for m in archive.members if m.folder == index):
            parts = bytearray()
            while len(parts) < member.size:
                chunk = reader.read(member.size - len(parts))
                assert chunk, f"{member.name} ends early"
                parts += chunk
            assert member.crc is None or zlib.crc32(parts) == member.crc
            out[member.name] = bytes(parts)
    return out


def _ids(records: list[Any]) -> set[str]:
    return {f.id for r in records for f in r.findings}


@pytest.mark.parametrize("encoded", [True, False], ids=["encoded-header", "plain-header"])
@pytest.mark.parametrize("codec", sorted(_FILTERS))
def test_each_codec_unpacks_exactly_what_was_written(codec: str, encoded: bool, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    data = _write(_MEMBERS, _FILTERS[codec], encoded=encoded, folder=tmp_path / "dir")
    assert _unpack(data) == {**_MEMBERS, "dir": None}


@pytest.mark.parametrize("codec", ["lzma2", "bcj-lzma2", "deflate", "copy"])
def test_scanning_finds_the_payload_inside(codec: str, scan_bytes: ScanBytes) -> None:
    records = scan_bytes(_write(_MEMBERS, _FILTERS[codec]), "pytorch_model.bin")
    assert records[0].format == "7z" and records[0].verdict == "clean"
    by_member = {r.path.rsplit("!", 1)[-1]: r for r in records[1:]}
    assert by_member["model/data.pkl"].verdict == "unsafe"
    assert by_member["ok.pkl"].verdict == "clean"


def test_scanning_does_not_import_py7zr(tmp_path: Path) -> None:
    plain = tmp_path / "model.7z"
    plain.write_bytes(_write({"data.pkl": _PAYLOAD}, _FILTERS["bcj-lzma2"]))
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", password="secret") as archive:
        archive.writestr(b.benign(), "data.pkl")
    encrypted = tmp_path / "enc.7z"
    encrypted.write_bytes(buf.getvalue())
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", password="secret", header_encryption=True) as archive:
        archive.writestr(b.benign(), "data.pkl")
    hidden = tmp_path / "hidden.7z"
    hidden.write_bytes(buf.getvalue())
    code = (
        "import sys\n"
        "from hoplon.scan import scan_file\n"
        f"plain = scan_file({str(plain)!r})\n"
        f"enc = scan_file({str(encrypted)!r}) + scan_file({str(hidden)!r})\n"
        "assert 'py7zr' not in sys.modules, 'py7zr was imported'\n"
        "print(max(r.verdict for r in plain), [f.id for r in enc for f in r.findings])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "unsafe"
    assert result.stdout.count("scan.archive.encrypted") == 2, result.stdout


def test_ppmd_goes_to_py7zr_and_without_it_is_not_inspected(
    scan_bytes: ScanBytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _write({"data.pkl": _PAYLOAD}, [{"id": py7zr.FILTER_PPMD}])
    with pytest.raises(sz.Unsupported):
        for folder in sz.read_archive(io.BytesIO(data), len(data), ScanLimits()).folders:
            szc.check_folder(folder)
    assert any(r.verdict == "unsafe" and r.path.endswith("!data.pkl") for r in scan_bytes(data, "ppmd.7z"))
    monkeypatch.setitem(sys.modules, "py7zr", None)
    records = scan_bytes(data, "ppmd2.7z")
    assert "scan.archive.unsupported-archive" in _ids(records) and records[0].verdict == "suspicious"


def test_a_wrong_member_crc_is_a_finding_and_the_member_is_still_scanned(scan_bytes: ScanBytes) -> None:
    data = bytearray(_write({"data.pkl": _PAYLOAD}, _FILTERS["copy"], encoded=False))
    at = data.index(b"system")
    data[at : at + 6] = b"systen"  # stored bytes changed; the recorded CRC is the original's
    records = scan_bytes(bytes(data), "crc.7z")
    assert "scan.archive.bad-crc" in _ids(records) and records[0].verdict == "suspicious"
    assert any(r.path.endswith("!data.pkl") for r in records[1:])


def test_a_wrong_header_crc_is_a_finding(scan_bytes: ScanBytes) -> None:
    data = bytearray(_write({"data.pkl": b.benign()}, encoded=False))
    struct.pack_into("<I", data, 28, (struct.unpack_from("<I", data, 28)[0] + 1) & 0xFFFFFFFF)
    struct.pack_into("<I", data, 8, zlib.crc32(bytes(data[12:32])))
    assert "scan.archive.bad-crc" in _ids(scan_bytes(bytes(data), "hdr.7z"))


def test_header_and_declared_sizes_are_bounded_before_unpacking(scan_bytes: ScanBytes) -> None:
    data = _write({"data.pkl": b.benign(), "b.pkl": b.benign(2)}, encoded=False)
    small = scan_bytes(data, "h.7z", limits=ScanLimits(max_header_bytes=16))
    assert "scan.archive.over-limit" in _ids(small) and len(small) == 1
    big = scan_bytes(_write({"zeros.bin": b"\x00" * (4 << 20)}), "bomb.7z", limits=ScanLimits(max_ratio=10))
    assert "scan.archive.bomb" in _ids(big) and len(big) == 1  # refused from the declared size: nothing unpacked


def test_hostile_numbers_are_refused_without_allocating() -> None:
    header = b"\x01\x05\xff" + (1 << 40).to_bytes(8, "little") + b"\x00"  # kHeader, kFilesInfo, 2**40 entries
    start = struct.pack("<QQI", 0, len(header), zlib.crc32(header))
    data = sz.SIGNATURE + b"\x00\x04" + struct.pack("<I", zlib.crc32(start)) + start + header
    with pytest.raises(sz.OverLimit):
        sz.read_archive(io.BytesIO(data), len(data), ScanLimits())
    with pytest.raises(sz.SevenZipError):
        sz.read_archive(io.BytesIO(data), len(data), ScanLimits(max_archive_entries=1 << 62))


_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
_VICTIMS = [
    _write({"data.pkl": _PAYLOAD, "ok.pkl": b.benign()}, _FILTERS["lzma2"]),
    _write({"data.pkl": _PAYLOAD, "ok.pkl": b.benign()}, _FILTERS["bcj-lzma2"], encoded=False),
    _write({"data.pkl": _PAYLOAD}, _FILTERS["deflate"]),
]


def _never_clean(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "m.7z"
    path.write_bytes(data)
    start = time.monotonic()
    records = scan_file(path, limits=ScanLimits(timeout_s=5))
    assert time.monotonic() - start < 10
    assert records[0].format == "7z"
    assert any(r.verdict in ("suspicious", "unsafe") for r in records), [r.to_dict() for r in records]


@_SETTINGS
@given(
    victim=st.sampled_from(_VICTIMS),
    edits=st.lists(
        st.tuples(st.integers(min_value=6), st.integers(min_value=1, max_value=255)), min_size=1, max_size=4
    ),
)
def test_mutated_archives_never_crash_and_are_never_clean(
    tmp_path: Path, victim: bytes, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(victim)
    for at, xor in edits:
        data[6 + at % (len(data) - 6)] ^= xor  # the signature itself stays: the file is still a 7z
    _never_clean(tmp_path, bytes(data))


@_SETTINGS
@given(victim=st.sampled_from(_VICTIMS), cut=st.integers(min_value=6), tail=st.binary(max_size=64))
def test_truncated_or_garbage_archives_never_crash_and_are_never_clean(
    tmp_path: Path, victim: bytes, cut: int, tail: bytes
) -> None:
    _never_clean(tmp_path, victim[: 6 + cut % (len(victim) - 6)])
    _never_clean(tmp_path, sz.SIGNATURE + tail)
