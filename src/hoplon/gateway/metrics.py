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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.values import MutexValue

__all__ = ["MULTIPROC_ENV", "GatewayMetrics", "StageTimer", "multiprocess_mode"]

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


class StageTimer:
    """One stage's histogram child, observed without prometheus_client's per-call checks and bucket scan.

    ``Histogram.observe`` checks observability and walks the buckets in Python on every call (about 9 calls
    per request here); this finds the bucket by bisection and adds to the child's own value cells (the same
    cells, in-process or in the multiprocess folder, so the exported samples are identical). A client
    library without those cells falls back to ``observe``. In-process cells (``MutexValue``) are written
    directly under ``lock``, one lock shared by all stages, so a request's stage times go in with one
    acquisition (:meth:`GatewayMetrics.record_stages`); the exporter reads each cell under its own lock, which
    sees the value before or after a write, never half of one.
    """

    __slots__ = ("_bounds", "_buckets", "_child", "_direct", "_last", "_lock", "_sum")

    def __init__(self, child: Histogram, lock: threading.Lock) -> None:
        self._child = child
        self._lock = lock
        cells: Any = child
        self._bounds: list[float] | None = None
        self._direct = False
        if all(hasattr(cells, name) for name in ("_upper_bounds", "_buckets", "_sum")):
            bounds = [float(b) for b in cells._upper_bounds]
            if len(bounds) == len(cells._buckets) and bounds and bounds[-1] == float("inf"):
                self._bounds, self._buckets, self._sum = bounds, list(cells._buckets), cells._sum
                self._last = len(bounds) - 1
                self._direct = all(type(c) is MutexValue for c in (self._sum, *self._buckets))

    def observe(self, seconds: float) -> None:
        if self._bounds is None:
            self._child.observe(seconds)
            return
        # The first bucket whose upper bound is >= seconds, as Histogram.observe picks it (the last is +Inf).
        bucket = self._buckets[min(bisect.bisect_left(self._bounds, seconds), self._last)]
        if self._direct:
            with self._lock:
                self._sum._value += seconds
                bucket._value += 1.0
            return
        self._sum.inc(seconds)
        bucket.inc(1)

    def _add(self, seconds: float) -> None:
        """Add one observation to in-process cells; the caller holds the shared lock."""
        self._sum._value += seconds
        self._buckets[min(bisect.bisect_left(self._bounds, seconds), self._last)]._value += 1.0  # type: ignore[arg-type]


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

        self._stage_children: dict[str, StageTimer] = {}
        self._stage_lock = threading.Lock()
        self._request_children: dict[tuple[str, str, str, int], Counter] = {}

    def stage_time(self, stage: str) -> StageTimer:
        """The stage's histogram child, cached (``labels()`` costs ~10 µs per call), with a cheaper observe."""
        timer = self._stage_children.get(stage)
        if timer is None:
            timer = self._stage_children[stage] = StageTimer(self.stage_seconds.labels(stage), self._stage_lock)
        return timer

    def record_stages(self, timings: list[tuple[StageTimer, float]]) -> None:
        """Observe one request's ``(stage timer, seconds)`` pairs, taking the shared lock once where possible."""
        if all(timer._direct for timer, _ in timings):
            with self._stage_lock:
                for timer, seconds in timings:
                    timer._add(seconds)
            return
        for timer, seconds in timings:
            timer.observe(seconds)

    def request(self, model: str, version: str, decision: str, code: int) -> None:
        key = (model, version, decision, code)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(model, version, decision, str(code))
        child.inc()

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
