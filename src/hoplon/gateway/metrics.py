"""Prometheus metrics of one gateway, in their own registry, with low-cardinality labels only.

With several workers (``hoplon serve --workers N``) ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a folder
under the state dir before the workers start: each worker then writes its values there, and ``registry`` is
a :class:`~prometheus_client.multiprocess.MultiProcessCollector` over all of them, so any worker's
``/metrics`` shows the totals. Gauges say how workers combine (``livemax``: the worst live worker).
"""

from __future__ import annotations

import atexit
import bisect
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["MULTIPROC_ENV", "STAGE_IDS", "STAGE_NAMES", "GatewayMetrics", "StageTimes", "multiprocess_mode"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_DEAD_MARKED: set[int] = set()


def multiprocess_mode() -> bool:
    """Whether prometheus_client writes values to the shared folder (decided when it was first imported)."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue and bool(os.environ.get(MULTIPROC_ENV))


def _mark_dead_at_exit() -> None:
    """Drop this worker's live gauges from the aggregate when it exits (its counters keep counting)."""
    pid = os.getpid()
    if pid in _DEAD_MARKED:
        return
    _DEAD_MARKED.add(pid)
    from prometheus_client import multiprocess

    folder = os.environ[MULTIPROC_ENV]

    def mark() -> None:
        if os.getpid() == pid:  # not in a forked child that inherited the handler
            multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]

    atexit.register(mark)


# The firewall's stages, in a fixed order: an index into this tuple names a stage on the request path.
STAGE_NAMES = (
    "admission",
    "authentication",
    "authorisation",
    "rate_limits",
    "validation",
    "detect",
    "model",
    "output",
    "audit",
)
STAGE_IDS = {name: i for i, name in enumerate(STAGE_NAMES)}


class StageTimes:
    """Per-stage latencies, buffered on the request path and folded into the stage histogram in batches.

    A request appends ``(stage id, seconds)`` pairs to :attr:`pending` (one list append per stage, no lock);
    :meth:`fold` adds what is pending to the histogram's children, as bucket counts and sums computed with
    numpy for a large batch. ``Histogram.observe`` costs ~40 bytecodes and a lock per observation, up to nine
    times per request. In one process the firewall folds at least once a second (at the end of a request)
    and before every scrape of ``/metrics``, so the histograms are at most a second behind. With several
    workers (``every_request``) a scrape answered by one worker must show the others' requests, so each
    request's pairs are folded as it ends. Appends and folds run on the event loop's thread.
    """

    FOLD_EVERY_S = 1.0
    FOLD_AT = 16384  # pairs: a burst folds early, so the buffer stays bounded
    _SMALL = 64  # pairs: fewer are added one by one (numpy's fixed costs would outweigh it)

    def __init__(self, histogram: Histogram, *, every_request: bool = False) -> None:
        self._histogram = histogram
        self._every_request = every_request
        self._children: list[Any] = [None] * len(STAGE_NAMES)  # made when a stage is first seen
        self.pending: list[tuple[int, float]] = []
        self.folded_at = time.perf_counter()
        bounds = [float(b) for b in histogram._upper_bounds]  # the labelled parent's bounds, +Inf last
        self._bound_list = bounds[:-1]
        self._bounds = np.asarray(bounds[:-1], dtype=np.float64)
        self._width = len(bounds)

    def due(self, now: float) -> bool:
        """Whether the request ending now should fold (``now``: a ``time.perf_counter()`` reading)."""
        return self._every_request or now - self.folded_at >= self.FOLD_EVERY_S or len(self.pending) >= self.FOLD_AT

    def _child(self, stage: int) -> Any:
        child = self._children[stage]
        if child is None:
            child = self._children[stage] = self._histogram.labels(STAGE_NAMES[stage])
        return child

    def fold(self) -> None:
        """Add what is pending to the histogram."""
        pending, self.pending = self.pending, []
        self.folded_at = time.perf_counter()
        if not pending:
            return
        if len(pending) <= self._SMALL:
            for stage, value in pending:
                self._observe(self._child(stage), value)
            return
        pairs = np.asarray(pending, dtype=np.float64)
        stages, seconds = pairs[:, 0].astype(np.intp), pairs[:, 1]
        # Histogram.observe's bucket: the first upper bound >= the value (+Inf, the last, takes the rest).
        width = self._width
        buckets = np.searchsorted(self._bounds, seconds, side="left")
        counts = np.bincount(stages * width + buckets, minlength=len(STAGE_NAMES) * width).reshape(-1, width)
        sums = np.bincount(stages, weights=seconds, minlength=len(STAGE_NAMES))
        for row in np.flatnonzero(counts.sum(axis=1)):
            child = self._child(int(row))
            cells = self._cells(child)
            if cells is None:
                for value in seconds[stages == row]:
                    child.observe(float(value))
                continue
            for bucket in np.flatnonzero(counts[row]):
                cells[bucket].inc(float(counts[row, bucket]))
            child._sum.inc(float(sums[row]))

    def _cells(self, child: Any) -> Any:
        """The child's bucket cells (one per upper bound), or None for a prometheus_client without them."""
        cells = getattr(child, "_buckets", None)
        return cells if cells is not None and len(cells) == self._width and hasattr(child, "_sum") else None

    def _observe(self, child: Any, value: float) -> None:
        """``child.observe(value)`` on its cells: the bucket found by bisection instead of a Python scan."""
        cells = self._cells(child)
        if cells is None:
            child.observe(value)
            return
        cells[bisect.bisect_left(self._bound_list, value)].inc(1.0)
        child._sum.inc(value)


_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.multiprocess = multiprocess_mode()
        if self.multiprocess:
            from prometheus_client import multiprocess

            r = CollectorRegistry(auto_describe=True)  # the metrics' values live in the shared folder
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
            _mark_dead_at_exit()
        self.requests = Counter(
            "hoplon_gateway_requests",
            "Requests by model, version, decision and status code.",
            ["model", "version", "decision", "code"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "hoplon_gateway_stage_seconds", "Time spent in each stage.", ["stage"], buckets=_BUCKETS, registry=r
        )
        self.auth_failures = Counter("hoplon_gateway_auth_failures", "Failed authentications.", ["reason"], registry=r)
        self.rate_limited = Counter(
            "hoplon_gateway_rate_limited", "Requests refused by a limit.", ["limit"], registry=r
        )
        self.stage_errors = Counter(
            "hoplon_gateway_stage_errors",
            "Failures inside a stage (e.g. Redis down): an alert.",
            ["stage", "on_error"],
            registry=r,
        )
        self.audit_write_errors = Counter(
            "hoplon_gateway_audit_write_errors", "Audit records that could not be written.", registry=r
        )
        self.config_reloads = Counter("hoplon_gateway_config_reloads", "Config reloads.", ["result"], registry=r)
        self.checkpoint_age = Gauge(
            "hoplon_gateway_ledger_checkpoint_age_seconds",
            "Seconds since the last signed checkpoint.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.auth_guard = Gauge(
            "hoplon_gateway_auth_guard_tripped",
            "1 while the global failed-auth guard is tripped.",
            registry=r,
            multiprocess_mode="livemax",
        )

        self.stage_times = StageTimes(self.stage_seconds, every_request=self.multiprocess)
        self._request_children: dict[tuple[str, str, str, int], Counter] = {}
        self._requests_pending: dict[tuple[str, str, str, int], int] = {}

    def request(self, model: str, version: str, decision: str, code: int) -> None:
        """Count a request (added to the counter at the next :meth:`fold`, like the stage times)."""
        key = (model, version, decision, code)
        pending = self._requests_pending
        pending[key] = pending.get(key, 0) + 1

    def due(self, now: float) -> bool:
        """Whether the request ending now (``now``: its ``time.perf_counter()``) should :meth:`fold`."""
        return self.stage_times.due(now)

    def fold(self) -> None:
        """Add the buffered stage times and request counts to the exported metrics."""
        self.stage_times.fold()
        pending, self._requests_pending = self._requests_pending, {}
        for key, count in pending.items():
            child = self._request_children.get(key)
            if child is None:
                model, version, decision, code = key
                child = self._request_children[key] = self.requests.labels(model, version, decision, str(code))
            child.inc(count)

    def track_checkpoint_age(self, age: Callable[[], float]) -> None:
        if not self.multiprocess:
            self.checkpoint_age.set_function(age)
            return
        # A function gauge is not written to the shared folder: a daemon thread stores the value every second.
        gauge, ref = self.checkpoint_age, weakref.ref(self)

        def update() -> None:
            while ref() is not None:
                gauge.set(age())
                time.sleep(1.0)

        gauge.set(age())
        threading.Thread(target=update, name="hoplon-metrics", daemon=True).start()
