"""The scanner's front door: files, folders and archives in, one :class:`FileRecord` per file or member out.

The format of every file and archive member is recognised from its first bytes (the name only breaks ties
where content cannot: ``saved_model.pb``, Keras ``config.json``). Nothing scanned is imported, executed or
unpickled; heavy libraries (torch, numpy, onnx, h5py) are never imported.
"""

from __future__ import annotations

import logging
import lzma
import os
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from hoplon.core.errors import InputError
from hoplon.core.finding import Finding, Severity
from hoplon.scan._archives import scan_tar, scan_wrapper, scan_zip
from hoplon.scan._context import INTEGRITY, RESOURCE, Context, finding
from hoplon.scan._pickle_scan import scan_pickle_stream
from hoplon.scan._structured import looks_like_onnx, scan_h5, scan_keras_config, scan_onnx, scan_savedmodel
from hoplon.scan._tensors import scan_gguf, scan_npy, scan_safetensors
from hoplon.scan.types import FileRecord, ScanLimits, verdict_of

if TYPE_CHECKING:
    from hoplon.core.report import Report

__all__ = ["fails_policy", "iter_files", "scan_file", "scan_paths", "to_report"]

log = logging.getLogger(__name__)

PICKLE_SUFFIXES: Final = frozenset(
    {".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".data", ".dat", ".joblib", ".sav", ".p", ".pk", ".mar"}
)
_MODEL_SUFFIXES: Final = frozenset({".safetensors", ".gguf", ".onnx", ".npy", ".npz", ".h5", ".hdf5", ".keras"})
_SKIP_DIRS: Final = frozenset({".git", ".hg", ".svn", "__pycache__"})
_HEAD: Final = 512
_CONTAINERS: Final = frozenset({"zip", "tar", "gzip", "bz2", "xz", "zstd", "zlib", "7z", "lz4"})
# what a bug in a format reader can raise; turned into a finding so that a scan fails closed, never crashes
_READER_ERRORS: Final = (
    ValueError,
    OSError,
    EOFError,
    struct.error,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    RecursionError,
    MemoryError,
    OverflowError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
    RuntimeError,
)


def _suffix(name: str) -> str:
    base = name.rsplit("!", 1)[-1].rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


def sniff(head: bytes, name: str, size: int) -> str:
    """The format of a stream from its first bytes (``pickle?`` when only a trial walk can tell)."""
    lower = name.lower()
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return "7z"
    if head[:4] == b"\x04\x22\x4d\x18":
        return "lz4"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if head[:4] == b"GGUF":
        return "gguf"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 or lower.endswith(".safetensors"):
            return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return "pickle"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0 and head[1] in (1, 0x5E, 0x9C, 0xDA):
        return "zlib"
    if lower.endswith(("saved_model.pb", "keras_metadata.pb")):
        return "savedmodel"
    if lower.endswith(".onnx") or looks_like_onnx(head):
        return "onnx"
    if lower.endswith(".json") and head.lstrip()[:1] == b"{":
        return "json"
    return "pickle?"


def _scan_stream(ctx: Context, name: str, stream: BinaryIO, size: int, depth: int) -> None:
    """Scan one stream and append its record (and its members' records, after it) to ``ctx.records``."""
    slot = len(ctx.records)
    ctx.records.append(FileRecord(path=name, format="?", verdict="clean", severity=Severity.INFO))
    start = time.monotonic()
    stream.seek(0)
    head = stream.read(_HEAD)
    fmt = sniff(head, name, size) if size else "empty"
    found: list[Finding] = []
    try:
        if fmt in _CONTAINERS and depth > ctx.limits.max_nesting:
            found.append(
                finding(
                    "scan.archive.nesting",
                    Severity.HIGH,
                    name,
                    f"Archives nested more than {ctx.limits.max_nesting} deep; the inner content was not read.",
                    taxonomy=RESOURCE,
                )
            )
        else:
            fmt, found = _dispatch(ctx, name, stream, size, depth, fmt, head)
            if fmt not in _CONTAINERS | {"pytorch", "npz", "keras", "torchscript"} and _has_zip_tail(stream, size):
                _fmt, inner = scan_zip(ctx, name, stream, size, depth)
                found.append(
                    finding(
                        "scan.archive.polyglot",
                        Severity.MEDIUM,
                        name,
                        f"The file reads as {fmt} and also as a ZIP archive; loaders may pick either.",
                        taxonomy=INTEGRITY,
                    )
                )
                found.extend(inner)
    except _READER_ERRORS as exc:
        log.debug("reader error on %s", name, exc_info=True)
        found.append(
            finding(
                "scan.reader-error",
                Severity.HIGH,
                name,
                f"The {fmt} reader stopped on malformed input ({type(exc).__name__}: {exc}); the file is not "
                "known to be safe.",
                taxonomy=INTEGRITY,
            )
        )
    if ctx.out_of_time() and not any(f.id.endswith(("timeout", "over-limit")) for f in found):
        found.append(
            finding(
                "scan.timeout",
                Severity.HIGH,
                name,
                f"The per-file time limit of {ctx.limits.timeout_s:g} s ran out; the scan is incomplete.",
                taxonomy=RESOURCE,
            )
        )
    if depth > 0 and fmt in ("unknown", "empty") and not found:
        del ctx.records[slot]  # an archive member that is no model format and raised nothing: not worth a row
        return
    ctx.records[slot] = FileRecord(
        path=name,
        format=fmt,
        verdict=verdict_of(found),
        severity=max((f.severity for f in found), default=Severity.INFO),
        findings=tuple(found),
        size_bytes=size,
        duration_s=time.monotonic() - start,
    )


def _has_zip_tail(stream: BinaryIO, size: int) -> bool:
    tail = min(size, 65536 + 22)
    stream.seek(size - tail)
    return b"PK\x05\x06" in stream.read(tail)


def _dispatch(
    ctx: Context, name: str, stream: BinaryIO, size: int, depth: int, fmt: str, head: bytes
) -> tuple[str, list[Finding]]:
    if fmt == "empty":
        return fmt, []
    if fmt == "zip":
        return scan_zip(ctx, name, stream, size, depth)
    if fmt == "tar":
        return scan_tar(ctx, name, stream, size, depth)
    if fmt in ("gzip", "bz2", "xz", "zstd", "7z", "zlib", "lz4"):
        return scan_wrapper(ctx, name, stream, size, depth, fmt)
    if fmt == "npy":
        return scan_npy(ctx, name, stream, size)
    if fmt == "hdf5":
        return scan_h5(ctx, name, stream, size)
    if fmt == "gguf":
        return fmt, scan_gguf(ctx, name, stream, size)
    if fmt == "safetensors":
        return fmt, scan_safetensors(ctx, name, stream, size)
    if fmt == "savedmodel":
        return fmt, scan_savedmodel(ctx, name, stream, size)
    if fmt == "onnx":
        found = scan_onnx(ctx, name, stream, size)
        if _suffix(name) == ".onnx" or not any(f.id == "scan.onnx.malformed" for f in found):
            return fmt, found
        fmt = "pickle?"
    if fmt == "json":
        return _scan_json(name, stream, size)
    stream.seek(0)
    walk, found = scan_pickle_stream(ctx, name, stream, size)
    if fmt == "pickle" or _suffix(name) in PICKLE_SUFFIXES:
        return ("pytorch-legacy" if walk.torch_legacy else "pickle"), found
    dangerous = any(f.severity >= Severity.CRITICAL for f in found)
    complete = walk.n_pickles >= 1 and not walk.issues
    if walk.calls or dangerous or (complete and walk.globals):
        return "pickle", found
    if complete and walk.end == size and walk.n_opcodes > 1:
        return "pickle", found
    if _suffix(name) in _MODEL_SUFFIXES:
        return "unknown", [
            finding(
                "scan.format-mismatch",
                Severity.MEDIUM,
                name,
                f"The name says {_suffix(name)} but the content is no known model format.",
                taxonomy=INTEGRITY,
                remediation="Check where the file came from; a loader chosen by extension may misread it.",
            )
        ]
    return "unknown", []


def _scan_json(name: str, stream: BinaryIO, size: int) -> tuple[str, list[Finding]]:
    import json

    if size > 64 << 20:
        return "json", []
    stream.seek(0)
    try:
        doc = json.loads(stream.read(size).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "json", []
    if isinstance(doc, dict) and ("class_name" in doc or "model_config" in doc) and "config" in json.dumps(doc)[:4096]:
        return "keras-config", scan_keras_config(name, doc)
    return "json", []


def iter_files(path: Path) -> Iterator[Path]:
    """Every regular file under ``path`` (itself if a file), sorted, without entering VCS folders."""
    if path.is_file():
        yield path
        return
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for fname in sorted(files):
            candidate = Path(root) / fname
            if candidate.is_file():
                yield candidate


def scan_file(
    path: str | Path, *, limits: ScanLimits | None = None, display_name: str | None = None, hash_files: bool = False
) -> list[FileRecord]:
    """Scan one file; return its record, then one record per archive member it contains."""
    limits = limits or ScanLimits()
    path = Path(path)
    name = display_name or str(path)
    ctx = Context(limits=limits, scan_stream=_scan_stream)
    ctx.start_clock()
    try:
        size = path.stat().st_size
        with path.open("rb") as raw:
            _scan_stream(ctx, name, raw, size, 0)
    except OSError as exc:
        error = finding(
            "scan.unreadable",
            Severity.HIGH,
            name,
            f"The file cannot be read: {exc.strerror or exc}.",
            taxonomy=INTEGRITY,
            remediation="Check the path and its permissions.",
        )
        return [FileRecord(path=name, format="unknown", verdict="error", severity=Severity.HIGH, findings=(error,))]
    if hash_files and ctx.records:
        first = ctx.records[0]
        ctx.records[0] = FileRecord(
            path=first.path,
            format=first.format,
            verdict=first.verdict,
            severity=first.severity,
            findings=first.findings,
            size_bytes=first.size_bytes,
            sha256=file_sha256(path),
            duration_s=first.duration_s,
        )
    return ctx.records


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def scan_paths(
    paths: Iterable[str | Path], *, limits: ScanLimits | None = None, hash_files: bool = False
) -> list[FileRecord]:
    """Scan files and folders (recursively). Raise :class:`InputError` for a path that does not exist."""
    records: list[FileRecord] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"The path {str(path)!r} does not exist.")
        for file in iter_files(path):
            records.extend(scan_file(file, limits=limits, hash_files=hash_files))
    return records


def fails_policy(records: Sequence[FileRecord], threshold: Severity = Severity.LOW) -> bool:
    """Whether any record has a finding at or above ``threshold``."""
    return any(r.severity >= threshold and r.findings and r.verdict != "clean" for r in records) or any(
        r.severity >= threshold and r.verdict == "error" for r in records
    )


def to_report(records: Sequence[FileRecord], *, command: str = "hoplon scan") -> Report:
    """A ``hoplon.report/v1`` :class:`Report` (``kind="scan"``) with the records under ``results["files"]``."""
    from hoplon.core.report import Asset, Report

    return Report(
        kind="scan",
        command=command,
        assets=tuple(Asset(kind="model-file", name=r.path, digest=r.sha256) for r in records if "!" not in r.path),
        findings=tuple(f for r in records for f in r.findings),
        results={"files": [r.to_dict() for r in records]},
    )
