"""The gateway's ``detect`` stage: builds the detectors from config and connects them to the request chain.

``check`` runs on the hot path (a dict lookup: is the identity blocked, throttled or degraded);
``record`` hands the request's rows and the model's raw answer to the worker (or, with ``inline: true``,
runs the detectors before returning). The model's scores are parsed from the answer in the worker.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from hoplon.gateway.detectors.engine import Action, DetectionEngine, DetectionWorker, Policy
from hoplon.gateway.detectors.prada import PRADA
from hoplon.gateway.detectors.signals import LowMargin, QueryVolume
from hoplon.gateway.detectors.similarity import SharedFingerprints, StatefulSimilarity
from hoplon.gateway.detectors.types import Alarm, Detector

__all__ = ["DETECT_DEFAULTS", "DetectStage", "DetectorUnavailable", "build_detectors", "probabilities_of"]

log = logging.getLogger("hoplon.gateway.detectors")

# The detect stage is off unless a config turns it on; these are the calibrated settings for the digits demo.
DETECT_DEFAULTS: dict[str, Any] = {
    "mode": "off",
    "on_error": "fail_open",
    "inline": False,
    "queue_size": 10_000,
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
    mode: Literal["enforce", "shadow"] = "shadow" if s["mode"] == "shadow" else "enforce"
    policy = Policy(
        mode=mode,
        actions=actions,
        max_action=s["max_action"],
        throttle_per_s=float(s["throttle_per_s"]),
        quarantine_s=None if s["quarantine_s"] is None else float(s["quarantine_s"]),
    )
    return detectors, policy


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
    """The stage object the firewall holds; built lazily on the first request (it needs the feature count)."""

    def __init__(self, spec: Mapping[str, Any], *, on_alarm: Callable[[Alarm, Action], None] | None = None) -> None:
        self.spec = _merged(spec)
        self.inline = bool(self.spec["inline"])
        self.on_alarm = on_alarm
        self.engine: DetectionEngine | None = None
        self.worker: DetectionWorker | None = None
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._pending: dict[str, Action] = {}  # quarantines ordered before the first request built the engine

    def _ensure(self, n_features: int) -> DetectionEngine:
        if self.engine is None:
            with self._lock:
                if self.engine is None:
                    detectors, policy = build_detectors(self.spec, n_features)
                    engine = DetectionEngine(detectors, policy, on_alarm=self.on_alarm)
                    for identity, action in self._pending.items():
                        engine.quarantine(identity, action)
                    if not self.inline:
                        self.worker = DetectionWorker(engine, queue_size=int(self.spec["queue_size"]))
                    self.engine = engine
        return self.engine

    def check(self, identity: str) -> tuple[int, str, str] | None:
        """On the hot path: ``(status, reason, message)`` to refuse with, or ``None``. Raises
        :class:`DetectorUnavailable` when the worker has crashed (the stage's ``on_error`` applies)."""
        if self.worker is not None and not self.worker.alive:
            raise DetectorUnavailable("the detector worker is not running")
        engine = self.engine
        action: Action | None = self._pending.get(identity) if engine is None else engine.action(identity)
        if action == "block":
            return 403, "quarantined", "This identity is quarantined after a detector alarm."
        if action == "throttle":
            now = time.monotonic()
            rate = engine.policy.throttle_per_s if engine is not None else 1.0
            gap = 1.0 / max(rate, 1e-9)
            last = self._last.get(identity, 0.0)
            if now - last < gap:
                return 429, "throttled", "This identity is throttled after a detector alarm."
            self._last[identity] = now
        return None

    def degraded(self, identity: str) -> bool:
        """Whether ``identity`` gets labels only (the ``degrade`` action)."""
        return self.engine is not None and self.engine.action(identity) == "degrade"

    def record(self, identity: str, x: np.ndarray, body: bytes) -> None:
        """Hand one served request to the detectors (queued, or at once with ``inline``)."""
        engine = self._ensure(int(np.prod(x.shape[1:])) if x.ndim > 1 else 1)
        if self.inline or self.worker is None:
            engine.observe(identity, x, probabilities_of(body))
            return
        if not self.worker.submit(identity, x, lambda: probabilities_of(body)):
            log.error("ALERT detector queue full: an observation of %s was dropped", identity)

    def quarantine(self, identity: str, action: Action = "block") -> None:
        """Contain ``identity`` by hand (``hoplon incident quarantine``)."""
        with self._lock:
            if self.engine is None:
                self._pending[identity] = action
                return
        self.engine.quarantine(identity, action)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
