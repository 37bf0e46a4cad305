"""The detection engine: detectors per identity, an escalation policy, containment state, and a worker thread.

Alarms escalate per policy: ``log`` → ``alert`` → ``throttle`` → ``degrade`` (labels only) → ``block``
(quarantine: every request of the identity gets ``403``). Each detector names the action its first alarm
takes; each further alarm of the same identity climbs one step, up to ``max_action``. In ``shadow`` mode the
actions are recorded and logged but never applied.

The engine runs off the hot path by default: the gateway puts ``(identity, rows, answer)`` on a bounded queue
and a worker thread feeds the detectors; a full queue drops the observation and counts it (the request is
never delayed). The containment state is read on the hot path (one dict lookup).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hoplon.core.errors import InputError
from hoplon.gateway.detectors.types import Alarm, Detector, PortableDetector

__all__ = ["ACTIONS", "Action", "Containment", "DetectionEngine", "DetectionWorker", "Policy"]

log = logging.getLogger("hoplon.gateway.detectors")

Action = Literal["log", "alert", "throttle", "degrade", "block"]
ACTIONS: tuple[Action, ...] = ("log", "alert", "throttle", "degrade", "block")


@dataclass(frozen=True, slots=True)
class Policy:
    """What alarms do. ``actions`` maps a detector to the action of its first alarm (default ``block``);
    ``max_action`` caps escalation; ``throttle_per_s`` is the request rate a throttled identity keeps;
    ``quarantine_s`` how long a block lasts (``None``: until lifted by ``hoplon incident``)."""

    mode: Literal["enforce", "shadow"] = "enforce"
    actions: Mapping[str, Action] = field(default_factory=dict)
    max_action: Action = "block"
    throttle_per_s: float = 1.0
    quarantine_s: float | None = None

    def __post_init__(self) -> None:
        for name, action in {**self.actions, "max_action": self.max_action}.items():
            if action not in ACTIONS:
                raise InputError(f"The action for {name} must be one of {', '.join(ACTIONS)}. Got {action!r}.")

    def first(self, detector: str) -> Action:
        return self.actions.get(detector, "block")


@dataclass(slots=True)
class Containment:
    """An identity's current containment: its action level, since when, and the alarms behind it."""

    action: Action
    since: float
    alarms: list[Alarm] = field(default_factory=list)
    last_request: float = 0.0


class DetectionEngine:
    """Runs detectors over each identity's traffic and keeps the containment state.

    ``on_alarm`` (e.g. a ledger writer) is called for every alarm with the alarm and the resulting action.
    """

    def __init__(
        self,
        detectors: Sequence[Detector],
        policy: Policy | None = None,
        *,
        on_alarm: Callable[[Alarm, Action], None] | None = None,
        max_contained: int = 100_000,
    ) -> None:
        self.detectors = list(detectors)
        self.policy = policy or Policy()
        self.on_alarm = on_alarm
        self.max_contained = max_contained
        self.contained: dict[str, Containment] = {}
        self.alarms: list[Alarm] = []
        self._fired: set[tuple[str, str]] = set()  # (detector, identity): each detector alarms once per identity
        self._lock = threading.Lock()
        self._observe_lock = threading.RLock()  # one observation at a time against a settings reload
        # Errors of a shared storage that pass (Redis down): the worker drops the observation and goes on.
        self.transient_errors: tuple[type[BaseException], ...] = ()

    def observe(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> list[Alarm]:
        """Feed one request's rows (``(batch, ...)``) and the model's probabilities (or ``None``)."""
        fired = []
        with self._observe_lock:
            for detector in self.detectors:
                alarm = detector.observe(identity, x, probs)
                if alarm is not None and (detector.name, identity) not in self._fired:
                    if len(self._fired) >= 4 * self.max_contained:
                        self._fired.clear()
                    self._fired.add((detector.name, identity))
                    fired.append(alarm)
                    self._escalate(alarm)
        return fired

    def reconfigure(self, detectors: Sequence[Detector], policy: Policy) -> list[str]:
        """New settings (a config reload): each new detector takes over the per-identity state of the old one
        of the same name when the state's layout is unchanged (thresholds, actions, policy); otherwise it
        starts afresh, logged. The containment state is kept. Returns the names of the rebuilt detectors."""
        rebuilt = []
        with self._observe_lock:
            old = {d.name: d for d in self.detectors}
            for detector in detectors:
                previous = old.get(detector.name)
                if previous is None:
                    continue
                if (
                    isinstance(detector, PortableDetector)
                    and isinstance(previous, PortableDetector)
                    and detector.adopt(previous)
                ):
                    continue
                rebuilt.append(detector.name)
                log.warning("detector %s: its state layout changed on reload; its state starts afresh", detector.name)
            self.detectors = list(detectors)
            self.policy = policy
        return rebuilt

    def level(self, current: Action | None, alarm: Alarm) -> Action:
        """The action an alarm leads to, given the identity's current action (the escalation ladder)."""
        first = ACTIONS.index(self.policy.first(alarm.detector))
        cap = ACTIONS.index(self.policy.max_action)
        level = first if current is None else max(first, ACTIONS.index(current) + 1)
        return ACTIONS[min(level, cap)]

    def announce(self, alarm: Alarm, action: Action) -> None:
        """Log the alarm (``ALERT`` from ``alert`` up) and hand it to ``on_alarm``."""
        shown = "SHADOW " if self.policy.mode == "shadow" else ""
        level_fn = log.error if ACTIONS.index(action) >= ACTIONS.index("alert") else log.info
        level_fn(
            "ALERT %sdetector %s: identity %s (score %.4g vs %.4g at query %d) -> %s",
            shown,
            alarm.detector,
            alarm.identity,
            alarm.score,
            alarm.threshold,
            alarm.at_query,
            action,
        )
        if self.on_alarm is not None:
            self.on_alarm(alarm, action)

    def _escalate(self, alarm: Alarm) -> None:
        with self._lock:
            current = self.contained.get(alarm.identity)
            action = self.level(None if current is None else current.action, alarm)
            if current is None:
                if len(self.contained) >= self.max_contained:
                    oldest = min(self.contained, key=lambda k: self.contained[k].since)
                    del self.contained[oldest]
                current = self.contained[alarm.identity] = Containment(action, time.time())
            current.action = action
            current.alarms = [*current.alarms[-9:], alarm]
            self.alarms = [*self.alarms[-999:], alarm]
        self.announce(alarm, action)

    def action(self, identity: str) -> Action | None:
        """The action in force for ``identity`` (``None``: nothing, or shadow mode)."""
        state = self.contained.get(identity)
        if state is None or self.policy.mode == "shadow":
            return None
        if (
            state.action == "block"
            and self.policy.quarantine_s is not None
            and time.time() - state.since > self.policy.quarantine_s
        ):
            self.release(identity)
            return None
        return state.action

    def quarantine(self, identity: str, action: Action = "block") -> None:
        """Contain ``identity`` by hand (``hoplon incident quarantine``)."""
        with self._lock:
            self.contained[identity] = Containment(action, time.time())

    def release(self, identity: str) -> None:
        with self._lock:
            self.contained.pop(identity, None)
            self._fired = {f for f in self._fired if f[1] != identity}
        for detector in self.detectors:
            detector.reset(identity)

    def memory_per_identity(self, n_features: int) -> dict[str, int]:
        """Bytes of detector state per identity, by detector (the figures the docs quote per 10,000)."""
        return {d.name: d.bytes_per_identity(n_features) for d in self.detectors}

    def close(self) -> None:
        """Release what the engine holds (nothing in memory; a shared storage's connections)."""


class DetectionWorker:
    """A daemon thread feeding a :class:`DetectionEngine` from a bounded queue (off the request path)."""

    def __init__(self, engine: DetectionEngine, *, queue_size: int = 10_000) -> None:
        self.engine = engine
        self.queue: queue.Queue[tuple[str, np.ndarray, Any] | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.processed = 0
        self.error: BaseException | None = None
        self.storage_error: BaseException | None = None  # the shared storage is down (observations dropped)
        self.storage_errors = 0
        self._backlog: dict[str, int] = {}  # observations queued and not yet processed, per identity
        self._backlog_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="hoplon-detect", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    def submit(self, identity: str, x: np.ndarray, answer: Any) -> bool:
        """Queue one observation; ``answer`` is a probability matrix or a callable returning one. False if full."""
        with self._backlog_lock:
            self._backlog[identity] = self._backlog.get(identity, 0) + 1
        try:
            self.queue.put_nowait((identity, x, answer))
        except queue.Full:
            self._settle(identity)
            self.dropped += 1
            return False
        return True

    def backlog(self, identity: str) -> int:
        """How many of ``identity``'s observations wait for the detectors (read on the request path)."""
        return self._backlog.get(identity, 0)

    def _settle(self, identity: str) -> None:
        with self._backlog_lock:
            left = self._backlog.get(identity, 0) - 1
            if left > 0:
                self._backlog[identity] = left
            else:
                self._backlog.pop(identity, None)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                identity, x, answer = item
                probs = answer() if callable(answer) else answer
                self.engine.observe(identity, x, probs)
                self.processed += 1
                if self.storage_error is not None:
                    log.warning("detector storage is back: detection resumes")
                    self.storage_error = None
            except self.engine.transient_errors as exc:  # shared storage down: drop, alert once, keep running
                self.storage_errors += 1
                if self.storage_error is None:
                    log.error(
                        "ALERT detector storage unavailable, observations dropped: %s: %s", type(exc).__name__, exc
                    )
                self.storage_error = exc
            except Exception as exc:  # the worker boundary: record the crash; the gateway alerts and fails to its side
                self.error = exc
                log.error("ALERT detector worker crashed: %s: %s", type(exc).__name__, exc)
                return
            finally:
                if item is not None:
                    self._settle(item[0])
                self.queue.task_done()

    def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued observation is processed (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self.queue.unfinished_tasks and time.monotonic() < deadline and self.alive:
            time.sleep(0.002)

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self.queue.put(None, timeout=1.0)
            except queue.Full:
                return
            self._thread.join(timeout=2.0)
