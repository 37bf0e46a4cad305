"""Helpers shared by the black-box attacks (Square, HopSkipJump): query-budget checks, score margins, views.

A black-box attack never lets a target's query budget cut it off mid-step with nothing to show: before each
query it checks that the rows it is about to spend, plus the rows the framework needs to re-check its
output, still fit; if not, it stops and returns the best it has found so far.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hoplon.targets.types import QueryCounter

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Target

__all__ = ["WatchedCounter", "affordable", "image_view", "score_margin", "watch_budget"]


class WatchedCounter(QueryCounter):
    """A query counter that also remembers whether an attack stopped early because the budget would not fit."""

    __slots__ = ("stopped_early",)

    def __init__(self, counter: QueryCounter) -> None:
        super().__init__(counter.budget)
        self.queries = counter.queries
        self.calls = counter.calls
        self.stopped_early = False


@contextmanager
def watch_budget(target: Target) -> Iterator[WatchedCounter]:
    """Swap in a :class:`WatchedCounter` for the duration (queries carry over both ways)."""
    original = target.counter
    watched = WatchedCounter(original)
    target.counter = watched
    try:
        yield watched
    finally:
        original.queries, original.calls = watched.queries, watched.calls
        target.counter = original


def affordable(target: Target, rows: int, *, reserve: int) -> bool:
    """True when ``rows`` more model rows fit the target's budget with ``reserve`` rows left over."""
    remaining = target.counter.remaining
    ok = remaining is None or remaining - rows >= reserve
    if not ok and isinstance(target.counter, WatchedCounter):
        target.counter.stopped_early = True
    return ok


def score_margin(target: Target, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y − max_{i≠y} z_i`` per sample from the target's scores (log-probabilities for probability outputs).

    Positive exactly when the sample is still classified correctly; Square minimises it.
    """
    import torch

    scores = target.predict(x)
    if target.score_kind == "probabilities":
        scores = torch.log(scores.clamp_min(1e-30))
    true = scores.gather(1, y[:, None]).squeeze(1)
    others = scores.clone()
    others.scatter_(1, y[:, None], -torch.inf)
    return true - others.amax(dim=1)


def image_view(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """One sample's shape seen as ``(channels, height, width)``: images as they are, vectors as ``(1, 1, d)``."""
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    return 1, 1, math.prod(shape)
