"""Shared types of the gateway's stateful detectors: the protocol, alarms, and a bounded per-identity LRU."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from hoplon.core.errors import InputError

__all__ = [
    "MAX_STATE_BYTES",
    "Alarm",
    "Detector",
    "IdentityLRU",
    "PortableDetector",
    "adopt_tables",
    "identity_hash",
    "pack_state",
    "unpack_state",
]

# The largest serialised state of one detector for one identity (Redis storage); a bigger blob is refused.
MAX_STATE_BYTES = 4 * 1024 * 1024
_DTYPES = frozenset({"uint8", "int16", "int64", "uint64", "float16", "float32", "float64", "bool"})

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Alarm:
    """A detector's verdict that ``identity`` looks like an attacker.

    Args:
        detector: the detector's name (``prada``, ``similarity``, ``shared``, ``volume``, ``low_margin``).
        identity: the caller (API key subject, JWT ``sub``).
        score: the statistic that crossed the threshold.
        threshold: the threshold it crossed.
        at_query: the identity's query count when it fired.
    """

    detector: str
    identity: str
    score: float
    threshold: float
    at_query: int


class Detector(Protocol):
    """A stateful detector: ``observe`` takes one identity's rows (and the model's probabilities) in order."""

    name: str

    def observe(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> Alarm | None: ...

    def reset(self, identity: str) -> None: ...

    def bytes_per_identity(self, n_features: int) -> int: ...


@runtime_checkable
class PortableDetector(Detector, Protocol):
    """A detector whose per-identity state can be moved: kept over a settings reload, or serialised to shared
    storage (Redis) so that several gateway workers see one identity's whole stream."""

    def layout(self) -> dict[str, Any]:
        """What the shape of the per-identity state depends on (a change means the state is rebuilt)."""
        ...

    def adopt(self, old: PortableDetector) -> bool:
        """Take over ``old``'s state when its layout matches (a settings reload); False: start afresh."""
        ...

    def dump(self, identity: str) -> bytes | None:
        """``identity``'s state as bytes (:func:`pack_state`), ``None`` if it has none."""
        ...

    def load(self, identity: str, data: bytes) -> bool:
        """Replace ``identity``'s state with ``data``; False (and a fresh state) when its layout differs."""
        ...

    def forget(self, identity: str) -> None:
        """Drop ``identity``'s local copy (shared storage: the state lives elsewhere between requests)."""
        ...


def adopt_tables(new: PortableDetector, old: PortableDetector, *tables: str) -> bool:
    """Move ``old``'s per-identity tables (the :class:`IdentityLRU` attributes named ``tables``) into ``new``,
    resized to ``new``'s capacity, when both are the same detector with the same state layout."""
    if type(old) is not type(new) or old.layout() != new.layout():
        return False
    for name in tables:
        table = getattr(old, name)
        table.resize(getattr(new, name).max_identities)
        setattr(new, name, table)
    return True


class IdentityLRU(Generic[S]):
    """Per-identity state, at most ``max_identities`` of them; the least recently seen is evicted first."""

    def __init__(self, max_identities: int, factory: Callable[[], S]) -> None:
        self.max_identities = max_identities
        self.factory = factory
        self._items: OrderedDict[str, S] = OrderedDict()
        self.evicted = 0

    def get(self, identity: str) -> S:
        state = self._items.get(identity)
        if state is None:
            state = self.factory()
            self._items[identity] = state
            if len(self._items) > self.max_identities:
                self._items.popitem(last=False)
                self.evicted += 1
        else:
            self._items.move_to_end(identity)
        return state

    def pop(self, identity: str) -> None:
        self._items.pop(identity, None)

    def peek(self, identity: str) -> S | None:
        """The state of ``identity`` without creating it or changing its recency."""
        return self._items.get(identity)

    def resize(self, max_identities: int) -> None:
        """A new bound (a settings reload); the least recently seen beyond it are evicted now."""
        self.max_identities = max_identities
        while len(self._items) > max_identities:
            self._items.popitem(last=False)
            self.evicted += 1

    def put(self, identity: str, state: S) -> None:
        self._items[identity] = state
        self._items.move_to_end(identity)
        while len(self._items) > self.max_identities:
            self._items.popitem(last=False)
            self.evicted += 1

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, identity: str) -> bool:
        return identity in self._items


def identity_hash(identity: str) -> int:
    """A stable signed 64-bit hash of ``identity`` (the same in every worker process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=8).digest(), "little", signed=True)


def pack_state(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """A detector state as bytes: a length-prefixed JSON header (``meta`` and each array's dtype and shape)
    followed by the arrays' raw little-endian bytes. No pickle: loading never runs code."""
    specs = [[name, str(a.dtype), list(a.shape)] for name, a in arrays.items()]
    header = json.dumps({"meta": dict(meta), "arrays": specs}, separators=(",", ":")).encode()
    body = b"".join(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes() for a in arrays.values())
    return len(header).to_bytes(4, "little") + header + body


def unpack_state(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The inverse of :func:`pack_state`; raises :class:`InputError` on anything malformed or oversized."""
    if len(data) > MAX_STATE_BYTES or len(data) < 4:
        raise InputError(f"A detector state must hold 4 to {MAX_STATE_BYTES} bytes. Got {len(data)}.")
    size = int.from_bytes(data[:4], "little")
    if size > min(len(data) - 4, 65_536):
        raise InputError("A detector state's header is larger than the state.")
    try:
        header = json.loads(data[4 : 4 + size])
        meta, specs = header["meta"], header["arrays"]
    except (ValueError, KeyError, TypeError):
        raise InputError("A detector state's header is not valid.") from None
    if not isinstance(meta, dict) or not isinstance(specs, list):
        raise InputError("A detector state's header is not valid.")
    arrays: dict[str, np.ndarray] = {}
    offset = 4 + size
    for spec in specs:
        if not (isinstance(spec, list) and len(spec) == 3 and spec[1] in _DTYPES and isinstance(spec[2], list)):
            raise InputError(f"A detector state holds an array spec that is not allowed: {spec!r}.")
        name, dtype, shape = str(spec[0]), np.dtype(spec[1]).newbyteorder("<"), spec[2]
        if not all(isinstance(n, int) and 0 <= n <= MAX_STATE_BYTES for n in shape):
            raise InputError(f"A detector state holds an array of an invalid shape: {shape!r}.")
        n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + n_bytes > len(data):
            raise InputError("A detector state is shorter than its header says.")
        arrays[name] = (
            np.frombuffer(data, dtype, n_bytes // dtype.itemsize, offset).reshape(shape).astype(dtype.newbyteorder("="))
        )
        offset += n_bytes
    if offset != len(data):
        raise InputError("A detector state is longer than its header says.")
    return meta, arrays


def pack_flags(name: str, flags: Iterable[bool], window: int, queries: int) -> bytes:
    """The state of a detector that keeps a sliding window of per-query flags and a query count."""
    return pack_state({"window": window, "queries": queries}, {name: np.fromiter(flags, dtype=bool)})


def unpack_flags(name: str, data: bytes, window: int) -> tuple[deque[bool], int] | None:
    """The inverse of :func:`pack_flags`: the flags and the count, or ``None`` when the state was saved under
    another window (or holds no flags array of at most ``window`` entries). Malformed bytes raise as in
    :func:`unpack_state`."""
    meta, arrays = unpack_state(data)
    flags = arrays.get(name)
    if meta.get("window") != window or flags is None or flags.ndim != 1 or len(flags) > window:
        return None
    return deque(bool(v) for v in flags), max(int(meta.get("queries", 0)), 0)
