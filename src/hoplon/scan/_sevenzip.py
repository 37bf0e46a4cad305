"""A bounded 7z reader on the standard library (``lzma``, ``zlib``, ``bz2``), written from 7zFormat.txt.

It parses the signature header, the (possibly encoded) header and the folder/coder graph, and unpacks
single-chain folders: Copy, LZMA, LZMA2, Deflate or BZip2, optionally under BCJ-family and Delta filters.
Every count, size and offset is checked against the file and :class:`~hoplon.scan.types.ScanLimits` before
anything is allocated or decoded. Malformed input raises :class:`SevenZipError`; codecs it does not decode
raise :class:`Unsupported` (the caller may hand the file to py7zr), encryption raises :class:`Encrypted`.
"""

from __future__ import annotations

import lzma
import stat
import struct
import zlib
from collections.abc import Callable
from typing import BinaryIO, Final

from hoplon.scan.types import ScanLimits

__all__ = [
    "Archive",
    "Encrypted",
    "Member",
    "OverLimit",
    "SevenZipError",
    "Unsupported",
    "read_archive",
]

SIGNATURE: Final = b"7z\xbc\xaf\x27\x1c"
_START: Final = 32
_CHUNK: Final = 1 << 20
_MAX_CODERS: Final = 4
_MAX_STREAMS_PER_CODER: Final = 4
_MAX_PROPS: Final = 64
_MAX_HEADER_LEVELS: Final = 4

# property ids
_END, _HEADER, _ARCHIVE_PROPS, _ADDITIONAL, _MAIN, _FILES = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
_PACK_INFO, _UNPACK_INFO, _SUBSTREAMS, _SIZE, _CRC, _FOLDER = 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B
_CODERS_UNPACK_SIZE, _NUM_UNPACK_STREAM, _EMPTY_STREAM, _EMPTY_FILE, _ANTI = 0x0C, 0x0D, 0x0E, 0x0F, 0x10
_NAME, _ATTRIBUTES, _ENCODED_HEADER = 0x11, 0x15, 0x17

# coder ids
_COPY: Final = b"\x00"
_LZMA: Final = b"\x03\x01\x01"
_LZMA2: Final = b"\x21"
_DEFLATE: Final = b"\x04\x01\x08"
_BZIP2: Final = b"\x04\x02\x02"
_AES: Final = b"\x06\xf1\x07\x01"
_DECODERS: Final = frozenset({_COPY, _LZMA, _LZMA2, _DEFLATE, _BZIP2})
_FILTERS: Final = {
    b"\x03": lzma.FILTER_DELTA,
    b"\x04": lzma.FILTER_X86,
    b"\x03\x03\x01\x03": lzma.FILTER_X86,
    b"\x05": lzma.FILTER_POWERPC,
    b"\x03\x03\x02\x05": lzma.FILTER_POWERPC,
    b"\x06": lzma.FILTER_IA64,
    b"\x03\x03\x04\x01": lzma.FILTER_IA64,
    b"\x07": lzma.FILTER_ARM,
    b"\x03\x03\x05\x01": lzma.FILTER_ARM,
    b"\x08": lzma.FILTER_ARMTHUMB,
    b"\x03\x03\x07\x01": lzma.FILTER_ARMTHUMB,
    b"\x09": lzma.FILTER_SPARC,
    b"\x03\x03\x08\x05": lzma.FILTER_SPARC,
}
_DIRECTORY_ATTR: Final = 0x10
_REPARSE_ATTR: Final = 0x400
_UNIX_EXTENSION: Final = 0x8000


class SevenZipError(Exception):
    """The archive is malformed, truncated or inconsistent."""


class Unsupported(Exception):
    """The archive uses a codec or feature this reader does not decode."""


class Encrypted(Exception):
    """The archive (or its header) is AES-encrypted."""


class OverLimit(Exception):
    """The archive declares more entries than the limits allow."""


# plain classes, not dataclasses: this module is imported when a 7z is met, and dataclasses cost milliseconds


class Coder:
    __slots__ = ("method", "n_in", "n_out", "props")

    def __init__(self, method: bytes, n_in: int, n_out: int, props: bytes) -> None:
        self.method, self.n_in, self.n_out, self.props = method, n_in, n_out, props

    def __repr__(self) -> str:
        return f"Coder({self.method.hex()}, in={self.n_in}, out={self.n_out}, props={self.props.hex()})"


class Folder:
    """Coders, their bind pairs and packed streams, and (once the header is read) sizes, CRC and position."""

    __slots__ = ("bind_pairs", "coders", "crc", "n_substreams", "pack_offset", "pack_sizes", "packed", "unpack_sizes")

    def __init__(self, coders: list[Coder], bind_pairs: list[tuple[int, int]], packed: list[int]) -> None:
        self.coders, self.bind_pairs, self.packed = coders, bind_pairs, packed
        self.unpack_sizes: list[int] = []
        self.crc: int | None = None
        self.n_substreams = 1
        self.pack_offset = 0
        self.pack_sizes: list[int] = []

    @property
    def size(self) -> int:
        """The unpacked size of the folder's main (unbound) output stream."""
        bound = {out for _in, out in self.bind_pairs}
        main = [i for i in range(len(self.unpack_sizes)) if i not in bound]
        if len(main) != 1:
            raise SevenZipError("a folder has no single main output stream")
        return self.unpack_sizes[main[0]]


class Member:
    """One entry; with data, ``folder`` is the index of the folder its bytes are in (in member order)."""

    __slots__ = ("crc", "folder", "has_stream", "is_anti", "is_dir", "is_link", "name", "size")

    def __init__(self, name: str) -> None:
        self.name = name
        self.size = 0
        self.crc: int | None = None
        self.has_stream = True
        self.is_dir = False
        self.is_link = False
        self.is_anti = False
        self.folder = -1

    def __repr__(self) -> str:
        return f"Member({self.name!r}, size={self.size}, folder={self.folder}, dir={self.is_dir})"


class Archive:
    __slots__ = ("folders", "header_crc_errors", "members")

    def __init__(self, members: list[Member], folders: list[Folder], header_crc_errors: list[str]) -> None:
        self.members, self.folders = members, folders
        #: start header or next-header CRC mismatches (the header was parsed anyway)
        self.header_crc_errors = header_crc_errors

    @property
    def declared_size(self) -> int:
        return sum(f.size for f in self.folders)


class _Buf:
    """A bounded cursor over header bytes: every read past the end is a :class:`SevenZipError`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise SevenZipError("the header ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining():
            raise SevenZipError(f"a header field of {n} bytes runs past the header's end")
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return value

    def number(self) -> int:
        """7z's variable-length NUMBER: the leading 1-bits of the first byte say how many bytes follow."""
        first = self.byte()
        mask = 0x80
        value = 0
        for i in range(8):
            if not first & mask:
                return value | ((first & (mask - 1)) << (8 * i))
            value |= self.byte() << (8 * i)
            mask >>= 1
        return value

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def count(self, cap: int, what: str) -> int:
        """A NUMBER used as an item count: at most ``cap``, and at most what the remaining header could hold."""
        n = self.number()
        if n > cap:
            raise OverLimit(f"{n} {what}")
        if n > 8 * self.remaining() + 8:
            raise SevenZipError(f"{n} {what} cannot fit in the header")
        return n

    def bits(self, n: int) -> list[bool]:
        raw = self.take((n + 7) // 8)
        return [bool(raw[i >> 3] & (0x80 >> (i & 7))) for i in range(n)]

    def defined(self, n: int) -> list[bool]:
        """An "all are defined" byte, else a bit vector."""
        return [True] * n if self.byte() else self.bits(n)


def read_archive(
    stream: BinaryIO, size: int, limits: ScanLimits, out_of_time: Callable[[], bool] | None = None
) -> Archive:
    """Parse the 7z headers of ``stream`` (``size`` bytes); nothing is unpacked but an encoded header."""
    clock = out_of_time or (lambda: False)
    stream.seek(0)
    start = stream.read(_START)
    if len(start) < _START or start[:6] != SIGNATURE:
        raise SevenZipError("truncated or missing signature header")
    errors: list[str] = []
    if start[6] != 0:
        raise Unsupported(f"7z format version {start[6]}.{start[7]}")
    (start_crc,) = struct.unpack_from("<I", start, 8)
    if zlib.crc32(start[12:32]) != start_crc:
        errors.append("start header")
    next_offset, next_size, next_crc = struct.unpack_from("<QQI", start, 12)
    if next_size == 0:
        return Archive([], [], errors)
    if next_size > limits.max_header_bytes:
        raise OverLimit(f"a {next_size}-byte header (limit {limits.max_header_bytes})")
    if _START + next_offset + next_size > size:
        raise SevenZipError(f"the header ({next_size} bytes at {next_offset}) lies outside the file")
    stream.seek(_START + next_offset)
    raw = stream.read(next_size)
    if len(raw) != next_size:
        raise SevenZipError("the header is truncated")
    if zlib.crc32(raw) != next_crc:
        errors.append("header")
    for _level in range(_MAX_HEADER_LEVELS):
        buf = _Buf(raw)
        kind = buf.byte()
        if kind == _HEADER:
            folders, members = _header(buf, limits, size)
            return Archive(members, folders, errors)
        if kind != _ENCODED_HEADER:
            raise SevenZipError(f"unknown header type {kind:#x}")
        folders, _substreams = _streams_info(buf, limits, size)
        if len(folders) != 1:
            raise SevenZipError("an encoded header must be one folder")
        folder = folders[0]
        if folder.size > limits.max_header_bytes:
            raise OverLimit(f"a {folder.size}-byte encoded header (limit {limits.max_header_bytes})")
        from hoplon.scan._sevenzip_coders import open_folder  # here: that module imports this one

        reader = open_folder(stream, folder, clock)
        parts: list[bytes] = []
        while chunk := reader.read(_CHUNK):
            parts.append(chunk)
        raw = b"".join(parts)
        if len(raw) != folder.size:
            raise SevenZipError("the encoded header is truncated")
        if folder.crc is not None and zlib.crc32(raw) != folder.crc:
            errors.append("encoded header")
    raise SevenZipError("too many levels of encoded headers")


def _header(buf: _Buf, limits: ScanLimits, size: int) -> tuple[list[Folder], list[Member]]:
    folders: list[Folder] = []
    substreams: list[tuple[int, int | None]] = []
    members: list[Member] = []
    kind = buf.byte()
    if kind == _ARCHIVE_PROPS:
        while buf.byte() != _END:
            buf.take(buf.number())
        kind = buf.byte()
    if kind == _ADDITIONAL:
        raise Unsupported("additional header streams")
    if kind == _MAIN:
        folders, substreams = _streams_info(buf, limits, size)
        kind = buf.byte()
    if kind == _FILES:
        members = _files_info(buf, limits)
        kind = buf.byte()
    if kind != _END:
        raise SevenZipError(f"unexpected property {kind:#x} in the header")
    _assign_streams(members, folders, substreams)
    return folders, members


def _streams_info(buf: _Buf, limits: ScanLimits, size: int) -> tuple[list[Folder], list[tuple[int, int | None]]]:
    """PackInfo, UnpackInfo and SubStreamsInfo; returns the folders and each substream's ``(size, crc)``."""
    cap = limits.max_archive_entries
    pack_pos = 0
    pack_sizes: list[int] = []
    folders: list[Folder] = []
    kind = buf.byte()
    if kind == _PACK_INFO:
        pack_pos = buf.number()
        n_pack = buf.count(cap, "packed streams")
        kind = buf.byte()
        if kind == _SIZE:
            pack_sizes = [buf.number() for _ in range(n_pack)]
            kind = buf.byte()
        elif n_pack:
            raise SevenZipError("packed streams without sizes")
        if kind == _CRC:
            _digests(buf, n_pack)
            kind = buf.byte()
        if kind != _END:
            raise SevenZipError(f"unexpected property {kind:#x} in the pack info")
        if pack_pos > size or _START + pack_pos + sum(pack_sizes) > size:
            raise SevenZipError("packed streams lie outside the file")
        kind = buf.byte()
    if kind == _UNPACK_INFO:
        folders = _unpack_info(buf, cap)
        kind = buf.byte()
    _place_packs(folders, pack_pos, pack_sizes)
    substreams = [(f.size, f.crc) for f in folders]
    if kind == _SUBSTREAMS:
        substreams = _substreams_info(buf, folders, cap)
        kind = buf.byte()
    if kind != _END:
        raise SevenZipError(f"unexpected property {kind:#x} in the streams info")
    return folders, substreams


def _digests(buf: _Buf, n: int) -> list[int | None]:
    return [buf.uint32() if d else None for d in buf.defined(n)]


def _unpack_info(buf: _Buf, cap: int) -> list[Folder]:
    if buf.byte() != _FOLDER:
        raise SevenZipError("the unpack info has no folders")
    n_folders = buf.count(cap, "folders")
    if buf.byte():
        raise Unsupported("folders stored outside the header")
    folders = [_folder(buf) for _ in range(n_folders)]
    if buf.byte() != _CODERS_UNPACK_SIZE:
        raise SevenZipError("the unpack info has no sizes")
    for folder in folders:
        folder.unpack_sizes = [buf.number() for _ in range(sum(c.n_out for c in folder.coders))]
    kind = buf.byte()
    if kind == _CRC:
        for folder, crc in zip(folders, _digests(buf, n_folders), strict=True):
            folder.crc = crc
        kind = buf.byte()
    if kind != _END:
        raise SevenZipError(f"unexpected property {kind:#x} in the unpack info")
    return folders


def _folder(buf: _Buf) -> Folder:
    n_coders = buf.number()
    if not 1 <= n_coders <= _MAX_CODERS:
        raise SevenZipError(f"a folder with {n_coders} coders")
    coders: list[Coder] = []
    for _ in range(n_coders):
        flags = buf.byte()
        if flags & 0x80:
            raise SevenZipError("alternative coder methods")
        method = buf.take(flags & 0x0F)
        n_in = n_out = 1
        if flags & 0x10:
            n_in, n_out = buf.number(), buf.number()
            if not (1 <= n_in <= _MAX_STREAMS_PER_CODER and 1 <= n_out <= _MAX_STREAMS_PER_CODER):
                raise SevenZipError(f"a coder with {n_in} inputs and {n_out} outputs")
        props = b""
        if flags & 0x20:
            n_props = buf.number()
            if n_props > _MAX_PROPS:
                raise SevenZipError(f"coder properties of {n_props} bytes")
            props = buf.take(n_props)
        coders.append(Coder(method, n_in, n_out, props))
    total_in = sum(c.n_in for c in coders)
    total_out = sum(c.n_out for c in coders)
    bind_pairs: list[tuple[int, int]] = []
    for _ in range(total_out - 1):
        pair = (buf.number(), buf.number())
        if pair[0] >= total_in or pair[1] >= total_out:
            raise SevenZipError("a bind pair points to no stream")
        bind_pairs.append(pair)
    n_packed = total_in - len(bind_pairs)
    if n_packed < 1:
        raise SevenZipError("a folder with no packed stream")
    if n_packed == 1:
        bound_in = {i for i, _o in bind_pairs}
        packed = [i for i in range(total_in) if i not in bound_in]
        if len(packed) != 1:
            raise SevenZipError("a folder whose bind pairs leave no single packed stream")
    else:
        packed = [buf.number() for _ in range(n_packed)]
        if any(p >= total_in for p in packed):
            raise SevenZipError("a packed stream index points to no input")
    return Folder(coders, bind_pairs, packed)


def _place_packs(folders: list[Folder], pack_pos: int, pack_sizes: list[int]) -> None:
    """Give each folder the file offset and sizes of its packed streams (they follow each other in order)."""
    offset = _START + pack_pos
    index = 0
    for folder in folders:
        n = len(folder.packed)
        if index + n > len(pack_sizes):
            raise SevenZipError("folders use more packed streams than the archive has")
        folder.pack_offset = offset
        folder.pack_sizes = pack_sizes[index : index + n]
        offset += sum(folder.pack_sizes)
        index += n


def _substreams_info(buf: _Buf, folders: list[Folder], cap: int) -> list[tuple[int, int | None]]:
    kind = buf.byte()
    if kind == _NUM_UNPACK_STREAM:
        total = 0
        for folder in folders:
            folder.n_substreams = buf.count(cap, "streams in a folder")
            total += folder.n_substreams
            if total > cap:
                raise OverLimit(f"{total} streams")
        kind = buf.byte()
    sizes: list[list[int]] = []
    for folder in folders:
        if folder.n_substreams == 0:
            sizes.append([])
            continue
        parts = []
        if folder.n_substreams > 1:
            if kind != _SIZE:
                raise SevenZipError("a folder with several streams has no stream sizes")
            parts = [buf.number() for _ in range(folder.n_substreams - 1)]
        rest = folder.size - sum(parts)
        if rest < 0:
            raise SevenZipError("stream sizes add up to more than their folder")
        sizes.append([*parts, rest])
    if kind == _SIZE:
        kind = buf.byte()
    unknown = sum(f.n_substreams for f in folders if not (f.n_substreams == 1 and f.crc is not None))
    digests: list[int | None] = [None] * unknown
    if kind == _CRC:
        digests = _digests(buf, unknown)
        kind = buf.byte()
    if kind != _END:
        raise SevenZipError(f"unexpected property {kind:#x} in the substreams info")
    result: list[tuple[int, int | None]] = []
    at = 0
    for folder, parts in zip(folders, sizes, strict=True):
        if folder.n_substreams == 1 and folder.crc is not None:
            result.append((parts[0], folder.crc))
            continue
        for part in parts:
            result.append((part, digests[at]))
            at += 1
    return result


def _files_info(buf: _Buf, limits: ScanLimits) -> list[Member]:
    n = buf.count(limits.max_archive_entries, "entries")
    empty_stream = [False] * n
    empty_file: list[bool] = []
    anti: list[bool] = []
    names: list[str] = []
    attributes: list[int | None] = [None] * n
    while (kind := buf.byte()) != _END:
        prop = _Buf(buf.take(buf.number()))
        if kind == _EMPTY_STREAM:
            empty_stream = prop.bits(n)
        elif kind == _EMPTY_FILE:
            empty_file = prop.bits(sum(empty_stream))
        elif kind == _ANTI:
            anti = prop.bits(sum(empty_stream))
        elif kind == _NAME:
            if prop.byte():
                raise Unsupported("names stored outside the header")
            raw = prop.take(prop.remaining())
            if len(raw) % 2:
                raise SevenZipError("names are not UTF-16")
            names = raw.decode("utf-16-le", errors="replace").split("\x00")
            if len(names) != n + 1 or names[-1]:
                raise SevenZipError(f"{len(names) - 1} names for {n} entries")
        elif kind == _ATTRIBUTES:
            defined = prop.defined(n)
            if prop.byte():
                raise Unsupported("attributes stored outside the header")
            attributes = [prop.uint32() if d else None for d in defined]
        # times, start positions, comments and padding (kDummy) have nothing to check
    members: list[Member] = []
    empty_index = 0
    for i in range(n):
        member = Member(names[i].replace("\\", "/") if names else f"#{i}")
        attr = attributes[i]
        if empty_stream[i]:
            member.has_stream = False
            is_empty_file = empty_index < len(empty_file) and empty_file[empty_index]
            member.is_dir = not is_empty_file
            member.is_anti = empty_index < len(anti) and anti[empty_index]
            empty_index += 1
        if attr is not None:
            member.is_dir = member.is_dir or bool(attr & _DIRECTORY_ATTR)
            unix = attr >> 16 if attr & _UNIX_EXTENSION else 0
            member.is_link = stat.S_ISLNK(unix) or bool(attr & _REPARSE_ATTR)
        members.append(member)
    return members


def _assign_streams(members: list[Member], folders: list[Folder], substreams: list[tuple[int, int | None]]) -> None:
    """Give each member with data its size, CRC and folder, in order."""
    owners = [i for i, f in enumerate(folders) for _ in range(f.n_substreams)]
    with_stream = [m for m in members if m.has_stream]
    if len(with_stream) != len(substreams) or len(owners) != len(substreams):
        raise SevenZipError(f"{len(with_stream)} entries with data for {len(substreams)} streams")
    for member, (size, crc), folder in zip(with_stream, substreams, owners, strict=True):
        member.size, member.crc, member.folder = size, crc, folder
