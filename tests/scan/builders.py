"""Build pickles from opcodes and tamper with archives, for the scanner's tests. Nothing here is downloaded."""

from __future__ import annotations

import io
import struct
import zipfile

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
MARK = b"("
STOP = b"."
REDUCE = b"R"
TUPLE = b"t"
TUPLE1 = b"\x85"
EMPTY_TUPLE = b")"
BUILD = b"b"
EMPTY_DICT = b"}"
NONE = b"N"


def glob(module: str, name: str) -> bytes:
    """GLOBAL (protocol 0 text form)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def ustr(text: str) -> bytes:
    """SHORT_BINUNICODE or BINUNICODE."""
    raw = text.encode()
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def bbytes(raw: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(raw)) + raw


def put(i: int) -> bytes:
    return b"q" + bytes([i])


def get(i: int) -> bytes:
    return b"h" + bytes([i])


def stack_global(module: str, name: str) -> bytes:
    return ustr(module) + ustr(name) + b"\x93"


def call(module: str, name: str, *args: str, proto: int = 2) -> bytes:
    """``module.name(*args)`` then STOP: the classic ``__reduce__`` payload."""
    head = PROTO2 if proto < 4 else PROTO4
    fn = glob(module, name) if proto < 4 else stack_global(module, name)
    return head + fn + MARK + b"".join(ustr(a) for a in args) + TUPLE + REDUCE + STOP


def benign(value: int = 1) -> bytes:
    """A harmless pickle: ``{'a': value}``."""
    return PROTO2 + EMPTY_DICT + ustr("a") + b"K" + bytes([value]) + b"s" + STOP


def torch_zip(pickle_bytes: bytes, *, prefix: str = "archive", pickle_name: str = "data.pkl") -> bytes:
    """A PyTorch-style ZIP checkpoint (stored entries) whose pickle is ``pickle_bytes``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/{pickle_name}", pickle_bytes)
        z.writestr(f"{prefix}/byteorder", "little")
        z.writestr(f"{prefix}/data/0", b"\x80\x02" + b"\x00" * 62)
        z.writestr(f"{prefix}/version", "3\n")
    return buf.getvalue()


def patch_local_name(data: bytes, old: str, new: str) -> bytes:
    """Rename an entry in its local header only (same length), leaving the central directory alone."""
    assert len(old) == len(new)
    at = data.find(old.encode())  # the first occurrence is in the local header, before the central directory
    assert at > 0
    return data[:at] + new.encode() + data[at + len(old) :]


def set_flag_bits(data: bytes, bits: int) -> bytes:
    """OR ``bits`` into the general-purpose flags of every local and central header."""
    out = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = out.find(sig)
        while i >= 0:
            (flags,) = struct.unpack_from("<H", out, i + off)
            struct.pack_into("<H", out, i + off, flags | bits)
            i = out.find(sig, i + 4)
    return bytes(out)


def break_crc(data: bytes, entry: str) -> bytes:
    """Corrupt the CRC-32 of ``entry`` in both its local and central headers."""
    out = bytearray(data)
    name = entry.encode()
    for sig, crc_off, name_off in ((b"PK\x03\x04", 14, 30), (b"PK\x01\x02", 16, 46)):
        i = out.find(sig)
        while i >= 0:
            if out[i + name_off : i + name_off + len(name)] == name:
                (crc,) = struct.unpack_from("<I", out, i + crc_off)
                struct.pack_into("<I", out, i + crc_off, crc ^ 0xDEADBEEF)
            i = out.find(sig, i + 4)
    return bytes(out)
