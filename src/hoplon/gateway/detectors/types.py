"""Shared types of the gateway's stateful detectors: the protocol, alarms, and a bounded per-identity LRU."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Alarm", "Detector", "IdentityLRU"]

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

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, identity: str) -> bool:
        return identity in self._items
