"""The gateway's ``detect`` stage: builds the detectors from config and connects them to the request chain.

``check`` runs on the hot path (a dict lookup: is the identity blocked, throttled or degraded; with
``storage: redis://…`` a cached lookup or one ``GET``); ``record`` hands the request's rows and the model's raw
answer to the worker (or, with ``inline: true``, runs the detectors before returning). The model's scores are
parsed from the answer in the worker. ``reconfigure`` applies new settings (a config reload) and keeps the
per-identity state where its layout allows.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from hoplon.core.errors import InputError
from hoplon.gateway.detectors.engine import Action, DetectionEngine, DetectionWorker, Policy
from hoplon.gateway.detectors.prada import PRADA
from hoplon.gateway.detectors.redis_state import RedisDetectionEngine, RedisState
from hoplon.gateway.detectors.signals import LowMargin, QueryVolume
from hoplon.gateway.detectors.similarity import SharedFingerprints, StatefulSimilarity
from hoplon.gateway.detectors.types import Alarm, Detector

__all__ = [
    "DETECT_DEFAULTS",
    "DetectStage",
    "DetectorUnavailable",
    "build_detectors",
    "build_policy",
    "probabilities_of",
]

log = logging.getLogger("hoplon.gateway.detectors")

# The detect stage is off unless a config turns it on; these are the calibrated settings for the digits demo.
DETECT_DEFAULTS: dict[str, Any] = {
    "mode": "off",
    "on_error": "fail_open",
    "inline": False,
    "storage": "memory",  # or redis://host:port/db: state shared by every worker (redis_state.py)
    "key_prefix": "hoplon:detect:",
    "state_ttl_s": 86_400,
    "cache_s": 1.0,
    "queue_size": 10_000,
    "max_lag": 32,
    "max_identities": 10_000,
    "input_range": [0.0, 1.0],
    "max_action": "block",
    "throttle_per_s": 1.0,
    "quarantine_s": None,
    "prada": {"enabled": True, "delta": 0.90, "min_queries": 40, "window": 200, "growing_cap": 128, "action": "block"},
    "similarity": {"enabled": True, "k": 1, "buffer": 64, "threshold": 0.75, "hits": 3, "action": "block"},
    "shared": {"enabled": True, "capacity": 4096, "threshold": 0.75, "hits": 5, "window": 100, "action": "block"},
    "volume": {"enabled": True, "budget": 20_000, "action": "throttle"},
    "low_margin": {"enabled": True, "margin": 0.2, "rate": 0.5, "window": 100, "min_queries": 30, "action": "alert"},
}


class DetectorUnavailable(RuntimeError):
    """The detector worker is not running (it crashed); the stage's ``on_error`` decides what happens."""


def _merged(spec: Mapping[str, Any]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DETECT_DEFAULTS.items()}
    for key, value in spec.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def build_policy(spec: Mapping[str, Any]) -> Policy:
    """The escalation policy described by a ``stages.detect`` mapping."""
    s = _merged(spec)
    actions: dict[str, Action] = {}
    for name in ("prada", "similarity", "shared", "volume", "low_margin"):
        if s[name].get("enabled", True):
            actions[name] = s[name].get("action", "block")
    mode: Literal["enforce", "shadow"] = "shadow" if s["mode"] == "shadow" else "enforce"
    return Policy(
        mode=mode,
        actions=actions,
        max_action=s["max_action"],
        throttle_per_s=float(s["throttle_per_s"]),
        quarantine_s=None if s["quarantine_s"] is None else float(s["quarantine_s"]),
    )


def _redis_state(s: Mapping[str, Any]) -> RedisState | None:
    storage = str(s["storage"])
    if storage in ("memory", "memory://"):
        return None
    return RedisState(
        storage,
        prefix=str(s["key_prefix"]),
        state_ttl_s=float(s["state_ttl_s"]),
        max_identities=int(s["max_identities"]),
        cache_s=float(s["cache_s"]),
    )


_STORAGE_KEYS = ("storage", "key_prefix", "state_ttl_s", "cache_s", "max_identities")


def build_detectors(spec: Mapping[str, Any], n_features: int) -> tuple[list[Detector], Policy]:
    """The enabled detectors and the escalation policy described by a ``stages.detect`` mapping."""
    s = _merged(spec)
    low, high = (float(v) for v in s["input_range"])
    m = int(s["max_identities"])
    detectors: list[Detector] = []
    actions: dict[str, Action] = {}

    def opts(name: str) -> dict[str, Any] | None:
        d = dict(s[name])
        if not d.pop("enabled", True):
            return None
        actions[name] = d.pop("action", "block")
        return d

    if (o := opts("prada")) is not None:
        detectors.append(PRADA(n_features=n_features, max_identities=m, **o))
    if (o := opts("similarity")) is not None:
        detectors.append(StatefulSimilarity(n_features=n_features, low=low, high=high, max_identities=m, **o))
    if (o := opts("shared")) is not None:
        detectors.append(SharedFingerprints(n_features=n_features, low=low, high=high, max_identities=m, **o))
    if (o := opts("volume")) is not None:
        detectors.append(QueryVolume(max_identities=m, **o))
    if (o := opts("low_margin")) is not None:
        detectors.append(LowMargin(max_identities=m, **o))
    return detectors, build_policy(s)


def probabilities_of(body: bytes) -> np.ndarray | None:
    """Class probabilities from a model answer (v2 ``outputs`` or plain ``predictions``/``probabilities``/
    ``scores``); logits are turned into probabilities. ``None`` when the answer holds no score matrix."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    matrix: Any = None
    if isinstance(doc, dict) and isinstance(doc.get("outputs"), list):
        for out in doc["outputs"]:
            if isinstance(out, dict) and isinstance(out.get("shape"), list) and len(out["shape"]) == 2:
                matrix = np.asarray(out.get("data"), dtype=np.float64).reshape(out["shape"])
                break
    elif isinstance(doc, dict):
        for key in ("predictions", "probabilities", "scores"):
            if isinstance(doc.get(key), list):
                matrix = np.asarray(doc[key], dtype=np.float64)
                break
    if matrix is None or matrix.ndim != 2:
        return None
    if not (np.all(matrix >= 0) and np.allclose(matrix.sum(1), 1.0, atol=1e-3)):
        e = np.exp(matrix - matrix.max(1, keepdims=True))
        matrix = e / e.sum(1, keepdims=True)
    probs: np.ndarray = matrix
    return probs


class DetectStage:
    """The stage object the firewall holds; built lazily on the first request (it needs the feature count).

    With ``storage: redis://…`` the containment state is in Redis from the start (a quarantine ordered before
    any traffic, or by another worker, holds at once) and the detectors' state from the first request.
    """

    def __init__(self, spec: Mapping[str, Any], *, on_alarm: Callable[[Alarm, Action], None] | None = None) -> None:
        self.spec = _merged(spec)
        self.inline = bool(self.spec["inline"])
        self.on_alarm = on_alarm
        self.policy = build_policy(self.spec)
        self.shared = _redis_state(self.spec)
        self.engine: DetectionEngine | None = None
        self.worker: DetectionWorker | None = None
        self.n_features: int | None = None
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._pending: dict[str, Action] = {}  # quarantines ordered before the first request built the engine

    def _ensure(self, n_features: int) -> DetectionEngine:
        if self.engine is None:
            with self._lock:
                if self.engine is None:
                    self._build(n_features)
        if self.engine is None:  # _build always sets it; this keeps the type exact
            raise DetectorUnavailable("the detect stage could not be built")
        return self.engine

    def _build(self, n_features: int) -> None:
        detectors, policy = build_detectors(self.spec, n_features)
        engine: DetectionEngine
        if self.shared is not None:
            engine = RedisDetectionEngine(detectors, policy, state=self.shared, on_alarm=self.on_alarm)
        else:
            engine = DetectionEngine(detectors, policy, on_alarm=self.on_alarm)
        for identity, action in self._pending.items():
            engine.quarantine(identity, action)
        self._pending.clear()
        if not self.inline:
            self.worker = DetectionWorker(engine, queue_size=int(self.spec["queue_size"]))
        self.n_features = n_features
        self.engine = engine

    def reconfigure(self, spec: Mapping[str, Any]) -> None:
        """Apply new settings (a config reload) from the next request on. Thresholds, actions and the policy
        change in place; a detector whose state layout changed (``window``, ``buffer``, ``growing_cap``,
        ``capacity``, ``input_range``) starts afresh, logged; a new ``storage`` starts a new engine on it.
        Everything is built and validated before anything is swapped: a bad spec raises and changes nothing."""
        merged = _merged(spec)
        if merged == self.spec:
            return
        policy = build_policy(merged)
        new_storage = any(merged[k] != self.spec[k] for k in _STORAGE_KEYS if k != "max_identities") or (
            self.shared is not None and merged["max_identities"] != self.spec["max_identities"]
        )
        shared = _redis_state(merged) if new_storage else self.shared
        try:  # validated even before the first request (the feature count only sizes the arrays)
            detectors: list[Detector] | None = build_detectors(merged, self.n_features or 1)[0]
            if self.n_features is None:
                detectors = None
        except InputError:
            if shared is not self.shared and shared is not None:
                shared.close()
            raise
        with self._lock:
            old_worker, old_engine, old_shared = self.worker, self.engine, self.shared
            restart = merged["inline"] != self.spec["inline"] or merged["queue_size"] != self.spec["queue_size"]
            self.spec, self.inline, self.policy, self.shared = merged, bool(merged["inline"]), policy, shared
            if old_engine is None or detectors is None:
                pass
            elif new_storage:
                log.warning("detect stage: storage settings changed; detector state starts afresh on the new storage")
                self.engine, self.worker = None, None
                self._build(int(self.n_features or 1))
            else:
                old_engine.reconfigure(detectors, policy)
                if restart:
                    self.worker = (
                        None if self.inline else DetectionWorker(old_engine, queue_size=int(merged["queue_size"]))
                    )
        if old_worker is not None and old_worker is not self.worker:
            old_worker.stop()
        if new_storage:
            if old_engine is not None and old_engine is not self.engine:
                old_engine.close()
            elif old_shared is not None and old_shared is not shared:
                old_shared.close()
        log.warning("detect stage reconfigured: mode %s, storage %s", merged["mode"], _shown(str(merged["storage"])))

    def check(self, identity: str) -> tuple[int, str, str] | None:
        """On the hot path: ``(status, reason, message)`` to refuse with, or ``None``. Raises
        :class:`DetectorUnavailable` when the worker has crashed, and the storage's error when shared storage
        is unreachable (the stage's ``on_error`` applies)."""
        if self.worker is not None and not self.worker.alive:
            raise DetectorUnavailable("the detector worker is not running")
        lag = int(self.spec["max_lag"] or 0)
        if lag and self.worker is not None and self.worker.backlog(identity) >= lag:
            # Backpressure: an identity may not run more than ``max_lag`` queries ahead of its own analysis.
            return 429, "detect_backlog", "Too many of this identity's queries are still being analysed; retry."
        engine = self.engine
        action: Action | None
        if engine is not None:
            action = engine.action(identity)
        elif self.shared is not None:
            action = self.shared.action(identity, self.policy)
        else:
            action = None if self.policy.mode == "shadow" else self._pending.get(identity)
        if action == "block":
            return 403, "quarantined", "This identity is quarantined after a detector alarm."
        if action == "throttle":
            now = time.monotonic()
            gap = 1.0 / max(self.policy.throttle_per_s, 1e-9)
            last = self._last.get(identity, 0.0)
            if now - last < gap:
                return 429, "throttled", "This identity is throttled after a detector alarm."
            if len(self._last) >= 100_000:
                self._last.clear()
            self._last[identity] = now
        return None

    def degraded(self, identity: str) -> bool:
        """Whether ``identity`` gets labels only (the ``degrade`` action)."""
        return self.engine is not None and self.engine.action(identity) == "degrade"

    def record(self, identity: str, x: np.ndarray, body: bytes) -> None:
        """Hand one served request to the detectors (queued, or at once with ``inline``)."""
        engine = self._ensure(int(np.prod(x.shape[1:])) if x.ndim > 1 else 1)
        worker = self.worker
        if self.inline or worker is None:
            engine.observe(identity, x, probabilities_of(body))
            return
        if not worker.submit(identity, x, lambda: probabilities_of(body)):
            log.error("ALERT detector queue full: an observation of %s was dropped", identity)

    def quarantine(self, identity: str, action: Action = "block") -> None:
        """Contain ``identity`` by hand (``hoplon incident quarantine``)."""
        with self._lock:
            engine = self.engine
            if engine is None:
                if self.shared is not None:
                    self.shared.contain(identity, self.policy, lambda current: action)
                else:
                    self._pending[identity] = action
                return
        engine.quarantine(identity, action)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.engine is not None:
            self.engine.close()
        elif self.shared is not None:
            self.shared.close()


def _shown(storage: str) -> str:
    """A storage URI without its password, for the log."""
    if "@" not in storage:
        return storage
    scheme, _, rest = storage.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
