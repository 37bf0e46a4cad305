"""Decoding the folders of a 7z archive (:mod:`hoplon.scan._sevenzip` reads its headers): one chain of
Copy, LZMA, LZMA2, Deflate or BZip2 under optional BCJ-family and Delta filters, streamed in bounded chunks
with a clock checked between them. Coder properties are parsed here: CPython's private
``lzma._decode_filter_properties`` crashes on BCJ properties.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import BinaryIO, Protocol

from hoplon.scan._sevenzip import (
    _AES,
    _BZIP2,
    _CHUNK,
    _COPY,
    _DECODERS,
    _DEFLATE,
    _FILTERS,
    _LZMA,
    _LZMA2,
    Coder,
    Encrypted,
    Folder,
    SevenZipError,
    Unsupported,
)

__all__ = ["FolderReader", "check_folder", "open_folder"]


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Inflate:
    """Raw deflate with the ``needs_input`` interface of :mod:`lzma` and :mod:`bz2` decompressors."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(-15)
        self.needs_input = True

    @property
    def eof(self) -> bool:
        return self._d.eof

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        out = self._d.decompress(self._d.unconsumed_tail + data, max_length)
        self.needs_input = not self._d.unconsumed_tail and len(out) < max_length
        return out


class FolderReader(Protocol):
    def read(self, n: int) -> bytes: ...


class _Packed:
    """The packed bytes of a folder, read from the archive file."""

    def __init__(self, stream: BinaryIO, offset: int, size: int) -> None:
        self.stream, self.offset, self.left = stream, offset, size

    def read(self, n: int) -> bytes:
        if self.left <= 0:
            return b""
        self.stream.seek(self.offset)
        data = self.stream.read(min(n, self.left))
        if not data:
            raise SevenZipError("packed data is truncated")
        self.offset += len(data)
        self.left -= len(data)
        return data


class _Copy:
    def __init__(self, source: FolderReader, size: int) -> None:
        self.source, self.left = source, size

    def read(self, n: int) -> bytes:
        if self.left <= 0:
            return b""
        data = self.source.read(min(n, self.left))
        if not data:
            raise SevenZipError("stored data ends before its declared size")
        self.left -= len(data)
        return data


class _Decode:
    """A decompressor's output, cut at the declared size (LZMA streams may carry no end marker)."""

    def __init__(
        self, source: FolderReader, decoder: _Decompressor, size: int, clock: Callable[[], bool], framed: bool
    ) -> None:
        self.source, self.decoder, self.left, self.clock = source, decoder, size, clock
        self.framed = framed  # the input is our own LZMA2 framing of a filter's input
        self.started = False
        self.ended = False

    def _input(self) -> bytes:
        data = self.source.read(1 << 16 if self.framed else _CHUNK)
        if not self.framed:
            if not data:
                raise SevenZipError("compressed data ends before its declared size")
            return data
        if not data:
            if self.ended:
                raise SevenZipError("filtered data ends before its declared size")
            self.ended = True
            return b"\x00"
        control = b"\x02" if self.started else b"\x01"  # the first chunk resets the dictionary
        self.started = True
        return control + (len(data) - 1).to_bytes(2, "big") + data

    def read(self, n: int) -> bytes:
        idle = 0
        while self.left > 0:
            if self.clock():
                raise TimeoutError("time limit reached while unpacking")
            if self.decoder.eof:
                raise SevenZipError("a compressed stream ends before its declared size")
            feed = self._input() if self.decoder.needs_input or idle else b""
            try:
                out = self.decoder.decompress(feed, min(n, self.left))
            except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError) as exc:
                raise SevenZipError(f"corrupt compressed data ({exc})") from exc
            if out:
                self.left -= len(out)
                return out
            idle += 1
        return b""


def _lzma_filter(method: bytes, props: bytes, size: int) -> dict[str, int]:
    """liblzma's filter options from 7z coder properties (parsed here: CPython's private decoder crashes on BCJ)."""
    if method in (_LZMA, _LZMA2):
        if method == _LZMA:
            if len(props) != 5 or props[0] >= 9 * 5 * 5:
                raise SevenZipError("bad LZMA properties")
            lc, rest = props[0] % 9, props[0] // 9
            spec = {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": rest % 5, "pb": rest // 5}
            dict_size = int.from_bytes(props[1:5], "little")
        else:
            if len(props) != 1 or props[0] > 40:
                raise SevenZipError("bad LZMA2 properties")
            spec = {"id": lzma.FILTER_LZMA2}
            dict_size = 0xFFFFFFFF if props[0] == 40 else (2 | (props[0] & 1)) << (props[0] // 2 + 11)
        # a dictionary larger than the output is never used: do not let the header size the allocation
        spec["dict_size"] = max(4096, min(dict_size, size))
        return spec
    filter_id = _FILTERS[method]
    if filter_id == lzma.FILTER_DELTA:
        if len(props) != 1:
            raise SevenZipError("bad Delta properties")
        return {"id": filter_id, "dist": props[0] + 1}
    if len(props) == 4:
        return {"id": filter_id, "start_offset": int.from_bytes(props, "little")}
    if props:
        raise SevenZipError(f"bad properties for filter {method.hex()}")
    return {"id": filter_id}


def _chain(folder: Folder) -> list[Coder]:
    """The folder's coders from its output back to its packed stream; only simple single chains are decoded."""
    if any(c.method == _AES for c in folder.coders):
        raise Encrypted("AES-encrypted 7z data")
    if any(c.n_in != 1 or c.n_out != 1 for c in folder.coders) or len(folder.packed) != 1:
        raise Unsupported("a coder with several streams (BCJ2 or similar)")
    bound_out = {out: inp for inp, out in folder.bind_pairs}
    bound_in = {inp: out for inp, out in folder.bind_pairs}
    main = [i for i in range(len(folder.coders)) if i not in bound_out]
    if len(main) != 1:
        raise SevenZipError("a folder has no single main output stream")
    order = [main[0]]
    while order[-1] in bound_in:
        nxt = bound_in[order[-1]]
        if nxt in order or len(order) > len(folder.coders):
            raise SevenZipError("a folder's coders form a cycle")
        order.append(nxt)
    if len(order) != len(folder.coders) or order[-1] != folder.packed[0]:
        raise SevenZipError("a folder's coders do not form one chain")
    coders = [folder.coders[i] for i in order]
    for coder in coders[:-1]:
        if coder.method not in _FILTERS:
            raise Unsupported(f"7z coder {coder.method.hex()}")
    if coders[-1].method not in _DECODERS:
        raise Unsupported(f"7z coder {coders[-1].method.hex()}")
    if len(set(folder.unpack_sizes)) != 1:
        raise SevenZipError("filters in a folder declare different sizes")
    return coders


def check_folder(folder: Folder) -> None:
    """Raise :class:`Encrypted` or :class:`Unsupported` before anything of the folder is unpacked."""
    _chain(folder)


def open_folder(stream: BinaryIO, folder: Folder, clock: Callable[[], bool]) -> FolderReader:
    """A reader of the folder's unpacked bytes; it stops at the declared size and raises on corrupt data."""
    coders = _chain(folder)
    size = folder.size
    packed = _Packed(stream, folder.pack_offset, folder.pack_sizes[0])
    last = coders[-1]
    reader: FolderReader
    if last.method == _COPY:
        reader = _Copy(packed, size)
    elif last.method == _DEFLATE:
        reader = _Decode(packed, _Inflate(), size, clock, framed=False)
    elif last.method == _BZIP2:
        reader = _Decode(packed, bz2.BZ2Decompressor(), size, clock, framed=False)
    else:
        spec = _lzma_filter(last.method, last.props, size)
        reader = _Decode(packed, _raw_lzma([spec]), size, clock, framed=False)
    for coder in reversed(coders[:-1]):
        # a filter alone: its input is framed as LZMA2 uncompressed chunks so liblzma can run it
        spec = _lzma_filter(coder.method, coder.props, size)
        lzma2 = {"id": lzma.FILTER_LZMA2, "dict_size": 1 << 16}
        reader = _Decode(reader, _raw_lzma([spec, lzma2]), size, clock, framed=True)
    return reader


def _raw_lzma(filters: list[dict[str, int]]) -> lzma.LZMADecompressor:
    try:
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
    except (lzma.LZMAError, ValueError) as exc:
        raise Unsupported(f"liblzma refuses the filter chain ({exc})") from exc
