"""Archive tricks are findings, and what they hide is still scanned."""

from __future__ import annotations

import io
import lzma
import tarfile
import zipfile
import zlib

import pytest

from hoplon.scan import ScanLimits
from tests.scan import builders as b
from tests.scan.conftest import ScanBytes


def _ids(records) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.id for r in records for f in r.findings}


def test_member_records_are_named_archive_bang_member(scan_bytes: ScanBytes) -> None:
    records = scan_bytes(b.torch_zip(b.call("os", "system", "id")), "model.pt")
    assert records[0].format == "pytorch"
    member = next(r for r in records if r.path.endswith("!archive/data.pkl"))
    assert member.verdict == "unsafe" and member.format == "pickle"
    assert not any(r.path.endswith("data/0") for r in records)  # raw storages are not pickles


def test_entry_only_in_local_headers_is_found(scan_bytes: ScanBytes) -> None:
    hidden = io.BytesIO()
    with zipfile.ZipFile(hidden, "w") as z:
        z.writestr("archive/evil.pkl", b.call("os", "system", "id"))
    hidden_entry = hidden.getvalue()[: hidden.getvalue().index(b"PK\x01\x02")]
    clean = b.torch_zip(b.benign())
    # prepend the hidden local entry: the central directory (with shifted offsets) never mentions it
    data = hidden_entry + clean
    records = scan_bytes(data, "model.pt")
    assert "scan.archive.hidden-entry" in _ids(records)
    assert any(r.verdict == "unsafe" for r in records)


def test_unaccounted_bytes_are_reported(scan_bytes: ScanBytes) -> None:
    data = b"#" * 100 + b.torch_zip(b.call("os", "system", "id"))
    records = scan_bytes(data, "model.pt")
    assert {"scan.archive.unaccounted-bytes", "scan.archive.polyglot"} <= _ids(records)
    assert any(r.verdict == "unsafe" for r in records)


def test_broken_central_directory_falls_back_to_local_headers(scan_bytes: ScanBytes) -> None:
    data = b.torch_zip(b.call("os", "system", "id"))
    cut = data[: data.index(b"PK\x01\x02")]  # no central directory at all
    records = scan_bytes(cut, "model.pt")
    assert "scan.archive.bad-central-directory" in _ids(records)
    assert any(r.verdict == "unsafe" for r in records)


def test_duplicate_names(scan_bytes: ScanBytes) -> None:
    buf = io.BytesIO()
    with pytest.warns(UserWarning), zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b.benign())
        z.writestr("archive/data.pkl", b.call("os", "system", "id"))
    records = scan_bytes(buf.getvalue(), "model.pt")
    assert "scan.archive.duplicate-names" in _ids(records)
    assert any(r.verdict == "unsafe" for r in records)


def test_decompression_bomb_is_stopped(scan_bytes: ScanBytes) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.bin", b"\x00" * (64 << 20))
    records = scan_bytes(buf.getvalue(), "bomb.zip", limits=ScanLimits(max_ratio=100))
    assert "scan.archive.bomb" in _ids(records)
    assert records[0].verdict == "suspicious"


def test_nesting_limit(scan_bytes: ScanBytes) -> None:
    data = b.call("os", "system", "id")
    for _ in range(4):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("inner.zip", data)
        data = buf.getvalue()
    records = scan_bytes(data, "deep.zip", limits=ScanLimits(max_nesting=2))
    assert "scan.archive.nesting" in _ids(records)
    assert any(r.verdict != "clean" for r in records)


def test_entry_limit(scan_bytes: ScanBytes) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(20):
            z.writestr(f"f{i}.txt", "x")
    records = scan_bytes(buf.getvalue(), "many.zip", limits=ScanLimits(max_archive_entries=5))
    assert "scan.archive.over-limit" in _ids(records)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_compressed_members(scan_bytes: ScanBytes, method: int) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        z.writestr("archive/data.pkl", b.call("os", "system", "id"))
    assert any(r.verdict == "unsafe" for r in scan_bytes(buf.getvalue(), "m.pt"))


def test_tar_members_and_legacy_torch_tar(scan_bytes: ScanBytes) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("sys_info_pk", b.benign()), ("pickle", b.call("os", "system", "id"))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    records = scan_bytes(buf.getvalue(), "old.tar")
    assert records[0].format == "pytorch-tar"
    assert any(r.path.endswith("!pickle") and r.verdict == "unsafe" for r in records)


@pytest.mark.parametrize("kind", ["zlib", "xz", "zstd"])
def test_single_stream_wrappers(scan_bytes: ScanBytes, kind: str) -> None:
    payload = b.call("os", "system", "id")
    if kind == "zlib":
        data = zlib.compress(payload)
    elif kind == "xz":
        data = lzma.compress(payload)
    else:
        zstandard = pytest.importorskip("zstandard")
        data = zstandard.ZstdCompressor().compress(payload)
    records = scan_bytes(data, "model.joblib")
    assert records[0].format == kind
    assert any(r.verdict == "unsafe" for r in records)


def test_corrupt_wrapper_fails_closed(scan_bytes: ScanBytes) -> None:
    records = scan_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 40, "x.gz")
    assert records[0].verdict == "suspicious"


def test_torch_load_from_bytes_scans_the_embedded_checkpoint(scan_bytes: ScanBytes) -> None:
    import pickle

    import torch

    assert all(r.verdict == "clean" for r in scan_bytes(pickle.dumps(torch.arange(3.0)), "t.pkl"))
    evil = (
        b.PROTO2
        + b.glob("torch.storage", "_load_from_bytes")
        + b.MARK
        + b.bbytes(b.torch_zip(b.call("os", "system", "id")))
    )
    records = scan_bytes(evil + b.TUPLE + b.REDUCE + b.STOP, "e.pkl")
    assert any(r.verdict == "unsafe" and "!storage@" in r.path for r in records)


def test_local_and_central_headers_disagreeing_on_method(scan_bytes: ScanBytes) -> None:
    data = bytearray(b.torch_zip(b.call("os", "system", "id")))
    data[8:10] = (8).to_bytes(2, "little")  # the first local header now claims deflate; the directory says stored
    records = scan_bytes(bytes(data), "model.pt")
    assert "scan.archive.header-mismatch" in _ids(records)
    assert any(r.verdict == "unsafe" for r in records)


def _seven_zip(members: dict[str, bytes], password: str | None = None) -> bytes:
    py7zr = pytest.importorskip("py7zr")
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", password=password) as archive:
        for name, data in members.items():
            archive.writestr(data, name)
    return buf.getvalue()


def test_7z_members_are_unpacked_and_scanned(scan_bytes: ScanBytes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = _seven_zip({"archive/data.pkl": b.call("os", "system", "id"), "ok.pkl": b.benign()})
    records = scan_bytes(data, "pytorch_model.bin")
    assert records[0].format == "7z"
    by_member = {r.path.rsplit("!", 1)[-1]: r for r in records[1:]}
    assert by_member["archive/data.pkl"].verdict == "unsafe" and by_member["ok.pkl"].verdict == "clean"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pytorch_model.bin"]  # nothing written to disk


def test_7z_encrypted_bomb_and_escape_fail_closed(scan_bytes: ScanBytes) -> None:
    encrypted = scan_bytes(_seven_zip({"data.pkl": b.benign()}, password="secret"), "enc.7z")
    assert "scan.archive.encrypted" in _ids(encrypted) and encrypted[0].verdict != "clean"
    bomb = scan_bytes(_seven_zip({"zeros.bin": b"\x00" * (8 << 20)}), "bomb.7z")
    assert "scan.archive.bomb" in _ids(bomb)
    small = scan_bytes(
        _seven_zip({"a.pkl": b.benign(), "b.pkl": b.benign()}), "many.7z", limits=ScanLimits(max_archive_entries=1)
    )
    assert "scan.archive.over-limit" in _ids(small)
    assert "scan.archive.path-escape" in _ids(scan_bytes(_seven_zip_escaping(), "escape.7z"))


def _seven_zip_escaping() -> bytes:
    """A 7z whose entry is named ``../evil.pkl`` (py7zr refuses to write one: patch the raw header, re-CRC it)."""
    import struct

    py7zr = pytest.importorskip("py7zr")
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as archive:
        archive.set_encoded_header_mode(False)
        archive.writestr(b.benign(), "aa/evil.pkl")
    data = bytearray(buf.getvalue())
    old, new = "aa/evil.pkl".encode("utf-16-le"), "../evil.pkl".encode("utf-16-le")
    at = data.index(old)
    data[at : at + len(old)] = new
    offset, size, _crc = struct.unpack("<QQI", data[12:32])
    struct.pack_into("<I", data, 28, zlib.crc32(bytes(data[32 + offset : 32 + offset + size])))
    struct.pack_into("<I", data, 8, zlib.crc32(bytes(data[12:32])))
    return bytes(data)
