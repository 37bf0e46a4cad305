"""PRADA: per-identity distribution of minimum distances between successive queries, Shapiro–Wilk tested."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hoplon.core.errors import InputError
from hoplon.gateway.detectors.types import Alarm, IdentityLRU, PortableDetector, adopt_tables, pack_state, unpack_state

__all__ = ["PRADA"]


@dataclass(slots=True)
class _State:
    growing: np.ndarray  # (cap, d) float16: the growing set G
    classes: np.ndarray  # (cap,) int16: the class each G member got
    n_growing: int = 0
    next_slot: int = 0
    distances: list[float] = field(default_factory=list)  # the last ``window`` minimum distances D
    queries: int = 0


class PRADA:
    """PRADA's detector: for each query, the L2 distance to the nearest earlier query *of the same predicted
    class* in the identity's growing set; the set of these distances is normal for benign traffic and not for
    synthetic (JbDA-style) queries. Alarm when the Shapiro–Wilk W of the last ``window`` distances falls
    below ``delta``.

    References:
        Juuti, Szyller, Marchal, Asokan. PRADA: Protecting against DNN Model Stealing Attacks. EuroS&P 2019.
        https://arxiv.org/abs/1805.02628

    Args:
        delta: the W threshold in (0, 1) (calibrated by ``hoplon calibrate``; default 0.90).
        min_queries: distances needed before the test runs (default 40).
        window: distances kept per identity, a ring (default 200).
        growing_cap: rows kept in the growing set per identity (default 128; float16).
        test_every: run the test every this many distances (default 5; Shapiro–Wilk is O(n log n)).
        max_identities: identities tracked (LRU; default 10,000).

    Memory per identity: ``growing_cap × (2·d + 2)`` bytes + ``8 × window``: 18.2 KiB for 8×8 inputs with the
    defaults, so about 178 MiB per 10,000 identities.
    """

    name = "prada"

    def __init__(
        self,
        *,
        n_features: int,
        delta: float = 0.90,
        min_queries: int = 40,
        window: int = 200,
        growing_cap: int = 128,
        test_every: int = 5,
        max_identities: int = 10_000,
    ) -> None:
        if not 0 < delta < 1:
            raise InputError(f"The 'delta' parameter of PRADA must be in (0, 1). Got {delta}.")
        if min_queries < 3 or window < min_queries or growing_cap < 1 or test_every < 1:
            raise InputError("PRADA needs min_queries >= 3, window >= min_queries, growing_cap >= 1, test_every >= 1.")
        self.delta = delta
        self.min_queries = min_queries
        self.window = window
        self.growing_cap = growing_cap
        self.test_every = test_every
        self.n_features = n_features
        self._states: IdentityLRU[_State] = IdentityLRU(max_identities, self._fresh)
        self.trace: dict[str, float] | None = None  # calibration: each identity's lowest W

    def _fresh(self) -> _State:
        return _State(np.zeros((self.growing_cap, self.n_features), np.float16), np.zeros(self.growing_cap, np.int16))

    def bytes_per_identity(self, n_features: int) -> int:
        return self.growing_cap * (2 * n_features + 2) + 8 * self.window

    def reset(self, identity: str) -> None:
        self._states.pop(identity)

    def forget(self, identity: str) -> None:
        self._states.pop(identity)

    def layout(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "growing_cap": self.growing_cap, "window": self.window}

    def adopt(self, old: PortableDetector) -> bool:
        return adopt_tables(self, old, "_states")

    def dump(self, identity: str) -> bytes | None:
        state = self._states.peek(identity)
        if state is None:
            return None
        n = state.n_growing
        meta = {**self.layout(), "next_slot": state.next_slot, "queries": state.queries}
        arrays = {
            "growing": state.growing[:n],
            "classes": state.classes[:n],
            "distances": np.asarray(state.distances, np.float64),
        }
        return pack_state(meta, arrays)

    def load(self, identity: str, data: bytes) -> bool:
        meta, arrays = unpack_state(data)
        state = self._fresh()
        growing, classes, distances = arrays.get("growing"), arrays.get("classes"), arrays.get("distances")
        if (
            {k: meta.get(k) for k in self.layout()} != self.layout()
            or growing is None
            or classes is None
            or distances is None
            or growing.shape[1:] != (self.n_features,)
            or not len(growing) == len(classes) <= self.growing_cap
            or distances.ndim != 1
            or len(distances) > self.window
            or not 0 <= int(meta.get("next_slot", -1)) < self.growing_cap
        ):
            self._states.put(identity, state)
            return False
        n = len(growing)
        state.growing[:n] = growing
        state.classes[:n] = classes
        state.n_growing, state.next_slot = n, int(meta["next_slot"])
        state.distances = [float(v) for v in distances]
        state.queries = max(int(meta.get("queries", 0)), 0)
        self._states.put(identity, state)
        return True

    def statistic(self, identity: str) -> float | None:
        """The current W of ``identity`` (``None`` before ``min_queries`` distances)."""
        state = self._states.get(identity)
        return _shapiro(state.distances) if len(state.distances) >= self.min_queries else None

    def observe(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> Alarm | None:
        state = self._states.get(identity)
        rows = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        labels = probs.argmax(1) if probs is not None and len(probs) == len(rows) else np.zeros(len(rows), np.int64)
        alarm: Alarm | None = None
        for row, label in zip(rows, labels, strict=True):
            state.queries += 1
            same = state.classes[: state.n_growing] == label
            if not same.any():
                self._add(state, row, int(label))
                continue
            members = state.growing[: state.n_growing][same].astype(np.float32)
            d = float(np.sqrt(((members - row) ** 2).sum(1)).min())
            ds = state.distances
            threshold = float(np.mean(ds) - np.std(ds)) if ds else 0.0
            ds.append(d)
            if len(ds) > self.window:
                del ds[0]
            if d > threshold:
                self._add(state, row, int(label))
            if len(ds) >= self.min_queries and len(ds) % self.test_every == 0 and alarm is None:
                w = _shapiro(ds)
                if self.trace is not None:
                    self.trace[identity] = min(self.trace.get(identity, 1.0), w)
                if w < self.delta:
                    alarm = Alarm(self.name, identity, w, self.delta, state.queries)
        return alarm

    def _add(self, state: _State, row: np.ndarray, label: int) -> None:
        slot = state.next_slot
        state.growing[slot] = row
        state.classes[slot] = label
        state.next_slot = (slot + 1) % self.growing_cap
        state.n_growing = min(state.n_growing + 1, self.growing_cap)


def _shapiro(values: list[float]) -> float:
    from scipy import stats

    arr = np.asarray(values, dtype=np.float64)
    if np.ptp(arr) == 0:
        return 0.0  # identical distances: as far from normal as it gets (and scipy would warn)
    return float(stats.shapiro(arr).statistic)
