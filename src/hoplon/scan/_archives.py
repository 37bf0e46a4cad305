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
    from hoplon.scan import _sevenzip as sz
    from hoplon.scan._sevenzip_coders import FolderReader

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


class _CappedWriter:
    """One 7z member as py7zr unpacks it: spooled, counted against the archive's limits as it is written."""

    def __init__(self, ctx: Context, packed: int) -> None:
        self.ctx = ctx
        self.packed = packed
        self.out = spool()
        self.written = 0

    def write(self, data: bytes | bytearray) -> int:
        self.written += len(data)
        _account(self.ctx, len(data), packed=self.packed)
        return self.out.write(data)

    def read(self, size: int | None = None) -> bytes:
        return self.out.read(-1 if size is None else size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.out.seek(offset, whence)

    def flush(self) -> None:
        self.out.flush()

    def size(self) -> int:
        return self.written

    def close(self) -> None:
        """py7zr calls this when the member is complete; the spool stays open until it is scanned."""


_NULLIFAI: Final = "ReversingLabs nullifAI (2025)"


def scan_7z(ctx: Context, name: str, stream: BinaryIO, size: int, depth: int) -> tuple[str, list[Finding]]:
    """Unpack a 7z archive member by member and scan each as ``name!member``.

    The reader is hoplon's own (:mod:`hoplon.scan._sevenzip`, standard library only): headers are parsed
    with bounds, members are unpacked into bounded spools, never onto the file system; the declared sizes
    are checked before anything is unpacked and the real ones while it is. Codecs it does not decode (PPMd,
    BCJ2, Deflate64, ...) go to py7zr (the ``scan`` extra) when it is installed. Encrypted archives,
    undecodable and unreadable archives are findings: a 7z whose content was not inspected is never clean
    (malicious PyTorch models have been shipped this way: ReversingLabs' nullifAI, 2025).
    """
    from io import BytesIO

    from hoplon.scan import _sevenzip as sz  # only when a 7z is met
    from hoplon.scan._sevenzip_coders import check_folder, open_folder

    found: list[Finding] = []
    try:
        archive = sz.read_archive(stream, size, ctx.limits, ctx.out_of_time)
        for folder in archive.folders:
            check_folder(folder)
    except sz.Encrypted:
        found.append(_encrypted_7z(name))
        return "7z", found
    except sz.Unsupported as exc:
        return _scan_7z_py7zr(ctx, name, stream, size, depth, str(exc))
    except sz.OverLimit as exc:
        found.append(
            _archive_finding(
                "over-limit",
                Severity.HIGH,
                name,
                f"The 7z archive declares {exc} (limit {ctx.limits.max_archive_entries} entries, "
                f"{ctx.limits.max_header_bytes} header bytes); nothing was unpacked.",
            )
        )
        return "7z", found
    except TimeoutError as exc:
        found.append(_archive_finding("bomb", Severity.HIGH, name, f"Unpacking stopped: {exc}."))
        return "7z", found
    except sz.SevenZipError as exc:
        found.append(_unreadable_7z(name, str(exc)))
        return "7z", found
    for part in archive.header_crc_errors:
        found.append(
            _archive_finding(
                "bad-crc",
                Severity.HIGH,
                name,
                f"The 7z {part} CRC is wrong; 7-Zip refuses such an archive but other readers may not. It was "
                "read anyway.",
                part=part,
            )
        )
    for member in archive.members:
        _check_7z_entry(name, member.name, member.is_link, found)
    declared = archive.declared_size
    if ctx.unpacked_bytes + declared > ctx.limits.max_unpacked_bytes or (
        declared > (1 << 20) and declared > ctx.limits.max_ratio * max(size, 1)
    ):
        found.append(
            _archive_finding(
                "bomb",
                Severity.HIGH,
                name,
                f"The 7z archive declares {declared} unpacked bytes from {size}, over the limits "
                f"({ctx.limits.max_unpacked_bytes} bytes, ratio {ctx.limits.max_ratio:g}); nothing was unpacked.",
            )
        )
        return "7z", found
    for member in archive.members:
        if not member.has_stream and not member.is_dir and not member.is_anti:
            ctx.scan_stream(ctx, f"{name}!{member.name}", BytesIO(), 0, depth + 1)
    for index, folder in enumerate(archive.folders):
        members = [m for m in archive.members if m.folder == index]
        if not members:
            continue
        try:
            reader = open_folder(stream, folder, ctx.out_of_time)
            _unpack_7z_folder(ctx, name, size, reader, folder, members, depth, found)
        except (_Bomb, TimeoutError) as exc:
            found.append(_archive_finding("bomb", Severity.HIGH, name, f"Unpacking stopped: {exc}."))
            return "7z", found
        except (sz.SevenZipError, sz.Unsupported) as exc:
            found.append(_unreadable_7z(name, str(exc)))
    return "7z", found


def _check_7z_entry(archive: str, entry: str, is_link: bool, found: list[Finding]) -> None:
    if entry.startswith("/") or ".." in entry.split("/") or re.match(r"[A-Za-z]:", entry):
        found.append(
            _archive_finding(
                "path-escape",
                Severity.MEDIUM,
                archive,
                f"The 7z entry {entry!r} would be extracted outside its folder.",
                entry=entry,
            )
        )
    if is_link:
        found.append(
            _archive_finding("link-entry", Severity.MEDIUM, archive, f"The 7z entry {entry!r} is a link.", entry=entry)
        )


def _unpack_7z_folder(
    ctx: Context,
    name: str,
    size: int,
    reader: FolderReader,
    folder: sz.Folder,
    members: list[sz.Member],
    depth: int,
    found: list[Finding],
) -> None:
    """Unpack one folder's members in order, each into a spool, counted against the limits, then scan it."""
    folder_crc = 0
    check_folder = folder.crc is not None and folder.n_substreams != 1
    for member in members:
        with spool() as out:
            left = member.size
            crc = 0
            while left > 0:
                data = reader.read(min(_CHUNK, left))
                if not data:
                    from hoplon.scan._sevenzip import SevenZipError

                    raise SevenZipError("the folder ends before its entries do")
                left -= len(data)
                _account(ctx, len(data), packed=size)
                crc = zlib.crc32(data, crc)
                if check_folder:
                    folder_crc = zlib.crc32(data, folder_crc)
                out.write(data)
            if member.crc is not None and crc != member.crc:
                found.append(_crc_7z(name, member.name, member.crc, crc))
            out.seek(0)
            ctx.scan_stream(ctx, f"{name}!{member.name}", out, member.size, depth + 1)  # type: ignore[arg-type]
    if check_folder and folder.crc is not None and folder_crc != folder.crc:
        found.append(_crc_7z(name, f"folder of {members[0].name}", folder.crc, folder_crc))


def _crc_7z(archive: str, member: str, expected: int, actual: int) -> Finding:
    return _archive_finding(
        "bad-crc",
        Severity.HIGH,
        archive,
        f"The 7z entry {member!r} has a wrong CRC; 7-Zip reports it as corrupt but other loaders may read it. "
        "Its content was scanned anyway.",
        entry=member,
        expected=f"{expected:08x}",
        actual=f"{actual:08x}",
    )


def _encrypted_7z(name: str) -> Finding:
    return _archive_finding(
        "encrypted",
        Severity.HIGH,
        name,
        "An encrypted 7z archive: its content cannot be inspected, so it is not known to be safe.",
        advisory=_NULLIFAI,
    )


def _unreadable_7z(name: str, reason: str) -> Finding:
    return _archive_finding(
        "unreadable-entry",
        Severity.HIGH,
        name,
        f"The 7z archive cannot be unpacked ({reason}); its content was not inspected.",
        advisory=_NULLIFAI,
    )


def _scan_7z_py7zr(
    ctx: Context, name: str, stream: BinaryIO, size: int, depth: int, reason: str
) -> tuple[str, list[Finding]]:
    """The fallback for 7z codecs hoplon's reader does not decode: py7zr (the ``scan`` extra), when installed."""
    found: list[Finding] = []
    advisory = _NULLIFAI
    try:
        import py7zr
        from py7zr.io import Py7zIO, WriterFactory
    except ImportError:
        found.append(
            _archive_finding(
                "unsupported-archive",
                Severity.HIGH,
                name,
                f"A 7z archive, not inspected ({reason}): install hoplon[scan] (py7zr) to unpack it. Until then it "
                "is not known to be safe.",
                advisory=advisory,
            )
        )
        return "7z", found

    writers: dict[str, _CappedWriter] = {}

    class _Factory(WriterFactory):
        def create(self, filename: str) -> Py7zIO:
            writer = _CappedWriter(ctx, size)
            writers[filename] = writer
            return writer  # type: ignore[return-value]

    def unreadable(reason: str) -> tuple[str, list[Finding]]:
        found.append(
            _archive_finding(
                "unreadable-entry",
                Severity.HIGH,
                name,
                f"The 7z archive cannot be unpacked ({reason}); its content was not inspected.",
                advisory=advisory,
            )
        )
        return "7z", found

    stream.seek(0)
    start = stream.read(32)
    if len(start) < 32:
        return unreadable("truncated start header")
    next_offset, next_size = struct.unpack("<QQ", start[12:28])
    if next_size > ctx.limits.max_header_bytes or 32 + next_offset + next_size > size:
        return unreadable(f"its header ({next_size} bytes at {next_offset}) lies outside the file or over the limit")
    try:
        stream.seek(0)
        with py7zr.SevenZipFile(stream, mode="r") as archive:
            if archive.needs_password():
                found.append(
                    _archive_finding(
                        "encrypted",
                        Severity.HIGH,
                        name,
                        "An encrypted 7z archive: its content cannot be inspected, so it is not known to be safe.",
                        advisory=advisory,
                    )
                )
                return "7z", found
            infos = archive.list()
            if len(infos) > ctx.limits.max_archive_entries:
                found.append(
                    _archive_finding(
                        "over-limit",
                        Severity.HIGH,
                        name,
                        f"The 7z archive lists {len(infos)} entries (limit {ctx.limits.max_archive_entries}); "
                        "nothing was unpacked.",
                    )
                )
                return "7z", found
            files = []
            for info in infos:
                entry = str(info.filename)
                if entry.startswith("/") or ".." in entry.replace("\\", "/").split("/"):
                    found.append(
                        _archive_finding(
                            "path-escape",
                            Severity.MEDIUM,
                            name,
                            f"The 7z entry {entry!r} would be extracted outside its folder.",
                            entry=entry,
                        )
                    )
                if getattr(info, "is_symlink", False):
                    found.append(
                        _archive_finding(
                            "link-entry", Severity.MEDIUM, name, f"The 7z entry {entry!r} is a link.", entry=entry
                        )
                    )
                elif not info.is_directory:
                    files.append(entry)
            declared = sum(int(i.uncompressed or 0) for i in infos)
            if ctx.unpacked_bytes + declared > ctx.limits.max_unpacked_bytes:
                found.append(
                    _archive_finding(
                        "bomb",
                        Severity.HIGH,
                        name,
                        f"The 7z archive declares {declared} unpacked bytes, more than the limit "
                        f"({ctx.limits.max_unpacked_bytes}); nothing was unpacked.",
                    )
                )
                return "7z", found
            if files:
                archive.extract(targets=files, factory=_Factory())
    except _Bomb as exc:
        found.append(_archive_finding("bomb", Severity.HIGH, name, f"Unpacking stopped: {exc}."))
        _close_all(writers)
        return "7z", found
    except Exception as exc:  # py7zr raises many types on hostile input; every one means "not inspected"
        _close_all(writers)
        return unreadable(f"{type(exc).__name__}: {exc}")
    try:
        for entry, writer in writers.items():
            writer.out.seek(0)
            ctx.scan_stream(ctx, f"{name}!{entry}", writer.out, writer.written, depth + 1)  # type: ignore[arg-type]
    finally:
        _close_all(writers)
    return "7z", found


def _close_all(writers: dict[str, _CappedWriter]) -> None:
    for writer in writers.values():
        writer.out.close()
