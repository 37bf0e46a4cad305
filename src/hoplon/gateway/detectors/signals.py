"""Cheap per-identity signals: query volume against a budget, and the rate of low-margin queries."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from hoplon.core.errors import InputError
from hoplon.gateway.detectors.types import (
    Alarm,
    IdentityLRU,
    PortableDetector,
    adopt_tables,
    pack_flags,
    pack_state,
    unpack_flags,
    unpack_state,
)

__all__ = ["LowMargin", "QueryVolume"]


class QueryVolume:
    """Alarm when an identity's queries (rows) since it was first tracked exceed ``budget``.

    Memory per identity: 8 bytes (plus the LRU's key).
    """

    name = "volume"

    def __init__(self, *, budget: int = 20_000, max_identities: int = 10_000) -> None:
        if budget < 1:
            raise InputError(f"The 'budget' parameter of QueryVolume must be positive. Got {budget}.")
        self.budget = budget
        self._counts: IdentityLRU[list[int]] = IdentityLRU(max_identities, lambda: [0])

    def bytes_per_identity(self, n_features: int) -> int:
        return 8

    def reset(self, identity: str) -> None:
        self._counts.pop(identity)

    def forget(self, identity: str) -> None:
        self._counts.pop(identity)

    def layout(self) -> dict[str, Any]:
        return {}

    def adopt(self, old: PortableDetector) -> bool:
        return adopt_tables(self, old, "_counts")

    def dump(self, identity: str) -> bytes | None:
        count = self._counts.peek(identity)
        return None if count is None else pack_state({"queries": count[0]}, {})

    def load(self, identity: str, data: bytes) -> bool:
        meta, _ = unpack_state(data)
        self._counts.put(identity, [max(int(meta.get("queries", 0)), 0)])
        return True

    def observe(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> Alarm | None:
        count = self._counts.get(identity)
        count[0] += len(x)
        if count[0] > self.budget:
            return Alarm(self.name, identity, float(count[0]), float(self.budget), count[0])
        return None


class LowMargin:
    """Alarm when more than ``rate`` of an identity's last ``window`` queries have a top-1 − top-2 probability
    margin below ``margin`` (near-boundary queries: JbDA, HopSkipJump, boundary walks).

    Memory per identity: ``window`` booleans (about 1 KiB with the default deque of 100).
    """

    name = "low_margin"

    def __init__(
        self,
        *,
        margin: float = 0.2,
        rate: float = 0.3,
        window: int = 100,
        min_queries: int = 30,
        max_identities: int = 10_000,
    ) -> None:
        if not (0 < margin < 1 and 0 < rate <= 1 and window >= min_queries >= 1):
            raise InputError("LowMargin needs margin in (0, 1), rate in (0, 1] and window >= min_queries >= 1.")
        self.margin, self.rate, self.window, self.min_queries = margin, rate, window, min_queries
        self._states: IdentityLRU[deque[bool]] = IdentityLRU(max_identities, deque)
        self._counts: IdentityLRU[list[int]] = IdentityLRU(max_identities, lambda: [0])
        self.trace: dict[str, float] | None = None  # calibration: each identity's highest low-margin share

    def bytes_per_identity(self, n_features: int) -> int:
        return 8 * self.window + 8

    def reset(self, identity: str) -> None:
        self._states.pop(identity)
        self._counts.pop(identity)

    def forget(self, identity: str) -> None:
        self.reset(identity)

    def layout(self) -> dict[str, Any]:
        return {"window": self.window}

    def adopt(self, old: PortableDetector) -> bool:
        return adopt_tables(self, old, "_states", "_counts")

    def dump(self, identity: str) -> bytes | None:
        window, count = self._states.peek(identity), self._counts.peek(identity)
        if window is None or count is None:
            return None
        return pack_flags("low", window, self.window, count[0])

    def load(self, identity: str, data: bytes) -> bool:
        loaded = unpack_flags("low", data, self.window)
        low, queries = loaded if loaded is not None else (deque(), 0)
        self._states.put(identity, low)
        self._counts.put(identity, [queries])
        return loaded is not None

    def observe(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> Alarm | None:
        if probs is None or probs.ndim != 2 or probs.shape[1] < 2:
            return None
        top = np.sort(probs, axis=1)[:, -2:]
        low = (top[:, 1] - top[:, 0]) < self.margin
        window = self._states.get(identity)
        count = self._counts.get(identity)
        alarm = None
        for flag in low:
            count[0] += 1
            window.append(bool(flag))
            if len(window) > self.window:
                window.popleft()
            if alarm is None and len(window) >= self.min_queries:
                share = sum(window) / len(window)
                if self.trace is not None:
                    self.trace[identity] = max(self.trace.get(identity, 0.0), share)
                if share > self.rate:
                    alarm = Alarm(self.name, identity, share, self.rate, count[0])
        return alarm
