"""Archives and compressed wrappers: ZIP (read from both the central directory and the local headers),
tar, gzip, bz2, xz, zlib, zstd and 7z. Every member is handed back to the scanner by content.

Archive tricks are findings, not failures: a bad CRC, a local name that differs from the central name,
inconsistent flag bits, entries only present in local headers, unaccounted bytes, duplicate names, too many
entries, decompression bombs and too-deep nesting are all reported, and the content is still scanned.
"""

from __future__ import annotations

import bz2
import lzma
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO, Final

from hoplon.core.finding import Finding, Severity
from hoplon.scan._context import INTEGRITY, RESOURCE, Context, finding
from hoplon.scan._window import spool, view

if TYPE_CHECKING:
    pass

__all__ = ["scan_tar", "scan_wrapper", "scan_zip"]

_LOCAL_SIG: Final = b"PK\x03\x04"
_LOCAL_HEADER: Final = struct.Struct("<4s5H3L2H")
_CHUNK: Final = 1 << 20
_TORCH_STORAGE = re.compile(r"(^|/)data/\d+$")
_TORCH_META = re.compile(r"(^|/)(version|byteorder|\.format_version|\.storage_alignment|\.data/serialization_id)$")


@dataclass(slots=True)
class _Local:
    offset: int
    name: str
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    data_offset: int


def _read_local(stream: BinaryIO, offset: int, size: int, *, strict: bool = True) -> _Local | None:
    if offset < 0 or offset + _LOCAL_HEADER.size > size:
        return None
    stream.seek(offset)
    raw = stream.read(_LOCAL_HEADER.size)
    if len(raw) != _LOCAL_HEADER.size:
        return None
    sig, _ver, flags, method, _t, _d, crc, csize, usize, nlen, elen = _LOCAL_HEADER.unpack(raw)
    if sig != _LOCAL_SIG and strict:
        return None
    name_raw = stream.read(nlen)
    name = name_raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
    return _Local(offset, name, flags, method, crc, csize, usize, offset + _LOCAL_HEADER.size + nlen + elen)


class _Bomb(Exception):
    pass


def _account(ctx: Context, n: int, *, packed: int, unpacked: int | None = None) -> None:
    """Count ``n`` freshly unpacked bytes against the limits; raise :class:`_Bomb` past one.

    The ratio compares ``unpacked`` (default: everything unpacked from this file so far) with ``packed``
    once more than 1 MiB has come out.
    """
    ctx.unpacked_bytes += n
    limits = ctx.limits
    if ctx.unpacked_bytes > limits.max_unpacked_bytes:
        raise _Bomb(f"more than {limits.max_unpacked_bytes} bytes unpacked")
    out = ctx.unpacked_bytes if unpacked is None else unpacked
    if out > (1 << 20) and out > limits.max_ratio * max(packed, 1):
        raise _Bomb(f"decompression ratio above {limits.max_ratio:g}")
    if ctx.out_of_time():
        raise _Bomb("time limit reached while unpacking")


def _decompressor(method: int, head: bytes) -> tuple[Callable[[bytes], bytes], int] | None:
    """A chunk decompressor for a ZIP method, and how many leading bytes it consumes itself."""
    if method == 0:
        return (lambda b: b), 0
    if method == 8:
        return zlib.decompressobj(-15).decompress, 0
    if method == 12:
        return bz2.BZ2Decompressor().decompress, 0
    if method == 14:
        if len(head) < 4:
            return None
        (psize,) = struct.unpack("<H", head[2:4])
        try:
            filt = lzma._decode_filter_properties(lzma.FILTER_LZMA1, head[4 : 4 + psize])  # type: ignore[attr-defined]
        except lzma.LZMAError:
            return None
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt]).decompress, 4 + psize
    if method == 93:
        try:
            import zstandard
        except ImportError:
            return None
        return zstandard.ZstdDecompressor().decompressobj().decompress, 0
    return None


def _unpack(ctx: Context, stream: BinaryIO, start: int, csize: int, method: int, out: IO[bytes]) -> tuple[int, int]:
    """Decompress ``csize`` bytes at ``start`` into ``out``; return ``(size, crc32)``. Raises on bombs."""
    stream.seek(start)
    head = stream.read(min(csize, 64))
    made = _decompressor(method, head)
    if made is None:
        raise ValueError(f"unsupported or corrupt compression method {method}")
    decompress, skip = made
    stream.seek(start + skip)
    remaining = csize - skip
    written = 0
    crc = 0
    while remaining > 0:
        block = stream.read(min(_CHUNK, remaining))
        if not block:
            raise ValueError("member data is truncated")
        remaining -= len(block)
        data = decompress(block)
        written += len(data)
        _account(ctx, len(data), packed=csize, unpacked=written)
        crc = zlib.crc32(data, crc)
        out.write(data)
    return written, crc


def _archive_finding(id: str, severity: Severity, asset: str, summary: str, **evidence: object) -> Finding:
    tax = RESOURCE if id.endswith(("bomb", "over-limit", "nesting")) else INTEGRITY
    return finding(
        f"scan.archive.{id}",
        severity,
        asset,
        summary,
        evidence=evidence,
        taxonomy=tax,
        remediation="Archive structure that loaders and scanners read differently can hide content; rebuild "
        "the archive from a trusted source.",
    )


def scan_zip(ctx: Context, name: str, stream: BinaryIO, size: int, depth: int) -> tuple[str, list[Finding]]:
    """Scan a ZIP archive; members are scanned as ``name!member``. Returns the archive's format and findings."""
    found: list[Finding] = []
    central: list[zipfile.ZipInfo] = []
    try:
        stream.seek(0)
        with zipfile.ZipFile(stream) as archive:
            central = archive.infolist()
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        ValueError,
        EOFError,
        struct.error,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        found.append(
            _archive_finding(
                "bad-central-directory",
                Severity.HIGH,
                name,
                f"The ZIP central directory cannot be read ({exc}); entries were recovered from local headers.",
                error=str(exc),
            )
        )
    names = [info.filename for info in central]
    fmt = _zip_format(names)
    if len(central) > ctx.limits.max_archive_entries:
        found.append(
            _archive_finding(
                "over-limit",
                Severity.HIGH,
                name,
                f"The archive has {len(central)} entries; only {ctx.limits.max_archive_entries} were scanned.",
                entries=len(central),
            )
        )
        central = central[: ctx.limits.max_archive_entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        found.append(
            _archive_finding(
                "duplicate-names",
                Severity.HIGH,
                name,
                "Several entries share a name; loaders disagree on which one wins.",
                names=dupes[:20],
            )
        )
    seen_offsets: set[int] = set()
    spans: list[tuple[int, int]] = []
    for info in central:
        local = _read_local(stream, info.header_offset, size)
        if local is None:
            found.append(
                _archive_finding(
                    "missing-local-header",
                    Severity.HIGH,
                    name,
                    f"The entry {info.filename!r} points to offset {info.header_offset}, where no local header is.",
                    entry=info.filename,
                )
            )
            # read what is there as if it were a header anyway: a lenient reader might
            local = _read_local(stream, info.header_offset, size, strict=False)
            if local is None or local.data_offset + info.compress_size > size:
                continue
        seen_offsets.add(local.offset)
        if local.name != info.filename:
            found.append(
                _archive_finding(
                    "name-mismatch",
                    Severity.HIGH,
                    name,
                    f"The central directory calls an entry {info.filename!r} but its local header says "
                    f"{local.name!r} (CVE-2025-1944).",
                    central=info.filename,
                    local=local.name,
                    advisory="CVE-2025-1944",
                )
            )
        if (local.flags & 0x1) or (info.flag_bits & 0x1) or (local.flags & ~0x8) != (info.flag_bits & ~0x8):
            found.append(
                _archive_finding(
                    "flag-bits",
                    Severity.HIGH,
                    name,
                    f"The entry {info.filename!r} has the encryption flag set or inconsistent flag bits; some "
                    "readers ignore them (CVE-2025-1945).",
                    entry=info.filename,
                    local_flags=local.flags,
                    central_flags=info.flag_bits,
                    advisory="CVE-2025-1945",
                )
            )
        if local.method != info.compress_type or (
            not local.flags & 0x8 and local.csize not in (info.compress_size, 0xFFFFFFFF)
        ):
            found.append(
                _archive_finding(
                    "header-mismatch",
                    Severity.HIGH,
                    name,
                    f"The entry {info.filename!r} has a different compression method or size in its local header "
                    "than in the central directory; readers that trust one or the other see different data.",
                    entry=info.filename,
                    local_method=local.method,
                    central_method=info.compress_type,
                    local_size=local.csize,
                    central_size=info.compress_size,
                )
            )
        spans.append((local.offset, local.data_offset + info.compress_size))
        is_storage = fmt == "pytorch" and _TORCH_STORAGE.search(info.filename) is not None
        if is_storage or info.is_dir():
            continue
        _scan_member(
            ctx,
            name,
            stream,
            info.filename,
            local.data_offset,
            info.compress_size,
            info.compress_type,
            info.CRC,
            depth,
            found,
        )
    found.extend(_hidden_entries(ctx, name, stream, size, spans, seen_offsets, central, depth))
    return fmt, found


def _scan_member(
    ctx: Context,
    archive: str,
    stream: BinaryIO,
    member: str,
    data_offset: int,
    csize: int,
    method: int,
    crc_expected: int,
    depth: int,
    found: list[Finding],
) -> None:
    asset = f"{archive}!{member}"
    if method == 0:
        # stored: scan in place, check the CRC in a separate streaming pass
        crc = 0
        stream.seek(data_offset)
        remaining = csize
        while remaining > 0 and not ctx.out_of_time():
            block = stream.read(min(_CHUNK, remaining))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            remaining -= len(block)
        if crc != crc_expected:
            found.append(_crc_finding(archive, member, crc_expected, crc))
        ctx.scan_stream(ctx, asset, view(stream, data_offset, csize), csize, depth + 1)
        return
    with spool() as out:
        try:
            usize, crc = _unpack(ctx, stream, data_offset, csize, method, out)
        except _Bomb as exc:
            found.append(
                _archive_finding("bomb", Severity.HIGH, archive, f"Unpacking {member!r} stopped: {exc}.", entry=member)
            )
            return
        except (ValueError, zlib.error, lzma.LZMAError, OSError, EOFError) as exc:
            found.append(
                _archive_finding(
                    "unreadable-entry",
                    Severity.HIGH,
                    archive,
                    f"The entry {member!r} cannot be unpacked ({exc}); its content was not inspected.",
                    entry=member,
                )
            )
            return
        if crc != crc_expected:
            found.append(_crc_finding(archive, member, crc_expected, crc))
        out.seek(0)
        ctx.scan_stream(ctx, asset, out, usize, depth + 1)  # type: ignore[arg-type]


def _crc_finding(archive: str, member: str, expected: int, actual: int) -> Finding:
    return _archive_finding(
        "bad-crc",
        Severity.HIGH,
        archive,
        f"The entry {member!r} has a wrong CRC; Python's zipfile refuses it but other loaders read it "
        "(CVE-2025-10156). Its content was scanned anyway.",
        entry=member,
        expected=f"{expected:08x}",
        actual=f"{actual:08x}",
        advisory="CVE-2025-10156",
    )


def _hidden_entries(
    ctx: Context,
    name: str,
    stream: BinaryIO,
    size: int,
    spans: list[tuple[int, int]],
    seen: set[int],
    central: list[zipfile.ZipInfo],
    depth: int,
) -> list[Finding]:
    """Local headers the central directory does not list, and bytes no entry accounts for."""
    found: list[Finding] = []
    cd_start = _central_start(stream, size, central)
    region_end = cd_start if cd_start is not None else size
    # search every byte range no listed entry covers (before, between and after the entries)
    gaps: list[tuple[int, int]] = []
    pos = 0
    for start, end in sorted(spans):
        if start > pos:
            gaps.append((pos, start))
        pos = max(pos, end)
    if region_end > pos:
        gaps.append((pos, region_end))
    for start, end in gaps:
        # data descriptors (12-24 bytes) legitimately follow an entry's data; no header fits in 24 bytes
        if end - start <= 24:
            continue
        hits = _find_signatures(stream, start, end, ctx)
        new = [h for h in hits if h not in seen]
        if not new:
            if end - start > 24:
                found.append(
                    _archive_finding(
                        "unaccounted-bytes",
                        Severity.MEDIUM,
                        name,
                        f"{end - start} bytes at offset {start} belong to no entry.",
                        offset=start,
                        bytes=end - start,
                    )
                )
            continue
        for offset in new[: ctx.limits.max_archive_entries]:
            local = _read_local(stream, offset, size)
            if local is None:
                continue
            seen.add(offset)
            csize = local.csize
            if local.flags & 0x8 or csize == 0xFFFFFFFF:
                csize = end - local.data_offset
            csize = max(0, min(csize, end - local.data_offset))
            found.append(
                _archive_finding(
                    "hidden-entry",
                    Severity.HIGH,
                    name,
                    f"The local header at offset {offset} ({local.name!r}) is not in the central directory; "
                    "readers that walk local headers see it.",
                    entry=local.name,
                    offset=offset,
                )
            )
            _scan_member(
                ctx,
                name,
                stream,
                f"{local.name}@{offset}",
                local.data_offset,
                csize,
                local.method,
                local.crc,
                depth,
                found,
            )
    return found


def _central_start(stream: BinaryIO, size: int, central: list[zipfile.ZipInfo]) -> int | None:
    """Offset where the central directory starts, from the end-of-central-directory records."""
    del central
    tail_len = min(size, 65536 + 22)
    stream.seek(size - tail_len)
    tail = stream.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    eocd = size - tail_len + at
    (cd_size, _cd_offset) = struct.unpack("<LL", tail[at + 12 : at + 20])
    if at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        (z64_offset,) = struct.unpack("<Q", tail[at - 12 : at - 4])
        if 0 <= z64_offset < size - 56:
            stream.seek(z64_offset)
            rec = stream.read(56)
            if rec[:4] == b"PK\x06\x06":
                (cd_size64,) = struct.unpack("<Q", rec[40:48])
                return max(0, int(z64_offset) - int(cd_size64))
        return None
    return max(0, eocd - int(cd_size))


def _find_signatures(stream: BinaryIO, start: int, end: int, ctx: Context) -> list[int]:
    hits: list[int] = []
    pos = start
    stream.seek(start)
    carry = b""
    while pos < end and not ctx.out_of_time():
        block = stream.read(min(_CHUNK, end - pos))
        if not block:
            break
        data = carry + block
        base = pos - len(carry)
        i = data.find(_LOCAL_SIG)
        while i >= 0:
            hits.append(base + i)
            i = data.find(_LOCAL_SIG, i + 1)
        carry = data[-3:]
        pos += len(block)
    return sorted(set(hits))


def _zip_format(names: list[str]) -> str:
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        if any("/code/" in n or n.startswith("code/") for n in names) and any(
            n.endswith("constants.pkl") for n in names
        ):
            return "torchscript"
        return "pytorch"
    if "config.json" in names and any(n.endswith(".weights.h5") or n == "model.weights.h5" for n in names):
        return "keras"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def scan_tar(ctx: Context, name: str, stream: BinaryIO, size: int, depth: int) -> tuple[str, list[Finding]]:
    """Scan a tar archive (including legacy PyTorch tar checkpoints) member by member."""
    import tarfile  # only when a tar is met: it is slow to import

    found: list[Finding] = []
    stream.seek(0)
    count = 0
    members: list[str] = []
    try:
        with tarfile.open(fileobj=stream, mode="r:") as archive:
            for member in archive:
                count += 1
                if count > ctx.limits.max_archive_entries:
                    found.append(
                        _archive_finding(
                            "over-limit", Severity.HIGH, name, "Too many tar entries; the rest were not read."
                        )
                    )
                    break
                if ctx.out_of_time():
                    found.append(_archive_finding("over-limit", Severity.HIGH, name, "Time limit reached in the tar."))
                    break
                members.append(member.name)
                if member.name.startswith("/") or ".." in member.name.split("/"):
                    found.append(
                        _archive_finding(
                            "path-escape",
                            Severity.MEDIUM,
                            name,
                            f"The tar entry {member.name!r} would be extracted outside its folder.",
                            entry=member.name,
                        )
                    )
                if member.issym() or member.islnk():
                    found.append(
                        _archive_finding(
                            "link-entry",
                            Severity.MEDIUM,
                            name,
                            f"The tar entry {member.name!r} is a link to {member.linkname!r}.",
                            entry=member.name,
                        )
                    )
                if not member.isfile():
                    continue
                ctx.scan_stream(
                    ctx, f"{name}!{member.name}", view(stream, member.offset_data, member.size), member.size, depth + 1
                )
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        found.append(
            _archive_finding("unreadable-entry", Severity.HIGH, name, f"The tar archive cannot be read fully ({exc}).")
        )
    legacy = {"sys_info_pk", "pickle", "storages", "tensors"}
    fmt = "pytorch-tar" if legacy & {m.rsplit("/", 1)[-1] for m in members} else "tar"
    return fmt, found


_WRAPPERS: Final = {"gzip", "bz2", "xz", "zlib", "zstd"}


def scan_wrapper(
    ctx: Context, name: str, stream: BinaryIO, size: int, depth: int, kind: str
) -> tuple[str, list[Finding]]:
    """Unpack a wrapper (gzip, bz2, xz, zlib, zstd, lz4; 7z through :func:`scan_7z`) and scan what is inside."""
    if kind == "7z":
        from hoplon.scan._archives_7z import scan_7z  # here: that module imports this one

        return scan_7z(ctx, name, stream, size, depth)
    found: list[Finding] = []
    inner = _inner_name(name, kind)
    with spool() as out:
        try:
            usize = _unwrap(ctx, stream, size, kind, out)
        except _Bomb as exc:
            found.append(_archive_finding("bomb", Severity.HIGH, name, f"Unpacking stopped: {exc}."))
            return kind, found
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, ImportError) as exc:
            found.append(
                _archive_finding(
                    "unreadable-entry",
                    Severity.HIGH,
                    name,
                    f"The {kind} stream cannot be unpacked ({exc}); its content was not inspected.",
                )
            )
            return kind, found
        out.seek(0)
        ctx.scan_stream(ctx, f"{name}!{inner}", out, usize, depth + 1)  # type: ignore[arg-type]
    return kind, found


def _inner_name(name: str, kind: str) -> str:
    base = name.rsplit("!", 1)[-1].rsplit("/", 1)[-1]
    for suffix in (".gz", ".gzip", ".bz2", ".xz", ".zst", ".zstd", ".z", ".zlib"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)] or "content"
    return base or "content"


def _unwrap(ctx: Context, stream: BinaryIO, size: int, kind: str, out: IO[bytes]) -> int:
    if kind == "gzip":
        d: object = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif kind == "zlib":
        d = zlib.decompressobj()
    elif kind == "bz2":
        d = bz2.BZ2Decompressor()
    elif kind == "xz":
        d = lzma.LZMADecompressor()
    elif kind == "lz4":
        import lz4.frame  # type: ignore[import-not-found]  # optional: without it, reported, not passed

        d = lz4.frame.LZ4FrameDecompressor()
    else:
        import zstandard

        d = zstandard.ZstdDecompressor().decompressobj()
    stream.seek(0)
    written = 0
    while True:
        block = stream.read(_CHUNK)
        if not block:
            break
        data = d.decompress(block)  # type: ignore[attr-defined]
        written += len(data)
        _account(ctx, len(data), packed=size, unpacked=written)
        out.write(data)
        if getattr(d, "eof", False):
            break
    return written
