"""Request and response bodies of model APIs: Open Inference Protocol (KServe v2) and plain JSON.

Inputs: ``{"inputs": [{"name", "shape", "datatype", "data"}]}`` (v2), ``{"instances": [...]}`` or
``{"inputs": [[...], ...]}`` (plain). Outputs with class scores: v2 ``outputs`` of shape ``[batch, classes]``,
or plain ``predictions`` / ``probabilities`` / ``scores`` lists of rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import numpy as np

_orjson: ModuleType | None
try:  # the gateway extra's C JSON codec: ~5x faster on the request path; the standard library otherwise
    import orjson as _orjson
except ImportError:  # pragma: no cover - only without the gateway extra (e.g. hoplon.audit alone)
    _orjson = None

__all__ = ["BadRequest", "ParsedInput", "dump_json", "harden_response", "load_json", "parse_inputs"]

Style = Literal["v2", "instances", "inputs"]
_V2_NUMERIC = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL"}
_SCORE_KEYS = ("predictions", "probabilities", "scores")
_pack_into: Callable[..., None] = struct.pack_into  # into an ndarray (a writable buffer numpy's stubs don't name)
_INTEGERS = frozenset({int, bool})  # the integer types JSON decoders give (bool: as isinstance(x, int) has it)


class BadRequest(Exception):
    """The body cannot be used; ``reason`` is a short code, ``status`` the HTTP status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


async def read_body(receive: Callable[[], Awaitable[Mapping[str, Any]]], limit: int | None) -> bytes:
    """An ASGI request body, at most ``limit`` bytes (``None``: no bound).

    Raises :class:`BadRequest` 413 ``body_too_large`` past the limit (nothing more is read) and 499
    ``client_disconnected`` when the client goes away. The firewall's admission, the admin API and the model
    apps all read bodies through here.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest(499, "client_disconnected", "The client went away.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BadRequest(413, "body_too_large", f"The body is larger than {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _reject_constant(name: str) -> float:
    raise BadRequest(400, "non_finite", f"The input holds {name}; NaN and infinity are refused.")


@dataclass(frozen=True, slots=True)
class ParsedInput:
    array: np.ndarray  # float64, batch axis first
    style: Style
    name: str = "input"
    batch: int = field(init=False)  # samples: the first axis (1 for a 0-d array)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch", int(self.array.shape[0]) if self.array.ndim else 1)

    def row_digests(self) -> list[bytes]:
        """SHA-256 of each sample's float32 bytes: the same sample gives the same digest however it is sent."""
        n = self.batch
        data = memoryview(self.array.astype(np.float32).tobytes())  # C order, one copy for the whole batch
        if n == 1:
            return [hashlib.sha256(data).digest()]
        step = len(data) // n if n else 0
        return [hashlib.sha256(data[i * step : (i + 1) * step]).digest() for i in range(n)]


# One decoder, made once: ``json.loads(..., parse_constant=...)`` builds a new decoder on every call.
_STRICT = json.JSONDecoder(parse_constant=_reject_constant)


# orjson reads integers beyond 64 bits (above 2^64 - 1, below -2^63) as floats; a run of 20 digits, or a minus
# sign and 19 digits, sends the body to the standard library, which keeps them exact. Found by mapping digits
# to "0", "-" to itself and the rest to " " (C speed; a regex costs 10x).
_DIGIT_RUNS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x2D if i == 0x2D else 0x20 for i in range(256))
_LONG_RUN = b"0" * 20
_LONG_NEGATIVE = b"-" + b"0" * 19


def parse_json(body: bytes, *, strict: bool = True) -> Any:
    """Parse a JSON body; ``strict`` refuses NaN and infinity (request bodies), else they pass (model answers).

    Valid UTF-8 JSON goes through orjson; anything it refuses (NaN, infinity, other encodings, lone
    surrogates, too deep) is decided and worded by the standard library, so the result and the errors are
    the same either way.
    """
    return load_json(body, strict=strict)[0]


def _short_integers(runs: bytes) -> bool:
    """No integer orjson would read as a float, in a body mapped through ``_DIGIT_RUNS``."""
    return _LONG_RUN not in runs and _LONG_NEGATIVE not in runs


def load_json(body: bytes, *, strict: bool = True, exact_integers: bool = True) -> tuple[Any, bool]:
    """``parse_json``, and whether orjson read it: then it holds no NaN or infinity, and with
    ``exact_integers`` no integer beyond 64 bits (without it, such an integer may come back as the nearest
    float, as it would become in a float array anyway)."""
    if _orjson is not None and (not exact_integers or _short_integers(body.translate(_DIGIT_RUNS))):
        try:
            return _orjson.loads(body), True
        except _orjson.JSONDecodeError:
            pass
    try:
        return (_STRICT.decode(body.decode()) if strict else json.loads(body)), False
    except BadRequest:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, "bad_json", f"The body is not valid JSON: {exc}") from None


def dump_json(doc: Any, *, plain: bool) -> bytes:
    """Compact JSON of a parsed document: orjson for a ``plain`` one (see ``load_json``), else the standard
    library, which writes NaN and infinity as it read them and keeps long integers exact."""
    if plain and _orjson is not None:
        encoded: bytes = _orjson.dumps(doc)
        return encoded
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_inputs(body: bytes, *, max_elements: int) -> ParsedInput:
    """Parse and check an inference body: numeric, finite, rectangular, at most ``max_elements`` values."""
    # Values become float64 anyway; a shape entry beyond 64 bits comes back a float and is refused below.
    doc, plain = load_json(body, exact_integers=False)
    if not isinstance(doc, dict):
        raise BadRequest(400, "bad_body", "The body must be a JSON object with `inputs` or `instances`.")
    style: Style
    name = "input"
    if isinstance(doc.get("inputs"), list) and doc["inputs"] and isinstance(doc["inputs"][0], dict):
        if len(doc["inputs"]) != 1:
            raise BadRequest(400, "bad_body", "Send exactly one input tensor.")
        tensor = doc["inputs"][0]
        shape, datatype, data = tensor.get("shape"), tensor.get("datatype", "FP32"), tensor.get("data")
        name = str(tensor.get("name", "input"))
        if datatype not in _V2_NUMERIC:
            raise BadRequest(400, "bad_dtype", f"The datatype {datatype!r} is not numeric.")
        if not (isinstance(shape, list) and shape and _INTEGERS.issuperset(map(type, shape)) and min(shape) >= 0):
            raise BadRequest(400, "bad_shape", "`shape` must be a list of non-negative integers.")
        size = math.prod(shape)
        if size > max_elements:
            raise BadRequest(413, "too_many_elements", f"The input has more than {max_elements} values.")
        array = _numeric(data)
        if array.size != size:
            raise BadRequest(400, "bad_shape", f"`data` holds {array.size} values; `shape` {shape} needs {size}.")
        array = array.reshape(shape)
        style = "v2"
    elif isinstance(doc.get("instances"), list):
        array, style = _numeric(doc["instances"]), "instances"
    elif isinstance(doc.get("inputs"), list):
        array, style = _numeric(doc["inputs"]), "inputs"
    else:
        raise BadRequest(400, "bad_body", "The body must hold `inputs` (v2 tensors or rows) or `instances`.")
    if array.size > max_elements:
        raise BadRequest(413, "too_many_elements", f"The input has more than {max_elements} values.")
    if array.ndim < 1:
        raise BadRequest(400, "bad_shape", "The input must have a batch axis.")
    # orjson refuses NaN and infinity and reads only short integers: what it read is finite already
    if not plain and not np.isfinite(array).all():
        raise BadRequest(400, "non_finite", "The input holds NaN or infinite values.")
    return ParsedInput(array, style, name)


def _numeric(data: Any) -> np.ndarray:
    if type(data) is list and (not data or type(data[0]) is not list):
        # A flat list of numbers (v2's ``data``): struct writes the doubles straight into the array, the
        # values numpy gives (a float's own, an int's float(), bool 1.0/0.0) at about half its cost.
        # Anything else (nested rows, strings, None, an integer beyond a float's range) goes to numpy.
        n = len(data)
        array = np.empty(n)
        try:
            _pack_into(f"{n}d", array, 0, *data)
            return array
        except (struct.error, TypeError, ValueError, OverflowError):
            pass
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError):  # ragged rows
        raise BadRequest(400, "bad_values", "The input must be a rectangular array of numbers.") from None
    # A tensor's data are JSON numbers: a number written as a string ("1.5", "nan", "1e999") is refused, not
    # read the way numpy would read it. Numbers mixed with strings come out of numpy as strings; beside None or
    # an integer beyond 64 bits as objects, which are scanned (plain numbers within 64 bits never make those).
    kind = raw.dtype.kind
    if kind in "USV" or (kind == "O" and any(isinstance(v, (str, bytes)) for v in raw.flat)):
        raise BadRequest(400, "bad_values", "The input must hold numbers; it holds strings.")
    if kind == "O" and any(v is None for v in raw.flat):  # numpy would read a JSON null as NaN
        raise BadRequest(400, "bad_values", "The input must hold numbers; it holds null.")
    try:
        array = raw.astype(np.float64, copy=False)
    except (ValueError, TypeError):  # a JSON object or array where a number belongs
        raise BadRequest(400, "bad_values", "The input must be a rectangular array of numbers.") from None
    except OverflowError:  # an integer beyond a float's range (the standard library reads it exactly)
        raise BadRequest(400, "non_finite", "The input holds a number beyond the range of a float.") from None
    if not np.isfinite(array).all():
        raise BadRequest(400, "non_finite", "The input holds NaN or infinite values.")
    return array


@dataclass(frozen=True, slots=True)
class Hardening:
    label_only: bool
    top_k: int | None
    round_digits: int | None
    noise_scale: float
    noise_key: bytes
    strip_fields: tuple[str, ...]


def _harden_matrix(scores: np.ndarray, digests: list[bytes], h: Hardening) -> np.ndarray:
    noisy = h.noise_scale > 0 and len(digests) == len(scores)
    # Only the noise is added in place; top-k and rounding make new arrays, so without noise no copy is needed.
    out = scores.astype(np.float64, copy=noisy)
    if noisy:
        is_prob = bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))
        for i, digest in enumerate(digests):
            seed = int.from_bytes(hmac.new(h.noise_key, digest, hashlib.sha256).digest()[:8], "little")
            out[i] += np.random.default_rng(seed).normal(0.0, h.noise_scale, out.shape[1])
        if is_prob:
            out = np.clip(out, 0.0, None)
            out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-12)
    if h.top_k is not None and h.top_k < out.shape[1]:
        cut = np.sort(out, axis=1)[:, -h.top_k][:, None]
        out = np.where(out >= cut, out, 0.0)
    if h.round_digits is not None:
        with np.errstate(over="ignore"):
            rounded = out.round(h.round_digits)  # np.round's own work, without its Python-level dispatch
        finite = np.isfinite(rounded)
        if not finite.all():  # v·10^d beyond a float's range: v has no digits to round at that scale, kept
            rounded = np.where(finite, rounded, out)
        out = rounded
    return out


# Up to this many scores, a response without noise is hardened in plain Python: numpy's per-call costs
# (array from a list, argmax, round, back to a list: ~10 µs) outweigh its speed on a few rows of classes.
_SMALL = 4096


_RINT = 6755399441055744.0  # 1.5·2^52: x + _RINT - _RINT is x rounded to an integer (half to even), |x| <= 2^51
_RINT_BOUND = 2251799813685248.0  # 2^51


def _plain_numbers(data: list[Any]) -> bool:
    for v in data:
        kind = type(v)
        if kind is not float and kind is not int:
            return False
    return True


def _harden_small(flat: list[float | int], cols: int, h: Hardening) -> tuple[list[int], list[float]]:
    """``_harden_matrix`` without noise, on a flat row-major list of finite numbers: the labels and the
    hardened scores, the very values numpy gives (first maximum, the k-th largest kept with its ties,
    ``round`` as numpy rounds)."""
    labels: list[int] = []
    out: list[float] = []
    k = h.top_k if h.top_k is not None and h.top_k < cols else None
    scale = 10.0**h.round_digits if h.round_digits is not None else None
    for start in range(0, len(flat), cols):
        row = flat[start : start + cols]
        top = max(row)
        labels.append(row.index(top))
        if k is not None:
            cut = sorted(row)[-k]
            row = [v if v >= cut else 0.0 for v in row]
        if scale is not None:
            # np.round(v, d): v·10^d rounded half to even, divided back; a product that rounds to 0 keeps
            # its sign (y * 0.0 is -0.0 for a negative y), as numpy's rint does. Within ±2^51 the rounding is
            # float arithmetic (adding and taking away 1.5·2^52 rounds to an integer, half to even), beyond
            # it ``round`` (an int, divided as the same float); the products are monotonic in v, so the row's
            # extremes bound them all.
            if top * scale <= _RINT_BOUND and min(row) * scale >= -_RINT_BOUND:
                out.extend([r / scale if (r := (y := v * scale) + _RINT - _RINT) else y * 0.0 for v in row])
            else:
                out.extend([_round_wide(v, scale) for v in row])
        else:
            out.extend([float(v) for v in row])
    return labels, out


def _round_wide(v: float, scale: float) -> float:
    """``_harden_small``'s rounding of one score whose product with ``scale`` may lie beyond ±2^51."""
    y = v * scale
    if not math.isfinite(y):  # beyond a float's range: v has no digits to round at this scale (numpy's kept)
        return float(v)
    r = round(y)
    return r / scale if r else y * 0.0


def harden_response(
    doc: Any, digests: list[bytes], h: Hardening, *, finite: bool = False
) -> tuple[Any, dict[str, Any]]:
    """Strip internal fields and harden class scores in a response; return it and an audit summary.

    ``finite``: every number in ``doc`` is finite (``load_json`` read it with orjson), which lets a small
    matrix without noise skip numpy.
    """
    summary: dict[str, Any] = {}
    if not isinstance(doc, dict):
        return doc, summary
    for key in h.strip_fields:
        doc.pop(key, None)
    if isinstance(doc.get("outputs"), list):
        kept = []
        for out in doc["outputs"]:
            if not isinstance(out, dict) or out.get("name") in h.strip_fields:
                continue
            shape = out.get("shape")
            data = out.get("data")
            if isinstance(shape, list) and len(shape) == 2 and isinstance(data, list):
                rows, cols = shape
                if (
                    finite
                    and type(rows) is int
                    and type(cols) is int
                    and cols > 0
                    and 0 < rows * cols == len(data) <= _SMALL
                    and not (h.noise_scale > 0 and len(digests) == rows)
                    and _plain_numbers(data)
                ):
                    summary["labels"], hardened = _harden_small(data, cols, h)
                    if h.label_only:
                        kept.append({"name": "label", "shape": [rows], "datatype": "INT64", "data": summary["labels"]})
                    else:
                        kept.append({**out, "data": hardened})
                    continue
                try:
                    matrix = np.asarray(data, dtype=np.float64).reshape(shape)
                except (ValueError, TypeError):
                    kept.append(out)
                    continue
                summary["labels"] = matrix.argmax(axis=1).tolist()
                if h.label_only:
                    kept.append({"name": "label", "shape": [shape[0]], "datatype": "INT64", "data": summary["labels"]})
                    continue
                out = {**out, "data": _harden_matrix(matrix, digests, h).ravel().tolist()}
            kept.append(out)
        doc["outputs"] = kept
        return doc, summary
    for key in _SCORE_KEYS:
        value = doc.get(key)
        if isinstance(value, list) and value and isinstance(value[0], list):
            try:
                matrix = np.asarray(value, dtype=np.float64)
            except (ValueError, TypeError):
                continue
            if matrix.ndim != 2:
                continue
            summary["labels"] = matrix.argmax(axis=1).tolist()
            if h.label_only:
                del doc[key]
                doc["labels"] = summary["labels"]
            else:
                doc[key] = _harden_matrix(matrix, digests, h).tolist()
    return doc, summary
