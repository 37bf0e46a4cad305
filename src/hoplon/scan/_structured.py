"""Graph formats that store no pickle but can still reach code or files: ONNX, Keras, HDF5, SavedModel.

ONNX is read by a small streaming protobuf walker (no ``onnx`` import, tensor data is skipped, not loaded).
Keras and HDF5 files are searched for layer configurations that carry Python code (``Lambda``). SavedModel
graphs are searched for operations that run Python or touch files.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterator
from typing import Any, BinaryIO, Final

from hoplon.core.finding import Finding, Severity
from hoplon.scan._context import INTEGRITY, Context, finding
from hoplon.scan.types import TAXONOMY

__all__ = ["looks_like_onnx", "scan_h5", "scan_keras_config", "scan_onnx", "scan_savedmodel"]

_CODE = ("cwe:CWE-94", "atlas:AML.T0011.000", "atlas:AML.T0010.003", "owasp-ml:ML06")
_STANDARD_DOMAINS: Final = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training", "com.microsoft",
     "com.microsoft.nchwc", "com.microsoft.experimental", "org.pytorch.aten", "com.ms.internal.nhwc"}
)  # fmt: skip

# message -> {field number: child message name, or "str" for a string we keep}
_ONNX: Final[dict[str, dict[int, str]]] = {
    "model": {7: "graph", 8: "opset", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "node": {4: "str", 5: "attr", 7: "str"},
    "attr": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph"},
    "tensor": {8: "str", 13: "entry"},
    "entry": {1: "str", 2: "str"},
    "opset": {1: "str"},
    "function": {7: "node", 9: "opset", 10: "str"},
}
_MODEL_FIELDS: Final = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 21, 25, 26})


class _PbError(Exception):
    pass


def _varint(stream: BinaryIO) -> int:
    shift = result = 0
    while True:
        b = stream.read(1)
        if not b:
            raise _PbError("truncated varint")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise _PbError("varint too long")


def _walk(stream: BinaryIO, end: int, message: str, depth: int, ctx: Context) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(message, field, value)`` for kept fields; nested messages yield ``(name, field, None)`` first."""
    if depth > 32:
        raise _PbError("messages nested too deeply")
    schema = _ONNX[message]
    while stream.tell() < end:
        if ctx.out_of_time():
            raise _PbError("time limit reached")
        key = _varint(stream)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _PbError("field number 0")
        if wire == 0:
            _varint(stream)
        elif wire == 1:
            stream.seek(8, 1)
        elif wire == 5:
            stream.seek(4, 1)
        elif wire == 2:
            n = _varint(stream)
            start = stream.tell()
            if start + n > end:
                raise _PbError(f"field {field} of {message} runs past its parent")
            child = schema.get(field)
            if child == "str":
                yield message, field, stream.read(min(n, 4096)).decode("utf-8", errors="replace")
            elif child is not None:
                yield child, field, None
                yield from _walk(stream, start + n, child, depth + 1, ctx)
                yield "end", field, child
            stream.seek(start + n)
        else:
            raise _PbError(f"unsupported wire type {wire}")
    if stream.tell() != end:
        raise _PbError("message overruns its length")


def looks_like_onnx(head: bytes) -> bool:
    """Cheap check of the first protobuf fields of an ONNX ``ModelProto``."""
    if len(head) < 4 or head[0] != 0x08:
        return False
    i = 0
    seen = 0
    while i < len(head) and seen < 3:
        key = head[i]
        field, wire = key >> 3, key & 7
        if field not in _MODEL_FIELDS:
            return False
        i += 1
        if wire == 0:
            while i < len(head) and head[i] & 0x80:
                i += 1
            i += 1
        elif wire == 2:
            if i >= len(head):
                return True
            n = head[i]
            if n & 0x80:
                return True
            i += 1 + n
        else:
            return False
        seen += 1
    return True


def scan_onnx(ctx: Context, asset: str, stream: BinaryIO, size: int) -> list[Finding]:
    """External-data paths that leave the model's folder, custom operator domains, malformed protobuf."""
    found: list[Finding] = []
    domains: dict[str, str] = {}
    key: str | None = None
    current_node: dict[str, str] = {}
    stream.seek(0)
    try:
        for message, field, value in _walk(stream, size, "model", 0, ctx):
            if message == "node" and value is None:
                current_node = {}
            elif message == "node" and field == 4:
                current_node["op"] = str(value)
            elif message == "node" and field == 7:
                current_node["domain"] = str(value)
                if str(value) not in _STANDARD_DOMAINS:
                    domains.setdefault(str(value), current_node.get("op", "?"))
            elif message == "entry" and field == 1:
                key = str(value)
            elif message == "entry" and field == 2 and key == "location":
                problem = _escapes(str(value))
                if problem:
                    found.append(
                        finding(
                            "scan.onnx.external-data-escape",
                            Severity.HIGH,
                            asset,
                            f"An initializer's external data location {value!r} {problem}; loading the model "
                            "reads that file.",
                            evidence={"location": value},
                            taxonomy=("cwe:CWE-22", "atlas:AML.T0010.003", "owasp-ml:ML06"),
                            remediation="Keep external tensor files inside the model folder, with relative paths.",
                        )
                    )
    except (_PbError, OSError) as exc:
        found.append(
            finding(
                "scan.onnx.malformed",
                Severity.HIGH,
                asset,
                f"The ONNX protobuf is malformed: {exc}.",
                taxonomy=INTEGRITY,
                remediation="Re-export the model from its source.",
            )
        )
    for domain, op in sorted(domains.items()):
        found.append(
            finding(
                "scan.onnx.custom-domain",
                Severity.MEDIUM,
                asset,
                f"The graph uses operators of the custom domain {domain!r} (e.g. {op}); running it needs a custom "
                "operator library, which is native code.",
                evidence={"domain": domain, "op_type": op},
                taxonomy=_CODE,
                remediation="Check where the custom operator library comes from before registering it.",
            )
        )
    return found


def _escapes(location: str) -> str | None:
    if location.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", location):
        return "is an absolute path"
    if location.startswith(("file:", "http:", "https:")):
        return "is a URL"
    norm = posixpath.normpath(location.replace("\\", "/"))
    if norm == ".." or norm.startswith("../"):
        return "leaves the model folder"
    return None


def _keras_layers(node: object, depth: int = 0) -> Iterator[dict[str, Any]]:
    if depth > 64:
        return
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from _keras_layers(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from _keras_layers(value, depth + 1)


def scan_keras_config(asset: str, config: object) -> list[Finding]:
    """``Lambda`` layers (Python bytecode) and custom objects in a Keras model configuration."""
    found: list[Finding] = []
    for layer in _keras_layers(config):
        cls = layer.get("class_name")
        if cls == "Lambda":
            raw_cfg = layer.get("config")
            cfg: dict[str, Any] = raw_cfg if isinstance(raw_cfg, dict) else {}
            text = json.dumps(cfg)[:100_000]
            is_bytecode = "__lambda__" in text or '"function_type": "lambda"' in text
            found.append(
                finding(
                    "scan.keras.lambda-layer",
                    Severity.CRITICAL if is_bytecode else Severity.HIGH,
                    asset,
                    "A Keras Lambda layer "
                    + ("carries marshalled Python bytecode" if is_bytecode else "calls a named Python function")
                    + "; loading the model with safe_mode off runs it.",
                    evidence={"layer": str(cfg.get("name", "?")), "bytecode": is_bytecode},
                    taxonomy=_CODE,
                    remediation="Load Keras models with safe_mode=True, or replace Lambda layers with built-ins.",
                )
            )
        module = layer.get("module")
        if isinstance(module, str) and module and not module.startswith(("keras", "tensorflow", "tf_keras")):
            found.append(
                finding(
                    "scan.keras.custom-object",
                    Severity.MEDIUM,
                    asset,
                    f"The configuration names the custom class {module}.{cls}; loading imports that module.",
                    evidence={"module": module, "class_name": str(cls)},
                    taxonomy=TAXONOMY,
                    remediation="Check the custom object's source before loading.",
                )
            )
    return found


_H5_LAMBDA = re.compile(rb'"class_name":\s*"Lambda"')
_H5_BYTECODE = re.compile(rb'"function_type":\s*"lambda"|__lambda__')
_TF_PYTHON_OPS: Final = (b"PyFunc", b"PyFuncStateless", b"EagerPyFunc")
_TF_FILE_OPS: Final = (b"ReadFile", b"WriteFile", b"MatchingFiles", b"ImmutableConst")


def _chunks(stream: BinaryIO, size: int, ctx: Context, overlap: int = 256) -> Iterator[bytes]:
    stream.seek(0)
    carry = b""
    read = 0
    while read < size and not ctx.out_of_time():
        block = stream.read(min(1 << 22, size - read))
        if not block:
            break
        read += len(block)
        yield carry + block
        carry = block[-overlap:]


def scan_h5(ctx: Context, asset: str, stream: BinaryIO, size: int) -> tuple[str, list[Finding]]:
    """Search an HDF5 file's bytes for a Keras ``Lambda`` layer in its stored model configuration."""
    is_keras = has_lambda = has_bytecode = False
    for chunk in _chunks(stream, size, ctx):
        is_keras = is_keras or b"model_config" in chunk or b"keras_version" in chunk
        has_lambda = has_lambda or _H5_LAMBDA.search(chunk) is not None
        has_bytecode = has_bytecode or _H5_BYTECODE.search(chunk) is not None
    found: list[Finding] = []
    if has_lambda:
        found.append(
            finding(
                "scan.keras.lambda-layer",
                Severity.CRITICAL if has_bytecode else Severity.HIGH,
                asset,
                "The stored Keras model configuration has a Lambda layer"
                + (" with marshalled Python bytecode" if has_bytecode else "")
                + "; loading the model runs it.",
                evidence={"bytecode": has_bytecode},
                taxonomy=_CODE,
                remediation="Load Keras models with safe_mode=True, or replace Lambda layers with built-ins.",
            )
        )
    if ctx.out_of_time():
        found.append(
            finding(
                "scan.h5.timeout",
                Severity.HIGH,
                asset,
                "Time limit reached while reading the HDF5 file.",
                taxonomy=INTEGRITY,
            )
        )
    return ("keras-h5" if is_keras else "hdf5"), found


def scan_savedmodel(ctx: Context, asset: str, stream: BinaryIO, size: int) -> list[Finding]:
    """Operations in a TensorFlow graph that run Python or read and write files."""
    python_ops: set[str] = set()
    file_ops: set[str] = set()
    for chunk in _chunks(stream, size, ctx):
        for op in _TF_PYTHON_OPS:
            if b"\x12" + bytes([len(op)]) + op in chunk or b'"' + op + b'"' in chunk:
                python_ops.add(op.decode())
        for op in _TF_FILE_OPS:
            if b"\x12" + bytes([len(op)]) + op in chunk:
                file_ops.add(op.decode())
    found: list[Finding] = []
    if python_ops:
        found.append(
            finding(
                "scan.savedmodel.python-op",
                Severity.CRITICAL,
                asset,
                f"The graph has operations that call back into Python ({', '.join(sorted(python_ops))}).",
                evidence={"ops": sorted(python_ops)},
                taxonomy=_CODE,
            )
        )
    if file_ops:
        found.append(
            finding(
                "scan.savedmodel.file-op",
                Severity.HIGH,
                asset,
                f"The graph has operations that read or write files ({', '.join(sorted(file_ops))}).",
                evidence={"ops": sorted(file_ops)},
                taxonomy=("cwe:CWE-22", "atlas:AML.T0010.003", "owasp-ml:ML06"),
                remediation="Check why a model graph needs file access before serving it.",
            )
        )
    return found
