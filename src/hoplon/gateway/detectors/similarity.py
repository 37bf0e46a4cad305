"""Stateful similarity: per-identity k-NN distance over a bounded buffer, and shared quantised fingerprints.

``StatefulSimilarity`` keeps each identity's last ``buffer`` queries; a query whose mean distance to its
``k`` nearest predecessors is below ``threshold`` is a *match*, and ``hits`` matches in the buffer raise the
alarm (Chen et al.). ``SharedFingerprints`` keeps the last ``capacity`` queries of *all* identities as
quantised codes (one byte per feature) with a digest of each code: a query close to another identity's recent
query (but not an exact repeat, which carries no new information) counts against the caller, so an attack
split over many keys (Sybil) is still seen (Blacklight's idea, with a bounded brute-force index).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hoplon.core.errors import InputError
from hoplon.gateway.detectors.types import (
    Alarm,
    IdentityLRU,
    PortableDetector,
    adopt_tables,
    identity_hash,
    pack_flags,
    pack_state,
    unpack_flags,
    unpack_state,
)

__all__ = ["SharedFingerprints", "StatefulSimilarity", "quantise"]


def quantise(rows: np.ndarray, *, low: float, high: float, levels: int = 256) -> np.ndarray:
    """Rows as uint8 codes: ``levels`` equal steps over ``[low, high]``."""
    scaled = (np.asarray(rows, dtype=np.float32).reshape(len(rows), -1) - low) / max(high - low, 1e-12)
    codes: np.ndarray = np.clip(np.rint(scaled * (levels - 1)), 0, levels - 1).astype(np.uint8)
    return codes


@dataclass(slots=True)
class _Buffer:
    codes: np.ndarray
    n: int = 0
    slot: int = 0
    matches: deque[bool] = field(default_factory=deque)
    queries: int = 0


class StatefulSimilarity:
    """Per-identity k-NN detector (Chen, Carlini, Wagner: Stateful Detection of Black-Box Adversarial Attacks).

    References:
        Chen, Carlini, Wagner. Stateful Detection of Black-Box Adversarial Attacks. SPAI 2020.
        https://arxiv.org/abs/1907.05587

    Args:
        n_features: features per sample.
        low, high: the input range (for the one-byte quantised codes).
        k: neighbours averaged (default 1).
        buffer: queries kept per identity, a ring (default 64).
        threshold: the k-NN mean L2 distance (input units) under which a query is a match.
        hits: matches among the last ``buffer`` queries that raise the alarm (default 5).
        max_identities: identities tracked (LRU; default 10,000).

    Memory per identity: ``buffer × (d + 1)`` bytes: 4.1 KiB for 8×8 inputs, about 40 MiB per 10,000 identities.
    """

    name = "similarity"

    def __init__(
        self,
        *,
        n_features: int,
        low: float = 0.0,
        high: float = 1.0,
        k: int = 1,
        buffer: int = 64,
        threshold: float = 1.0,
        hits: int = 5,
        max_identities: int = 10_000,
    ) -> None:
        if k < 1 or buffer <= k or hits < 1 or threshold <= 0:
            raise InputError("StatefulSimilarity needs k >= 1, buffer > k, hits >= 1 and threshold > 0.")
        self.n_features, self.low, self.high = n_features, low, high
        self.k, self.buffer, self.threshold, self.hits = k, buffer, threshold, hits
        self._scale = (high - low) / 255.0
        self._states: IdentityLRU[_Buffer] = IdentityLRU(max_identities, self._fresh)
        self.trace: dict[str, list[float]] | None = None  # calibration: every query's k-NN distance

    def _fresh(self) -> _Buffer:
        return _Buffer(np.zeros((self.buffer, self.n_features), np.uint8))

    def bytes_per_identity(self, n_features: int) -> int:
        return self.buffer * (n_features + 1)

    def reset(self, identity: str) -> None:
        self._states.pop(identity)

    def forget(self, identity: str) -> None:
        self._states.pop(identity)

    def layout(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "buffer": self.buffer, "low": self.low, "high": self.high}

    def adopt(self, old: PortableDetector) -> bool:
        return adopt_tables(self, old, "_states")

    def dump(self, identity: str) -> bytes | None:
        state = self._states.peek(identity)
        if state is None:
            return None
        meta = {**self.layout(), "slot": state.slot, "queries": state.queries}
        return pack_state(meta, {"codes": state.codes[: state.n], "matches": np.asarray(state.matches, bool)})

    def load(self, identity: str, data: bytes) -> bool:
        meta, arrays = unpack_state(data)
        state = self._fresh()
        codes, matches = arrays.get("codes"), arrays.get("matches")
        if (
            {k: meta.get(k) for k in self.layout()} != self.layout()
            or codes is None
            or matches is None
            or codes.shape[1:] != (self.n_features,)
            or len(codes) > self.buffer
            or matches.ndim != 1
            or len(matches) > self.buffer
            or not 0 <= int(meta.get("slot", -1)) < self.buffer
        ):
            self._states.put(identity, state)
            return False
        state.n, state.slot = len(codes), int(meta["slot"])
        state.codes[: state.n] = codes
        state.matches = deque(bool(m) for m in matches)
        state.queries = max(int(meta.get("queries", 0)), 0)
        self._states.put(identity, state)
        return True

    def knn_distance(self, state_codes: np.ndarray, code: np.ndarray) -> float:
        diff = (state_codes.astype(np.float32) - code.astype(np.float32)) * self._scale
        d = np.sqrt((diff**2).sum(1))
        d = d[d > 0]  # an exact repeat tells the attacker nothing new
        if len(d) < self.k:
            return float("inf")
        return float(np.sort(d)[: self.k].mean())

    def observe(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> Alarm | None:
        state = self._states.get(identity)
        codes = quantise(x, low=self.low, high=self.high)
        alarm = None
        for code in codes:
            state.queries += 1
            score = self.knn_distance(state.codes[: state.n], code) if state.n else float("inf")
            if self.trace is not None:
                self.trace.setdefault(identity, []).append(score)
            state.matches.append(score < self.threshold)
            if len(state.matches) > self.buffer:
                state.matches.popleft()
            state.codes[state.slot] = code
            state.slot = (state.slot + 1) % self.buffer
            state.n = min(state.n + 1, self.buffer)
            if alarm is None and sum(state.matches) >= self.hits:
                alarm = Alarm(self.name, identity, float(sum(state.matches)), float(self.hits), state.queries)
        return alarm


class SharedFingerprints:
    """Quantised fingerprints of recent queries shared across identities (Sybil-resistant).

    A query is a *cross-identity match* when its nearest neighbour among the last ``capacity`` queries of
    *other* identities is within ``threshold`` (L2, input units) and is not an exact repeat. An identity with
    ``hits`` matches among its last ``window`` queries raises the alarm. Each key of a Sybil attacker builds on
    queries its other keys sent, so every key collects matches although none of them sees its own history.

    References:
        Li, Chen, Zhao, Zhang, Xu, Zheng. Blacklight: Scalable Defense for Neural Networks against
        Query-Based Black-Box Attacks. USENIX Security 2022. https://arxiv.org/abs/2006.14042

    Memory: ``capacity × (d + 16)`` bytes shared (320 KiB for 4,096 8×8 queries) plus ``window`` bits per
    identity.
    """

    name = "shared"

    def __init__(
        self,
        *,
        n_features: int,
        low: float = 0.0,
        high: float = 1.0,
        capacity: int = 4096,
        threshold: float = 1.0,
        hits: int = 5,
        window: int = 100,
        max_identities: int = 10_000,
    ) -> None:
        if capacity < 2 or threshold <= 0 or hits < 1 or window < hits:
            raise InputError("SharedFingerprints needs capacity >= 2, threshold > 0, hits >= 1 and window >= hits.")
        self.n_features, self.low, self.high = n_features, low, high
        self.capacity, self.threshold, self.hits, self.window = capacity, threshold, hits, window
        self._scale = (high - low) / 255.0
        self.codes = np.zeros((capacity, n_features), np.uint8)
        self.owners = np.zeros(capacity, np.int64)  # hash of the identity that sent each stored query
        self.digests = np.zeros(capacity, np.uint64)  # first 8 bytes of SHA-1 of each code (exact repeats)
        self.n = 0
        self.slot = 0
        self._matches: IdentityLRU[deque[bool]] = IdentityLRU(max_identities, deque)
        self._counts: IdentityLRU[list[int]] = IdentityLRU(max_identities, lambda: [0])
        self.trace: dict[str, list[float]] | None = None  # calibration: every query's cross-identity distance
        # Shared storage: the entries this worker added since the last flush (code, owner, digest as bytes).
        self.outbox: list[bytes] | None = None

    def bytes_per_identity(self, n_features: int) -> int:
        return self.window + 16

    def reset(self, identity: str) -> None:
        self._matches.pop(identity)
        self._counts.pop(identity)

    def forget(self, identity: str) -> None:
        self.reset(identity)

    def layout(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "capacity": self.capacity,
            "window": self.window,
            "low": self.low,
            "high": self.high,
        }

    def adopt(self, old: PortableDetector) -> bool:
        if not adopt_tables(self, old, "_matches", "_counts"):
            return False
        for name in ("codes", "owners", "digests", "n", "slot", "outbox"):  # the table shared by all identities
            setattr(self, name, getattr(old, name))
        return True

    def dump(self, identity: str) -> bytes | None:
        matches, count = self._matches.peek(identity), self._counts.peek(identity)
        if matches is None or count is None:
            return None
        return pack_flags("matches", matches, self.window, count[0])

    def load(self, identity: str, data: bytes) -> bool:
        loaded = unpack_flags("matches", data, self.window)
        matches, queries = loaded if loaded is not None else (deque(), 0)
        self._matches.put(identity, matches)
        self._counts.put(identity, [queries])
        return loaded is not None

    @property
    def entry_bytes(self) -> int:
        """Bytes of one shared ring entry as stored: the code, the owner hash and the digest."""
        return self.n_features + 16

    def ingest(self, entry: bytes) -> None:
        """Add one entry another worker stored (:attr:`outbox` bytes) to the local ring; a malformed one is
        refused with :class:`InputError`."""
        if len(entry) != self.entry_bytes:
            raise InputError(f"A shared fingerprint entry must hold {self.entry_bytes} bytes. Got {len(entry)}.")
        d = self.n_features
        self._insert(
            np.frombuffer(entry, np.uint8, d),
            int.from_bytes(entry[d : d + 8], "little", signed=True),
            np.uint64(int.from_bytes(entry[d + 8 :], "little")),
        )

    def _insert(self, code: np.ndarray, owner: int, digest: np.uint64) -> None:
        self.codes[self.slot] = code
        self.owners[self.slot] = owner
        self.digests[self.slot] = digest
        self.slot = (self.slot + 1) % self.capacity
        self.n = min(self.n + 1, self.capacity)

    def observe(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> Alarm | None:
        codes = quantise(x, low=self.low, high=self.high)
        alarm = None
        count = self._counts.get(identity)
        matches = self._matches.get(identity)
        owner = identity_hash(identity)
        for code in codes:
            count[0] += 1
            digest = np.uint64(
                int.from_bytes(hashlib.sha1(code.tobytes(), usedforsecurity=False).digest()[:8], "little")
            )
            nearest = float("inf")
            if self.n:
                keep = (self.owners[: self.n] != owner) & (self.digests[: self.n] != digest)
                if keep.any():
                    diff = (self.codes[: self.n][keep].astype(np.float32) - code.astype(np.float32)) * self._scale
                    nearest = float(np.sqrt((diff**2).sum(1)).min())
            hit = nearest < self.threshold
            if self.trace is not None:
                self.trace.setdefault(identity, []).append(nearest)
            matches.append(hit)
            if len(matches) > self.window:
                matches.popleft()
            if self.outbox is None:
                self._insert(code, owner, digest)
            else:  # shared storage: the entry comes back to every worker (this one too) from the stream
                self.outbox.append(
                    code.tobytes() + owner.to_bytes(8, "little", signed=True) + int(digest).to_bytes(8, "little")
                )
            if alarm is None and sum(matches) >= self.hits:
                alarm = Alarm(self.name, identity, float(sum(matches)), float(self.hits), count[0])
        return alarm
