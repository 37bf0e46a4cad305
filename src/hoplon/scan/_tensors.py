"""Tensor containers that store no code but whose headers can lie: safetensors, GGUF and NumPy ``.npy``.

Only headers are read; tensor data is never loaded. A header that is malformed, over-limit or points outside
the file is a finding. A NumPy object array carries a pickle after its header, which is walked like any other.
"""

from __future__ import annotations

import ast
import json
import re
import struct
from typing import BinaryIO, Final

from hoplon.core.finding import Finding, Severity
from hoplon.scan._context import INTEGRITY, RESOURCE, Context, finding
from hoplon.scan._pickle_scan import scan_pickle_stream

__all__ = ["read_gguf", "scan_gguf", "scan_npy", "scan_safetensors"]

SAFETENSORS_DTYPES: Final = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
    "C64": 8,
}  # fmt: skip


def _header_finding(fmt: str, asset: str, summary: str, severity: Severity = Severity.HIGH, **ev: object) -> Finding:
    return finding(
        f"scan.{fmt}.bad-header",
        severity,
        asset,
        summary,
        evidence=ev,
        taxonomy=RESOURCE if "limit" in summary else INTEGRITY,
        remediation="A header that does not describe the file exactly can crash or mislead loaders; rebuild the "
        "file from a trusted source.",
    )


def scan_safetensors(ctx: Context, asset: str, stream: BinaryIO, size: int) -> list[Finding]:
    """Validate a safetensors header: size, JSON, dtypes, shapes, offsets inside the file, no overlaps."""
    stream.seek(0)
    raw = stream.read(8)
    if len(raw) < 8:
        return [_header_finding("safetensors", asset, "The file is shorter than a safetensors header.")]
    (n,) = struct.unpack("<Q", raw)
    if n > ctx.limits.max_header_bytes:
        return [_header_finding("safetensors", asset, f"Header of {n} bytes is over the limit.", header_bytes=n)]
    if 8 + n > size:
        return [_header_finding("safetensors", asset, "The header runs past the end of the file.", header_bytes=n)]
    try:
        header = json.loads(stream.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return [_header_finding("safetensors", asset, f"The header is not valid JSON ({exc}).")]
    if not isinstance(header, dict):
        return [_header_finding("safetensors", asset, "The header is not a JSON object.")]
    found: list[Finding] = []
    data_size = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                found.append(_header_finding("safetensors", asset, "__metadata__ must map strings to strings."))
            continue
        problem = _check_tensor(entry, data_size)
        if problem:
            found.append(_header_finding("safetensors", asset, f"Tensor {key!r}: {problem}.", tensor=key))
            continue
        begin, end = entry["data_offsets"]
        spans.append((begin, end, key))
    spans.sort()
    pos = 0
    for begin, end, key in spans:
        if begin < pos:
            found.append(_header_finding("safetensors", asset, f"Tensor {key!r} overlaps another tensor.", tensor=key))
        elif begin > pos:
            found.append(
                _header_finding(
                    "safetensors",
                    asset,
                    f"{begin - pos} bytes before tensor {key!r} belong to no tensor.",
                    Severity.MEDIUM,
                    tensor=key,
                )
            )
        pos = max(pos, end)
    if pos < data_size and spans:
        found.append(
            _header_finding(
                "safetensors",
                asset,
                f"{data_size - pos} bytes after the last tensor belong to no tensor.",
                Severity.MEDIUM,
                bytes=data_size - pos,
            )
        )
    return found


def _check_tensor(entry: object, data_size: int) -> str | None:
    if not isinstance(entry, dict):
        return "the entry is not an object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPES:
        return f"unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return "shape is not a list of non-negative integers"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        return "data_offsets is not a pair of integers"
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        return f"data_offsets {offsets} fall outside the {data_size}-byte data section"
    count = 1
    for d in shape:
        count *= d
    expected = count * SAFETENSORS_DTYPES[str(dtype)]
    if str(dtype) in ("F4", "F6_E2M3", "F6_E3M2"):
        return None  # sub-byte types are packed; their byte size depends on the packing
    if end - begin != expected:
        return f"{end - begin} bytes for a {dtype} tensor of shape {shape} (expected {expected})"
    return None


_GGUF_SCALARS: Final = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_FORMATS: Final = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_TEMPLATE_RISK = re.compile(
    r"__class__|__globals__|__subclasses__|__builtins__|__import__|__mro__|__base__|__init__|\bos\.|popen|\beval\b|\bexec\b"
)


def scan_gguf(ctx: Context, asset: str, stream: BinaryIO, size: int) -> list[Finding]:
    """Check a GGUF header: version, counts, string and array lengths, tensor offsets, chat templates."""
    return read_gguf(asset, stream, size, ctx.limits.max_header_bytes)[0]


def read_gguf(asset: str, stream: BinaryIO, size: int, max_header: int) -> tuple[list[Finding], int | None]:
    """The findings of a GGUF header, and the number of tensor elements it declares (``None`` if unreadable)."""
    found: list[Finding] = []
    stream.seek(0)
    head = stream.read(24)
    if len(head) < 24:
        return [_header_finding("gguf", asset, "The file is shorter than a GGUF header.")], None
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (1, 2, 3):
        return [_header_finding("gguf", asset, f"Unknown GGUF version {version}.")], None
    if n_tensors > size // 8 or n_kv > size // 8:
        counts = f"Counts ({n_tensors} tensors, {n_kv} keys) exceed the file size."
        return [_header_finding("gguf", asset, counts)], None
    limit = min(size, max_header)

    def read(n: int) -> bytes:
        if n < 0 or stream.tell() + n > limit:
            raise ValueError(f"read of {n} bytes past the header limit")
        data = stream.read(n)
        if len(data) != n:
            raise ValueError("truncated header")
        return data

    def read_str() -> str:
        (n,) = struct.unpack("<Q", read(8))
        return read(n).decode("utf-8", errors="replace")

    def read_value(vtype: int, depth: int = 0) -> object:
        if vtype in _GGUF_SCALARS:
            (value,) = struct.unpack("<" + _GGUF_FORMATS[vtype], read(_GGUF_SCALARS[vtype]))
            return value
        if vtype == 8:
            return read_str()
        if vtype == 9 and depth < 3:
            item_type, count = struct.unpack("<IQ", read(12))
            if count > size:
                raise ValueError(f"array of {count} items is longer than the file")
            if item_type in _GGUF_SCALARS:
                read(_GGUF_SCALARS[item_type] * count)
            else:
                for _ in range(count):
                    read_value(item_type, depth + 1)
            return None
        raise ValueError(f"unknown value type {vtype}")

    alignment = 32
    try:
        for _ in range(n_kv):
            key = read_str()
            (vtype,) = struct.unpack("<I", read(4))
            value = read_value(vtype)
            if key == "general.alignment" and isinstance(value, int) and not isinstance(value, bool):
                if value <= 0 or value & (value - 1):
                    raise ValueError(f"alignment {value} is not a power of two")
                alignment = value
            if isinstance(value, str) and "chat_template" in key and _TEMPLATE_RISK.search(value):
                found.append(
                    finding(
                        "scan.gguf.template-injection",
                        Severity.CRITICAL,
                        asset,
                        f"The chat template {key!r} reaches Python internals; rendering it with a non-sandboxed "
                        "Jinja environment runs code (CVE-2024-34359).",
                        evidence={"key": key, "match": _TEMPLATE_RISK.search(value).group(0)},  # type: ignore[union-attr]
                        taxonomy=("cwe:CWE-94", "atlas:AML.T0010.003", "owasp-ml:ML06"),
                    )
                )
        ends: list[int] = []
        elements = 0
        for _ in range(n_tensors):
            read_str()
            (n_dims,) = struct.unpack("<I", read(4))
            if n_dims > 8:
                raise ValueError(f"tensor with {n_dims} dimensions")
            count = 1
            for d in struct.unpack(f"<{n_dims}Q", read(8 * n_dims)):
                count *= d
            elements += count
            _ttype, offset = struct.unpack("<IQ", read(12))
            ends.append(offset)
        data_start = stream.tell() + (-stream.tell() % alignment)
        if any(data_start + off > size for off in ends):
            found.append(_header_finding("gguf", asset, "A tensor offset points past the end of the file."))
    except (ValueError, struct.error) as exc:
        found.append(_header_finding("gguf", asset, f"The GGUF header is malformed: {exc}."))
        return found, None
    return found, elements


def _np_itemsize(descr: object) -> tuple[int | None, bool]:
    if isinstance(descr, str):
        body = descr.lstrip("<>|=")
        if body.startswith("O"):
            return 8, True
        digits = body[1:]
        if digits.isdigit():
            return int(digits) * (4 if body[0] == "U" else 1), False
        if body in ("b", "?"):
            return 1, False
        return None, False
    if isinstance(descr, list):
        total, has_object = 0, False
        for field in descr:
            if not (isinstance(field, tuple) and len(field) >= 2):
                return None, False
            size, obj = _np_itemsize(field[1])
            has_object = has_object or obj
            if size is None:
                return None, has_object
            mult = 1
            if len(field) > 2 and isinstance(field[2], tuple):
                for d in field[2]:
                    mult *= int(d)
            total += size * mult
        return total, has_object
    return None, False


def scan_npy(ctx: Context, asset: str, stream: BinaryIO, size: int) -> tuple[str, list[Finding]]:
    """Read a ``.npy`` header without NumPy; walk the pickle of an object array."""
    stream.seek(6)
    ver = stream.read(2)
    if len(ver) < 2 or ver[0] not in (1, 2, 3):
        return "npy", [_header_finding("npy", asset, "Unknown .npy format version.")]
    width = 2 if ver[0] == 1 else 4
    raw_len = stream.read(width)
    if len(raw_len) < width:
        return "npy", [_header_finding("npy", asset, "Truncated .npy header.")]
    hlen = struct.unpack("<H" if width == 2 else "<I", raw_len)[0]
    if hlen > min(ctx.limits.max_header_bytes, 1 << 20):
        return "npy", [_header_finding("npy", asset, f"Header of {hlen} bytes is over the limit.")]
    text = stream.read(hlen)
    try:
        header = ast.literal_eval(text.decode("latin-1"))
        descr, shape = header["descr"], header["shape"]
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ValueError("bad shape")
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError) as exc:
        return "npy", [_header_finding("npy", asset, f"The .npy header cannot be read ({exc}).")]
    itemsize, has_object = _np_itemsize(descr)
    data_start = 6 + 2 + width + hlen
    if has_object:
        stream.seek(data_start)
        _walk, found = scan_pickle_stream(ctx, asset, stream, size)
        found.append(
            finding(
                "scan.npy.object-array",
                Severity.INFO,
                asset,
                "An object array: numpy.load(allow_pickle=True) unpickles its data.",
                evidence={"descr": str(descr)},
                remediation="Store numeric arrays; object arrays need allow_pickle=True, which runs code.",
            )
        )
        return "npy-object", found
    if itemsize is not None:
        count = 1
        for d in shape:
            count *= d
        if data_start + count * itemsize > size:
            return "npy", [_header_finding("npy", asset, "The array data runs past the end of the file.")]
    return "npy", []
