"""Random, truncated and mutated bytes never crash the scanner, never hang it, and never pass a payload."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoplon.scan import ScanLimits, scan_file
from tests.scan import builders as b

_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
_LIMITS = ScanLimits(timeout_s=5)
_PAYLOAD = b.call("os", "system", "id")
_ZIP = b.torch_zip(_PAYLOAD)


def _scan(tmp_path: Path, data: bytes, name: str) -> list[str]:
    path = tmp_path / name
    path.write_bytes(data)
    start = time.monotonic()
    records = scan_file(path, limits=_LIMITS)
    assert time.monotonic() - start < 10
    assert records and all(r.verdict in ("clean", "suspicious", "unsafe") for r in records)
    return [r.verdict for r in records]


@_SETTINGS
@given(data=st.binary(max_size=4096), name=st.sampled_from(["x.pkl", "x.pt", "x.bin", "x", "x.npy", "x.zip"]))
def test_random_bytes_never_crash(tmp_path: Path, data: bytes, name: str) -> None:
    _scan(tmp_path, data, name)


_MAGIC = [
    b"\x80\x02",
    b"\x80\x04\x95",
    b"PK\x03\x04",
    b"\x93NUMPY\x01\x00",
    b"GGUF\x03\x00\x00\x00",
    b"\x1f\x8b",
    b"\x89HDF\r\n\x1a\n",
    b"\x08\x07\x12",
]


@_SETTINGS
@given(prefix=st.sampled_from(_MAGIC), data=st.binary(max_size=2048))
def test_random_bodies_behind_real_magic_never_crash(tmp_path: Path, prefix: bytes, data: bytes) -> None:
    _scan(tmp_path, prefix + data, "model.bin")


@_SETTINGS
@given(cut=st.integers(min_value=1, max_value=len(_PAYLOAD)))
def test_truncated_payload_is_never_clean(tmp_path: Path, cut: int) -> None:
    assert "clean" not in _scan(tmp_path, _PAYLOAD[:cut], "model.pkl")[:1]


@_SETTINGS
@given(junk=st.binary(min_size=1, max_size=256))
def test_payload_with_junk_after_it_is_unsafe(tmp_path: Path, junk: bytes) -> None:
    assert "unsafe" in _scan(tmp_path, _PAYLOAD + junk, "model.pkl")


@_SETTINGS
@given(pos=st.integers(min_value=0, max_value=len(_ZIP) - 1), byte=st.integers(0, 255))
def test_mutated_torch_zip_never_crashes(tmp_path: Path, pos: int, byte: int) -> None:
    data = bytearray(_ZIP)
    data[pos] = byte
    verdicts = _scan(tmp_path, bytes(data), "model.pt")
    assert set(verdicts) != {"clean"}  # a damaged archive that carried a payload is never passed


def test_zip_slip_names_and_empty_members_do_not_crash(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../evil.pkl", _PAYLOAD)
        z.writestr("empty", b"")
        z.writestr("dir/", b"")
    assert "unsafe" in _scan(tmp_path, buf.getvalue(), "x.zip")
