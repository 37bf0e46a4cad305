"""Building blocks of the pickle walker: the opcode table, bounded reads, symbolic values and limits."""

from __future__ import annotations

import _compat_pickle  # the stdlib's own table of Python 2 names
import codecs
from typing import BinaryIO, Final

__all__ = [
    "CHECK_EVERY",
    "CHUNK",
    "MARK",
    "MAX_ITEMS_PER_CONTAINER",
    "MAX_KEPT",
    "MAX_LINE",
    "MAX_MARKS",
    "MAX_MEMO",
    "MAX_STACK",
    "OPS",
    "TORCH_LEGACY_MAGIC",
    "Budget",
    "CallResult",
    "GlobalRef",
    "Malformed",
    "Opaque",
    "Reader",
    "SymDict",
    "SymList",
    "Unknown",
    "decode_text",
    "fix_import",
    "is_importable",
    "parse_string_literal",
]

TORCH_LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C
MAX_LINE: Final = 1 << 16
MAX_KEPT: Final = 1 << 20  # bytes/str values above this are kept as their size only
MAX_ITEMS_PER_CONTAINER: Final = 4096
MAX_MEMO: Final = 1_000_000
CHECK_EVERY: Final = 4096
CHUNK: Final = 1 << 20
MAX_STACK: Final = 1_000_000
MAX_MARKS: Final = 100_000


class _Mark:
    __slots__ = ()


MARK: Final = _Mark()


# Symbolic values. Plain slotted classes (not dataclasses): they are created per opcode and at import time
# a dataclass costs a millisecond each, which counts for a scanner that must start fast.
class GlobalRef:
    __slots__ = ("module", "name", "offset")

    def __init__(self, module: str, name: str, offset: int) -> None:
        self.module = module
        self.name = name
        self.offset = offset

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


class CallResult:
    __slots__ = ("args", "func", "offset")

    def __init__(self, func: object, args: object, offset: int) -> None:
        self.func = func
        self.args = args
        self.offset = offset


class Unknown:
    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class Opaque:
    """A bytes or str value too large to keep; only its size is known."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


class SymList:
    __slots__ = ("count", "items")

    def __init__(self) -> None:
        self.items: list[object] = []
        self.count = 0

    def add(self, value: object) -> None:
        self.count += 1
        if len(self.items) < MAX_ITEMS_PER_CONTAINER:
            self.items.append(value)


class SymDict:
    __slots__ = ("count", "pairs")

    def __init__(self) -> None:
        self.pairs: list[tuple[object, object]] = []
        self.count = 0

    def add(self, key: object, value: object) -> None:
        self.count += 1
        if len(self.pairs) < MAX_ITEMS_PER_CONTAINER:
            self.pairs.append((key, value))

    def get(self, key: str) -> object:
        for k, v in self.pairs:
            if k == key:
                return v
        return None


class Malformed(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Budget(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


# opcode byte -> (name, argument kind)
OPS: Final[dict[int, tuple[str, str]]] = {
    ord(c): (n, a)
    for c, n, a in (
        ("(", "MARK", ""),
        (".", "STOP", ""),
        ("0", "POP", ""),
        ("1", "POP_MARK", ""),
        ("2", "DUP", ""),
        ("F", "FLOAT", "line"),
        ("I", "INT", "line"),
        ("J", "BININT", "i4"),
        ("K", "BININT1", "u1"),
        ("L", "LONG", "line"),
        ("M", "BININT2", "u2"),
        ("N", "NONE", ""),
        ("P", "PERSID", "line"),
        ("Q", "BINPERSID", ""),
        ("R", "REDUCE", ""),
        ("S", "STRING", "line"),
        ("T", "BINSTRING", "s4"),
        ("U", "SHORT_BINSTRING", "s1"),
        ("V", "UNICODE", "line"),
        ("X", "BINUNICODE", "u4s"),
        ("a", "APPEND", ""),
        ("b", "BUILD", ""),
        ("c", "GLOBAL", "line2"),
        ("d", "DICT", ""),
        ("}", "EMPTY_DICT", ""),
        ("e", "APPENDS", ""),
        ("g", "GET", "line"),
        ("h", "BINGET", "u1"),
        ("i", "INST", "line2"),
        ("j", "LONG_BINGET", "u4"),
        ("l", "LIST", ""),
        ("]", "EMPTY_LIST", ""),
        ("o", "OBJ", ""),
        ("p", "PUT", "line"),
        ("q", "BINPUT", "u1"),
        ("r", "LONG_BINPUT", "u4"),
        ("s", "SETITEM", ""),
        ("t", "TUPLE", ""),
        (")", "EMPTY_TUPLE", ""),
        ("u", "SETITEMS", ""),
        ("G", "BINFLOAT", "f8"),
        ("\x80", "PROTO", "u1"),
        ("\x81", "NEWOBJ", ""),
        ("\x82", "EXT1", "u1"),
        ("\x83", "EXT2", "u2"),
        ("\x84", "EXT4", "i4"),
        ("\x85", "TUPLE1", ""),
        ("\x86", "TUPLE2", ""),
        ("\x87", "TUPLE3", ""),
        ("\x88", "NEWTRUE", ""),
        ("\x89", "NEWFALSE", ""),
        ("\x8a", "LONG1", "n1"),
        ("\x8b", "LONG4", "n4"),
        ("B", "BINBYTES", "u4b"),
        ("C", "SHORT_BINBYTES", "u1b"),
        ("\x8c", "SHORT_BINUNICODE", "u1s"),
        ("\x8d", "BINUNICODE8", "u8s"),
        ("\x8e", "BINBYTES8", "u8b"),
        ("\x8f", "EMPTY_SET", ""),
        ("\x90", "ADDITEMS", ""),
        ("\x91", "FROZENSET", ""),
        ("\x92", "NEWOBJ_EX", ""),
        ("\x93", "STACK_GLOBAL", ""),
        ("\x94", "MEMOIZE", ""),
        ("\x95", "FRAME", "u8"),
        ("\x96", "BYTEARRAY8", "u8b"),
        ("\x97", "NEXT_BUFFER", ""),
        ("\x98", "READONLY_BUFFER", ""),
    )
}

# Python 2 names a protocol 0-2 unpickler maps to Python 3 ones (fix_imports), as the stdlib does.


def fix_import(module: str, name: str) -> tuple[str, str]:
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped is not None:
        return mapped
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class Reader:
    """Bounded, position-tracking reads over a binary stream, through a buffer of about 1 MiB."""

    __slots__ = ("buf", "buf_at", "pos", "size", "stream")

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream = stream
        self.size = size
        self.pos = stream.tell()
        self.buf = b""
        self.buf_at = self.pos

    def _fill(self, need: int) -> None:
        self.stream.seek(self.pos)
        self.buf = self.stream.read(min(max(need, CHUNK), self.size - self.pos))
        self.buf_at = self.pos

    def read1(self) -> int:
        off = self.pos - self.buf_at
        if off >= len(self.buf):
            if self.pos >= self.size:
                raise Malformed("truncated", f"stream ends at offset {self.pos} without a STOP")
            self._fill(1)
            off = 0
            if not self.buf:
                raise Malformed("truncated", f"stream ended at offset {self.pos}")
        self.pos += 1
        return self.buf[off]

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise Malformed("truncated", f"needs {n} bytes at offset {self.pos}, stream ends at {self.size}")
        off = self.pos - self.buf_at
        if off + n > len(self.buf):
            self._fill(n)
            off = 0
            if len(self.buf) < n:
                raise Malformed("truncated", f"stream ended at offset {self.pos + len(self.buf)}")
        self.pos += n
        return self.buf[off : off + n]

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise Malformed("truncated", f"needs {n} bytes at offset {self.pos}, stream ends at {self.size}")
        self.pos += n

    def line(self) -> bytes:
        off = self.pos - self.buf_at
        end = self.buf.find(b"\n", off, off + MAX_LINE + 1)
        if end < 0:
            self._fill(MAX_LINE + 1)
            off = 0
            end = self.buf.find(b"\n", 0, MAX_LINE + 1)
            if end < 0:
                if len(self.buf) > MAX_LINE:
                    raise Budget("over-limit", f"text argument longer than {MAX_LINE} bytes")
                self.pos += len(self.buf)
                raise Malformed("truncated", "text argument without a newline")
        data = self.buf[off:end]
        self.pos += end - off + 1
        return data


def decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def is_importable(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def parse_string_literal(raw: bytes) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[:1] in (b"'", b'"'):
        try:
            decoded = codecs.escape_decode(raw[1:-1])[0]
        except ValueError:
            raise Malformed("malformed", "bad STRING literal") from None
        return decode_text(decoded)
    raise Malformed("malformed", "STRING argument is not quoted")
