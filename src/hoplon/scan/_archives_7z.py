"""7z archives: unpacked by hoplon's own bounded reader (:mod:`hoplon.scan._sevenzip`), py7zr only for
codecs it does not decode, every member handed back to the scanner by content. Bad CRCs, encryption,
links and entries that leave their folder are findings; the content is still scanned.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import TYPE_CHECKING, BinaryIO, Final

from hoplon.core.finding import Finding, Severity
from hoplon.scan._context import Context
from hoplon.scan._window import spool

if TYPE_CHECKING:
    from hoplon.scan import _sevenzip as sz
    from hoplon.scan._sevenzip_coders import FolderReader

from hoplon.scan._archives import _CHUNK, _account, _archive_finding, _Bomb

__all__ = ["scan_7z"]


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
