"""Detectors as a library: PRADA, similarity, shared fingerprints, signals, escalation, the worker, calibration."""

from __future__ import annotations

import numpy as np
import pytest

from hoplon.core.errors import InputError
from hoplon.gateway.detectors import (
    PRADA,
    DetectionEngine,
    DetectionWorker,
    DetectStage,
    LowMargin,
    Policy,
    QueryVolume,
    SharedFingerprints,
    StatefulSimilarity,
    probabilities_of,
)
from hoplon.gateway.detectors.calibrate import calibrate
from hoplon.gateway.detectors.stage import DetectorUnavailable


def _stream(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    return rng.random((n, d)).astype(np.float32)


def test_prada_alarms_on_fixed_step_queries_and_not_on_natural_ones() -> None:
    rng = np.random.default_rng(0)
    prada = PRADA(n_features=16, delta=0.9, min_queries=30)
    assert all(prada.observe("benign", _stream(rng, 1), None) is None for _ in range(150))
    held = _stream(rng, 10)
    while len(held) < 160:  # JbDA's shape: every round adds one child per held point, a fixed step away
        held = np.concatenate([held, np.clip(held + 0.05 * rng.choice([-1, 1], held.shape), 0, 1)])
    alarms = [prada.observe("jbda", held[i : i + 1], None) for i in range(160)]
    assert any(a is not None for a in alarms)
    with pytest.raises(InputError):
        PRADA(n_features=4, delta=1.5)


def test_state_is_bounded_by_the_lru() -> None:
    det = StatefulSimilarity(n_features=8, max_identities=10)
    rng = np.random.default_rng(1)
    for i in range(50):
        det.observe(f"id{i}", _stream(rng, 2, 8), None)
    assert len(det._states) == 10 and det._states.evicted == 40
    assert det.bytes_per_identity(64) == 64 * 65


def test_similarity_ignores_exact_repeats_and_counts_near_duplicates() -> None:
    det = StatefulSimilarity(n_features=8, threshold=0.2, hits=3)
    x = np.full((1, 8), 0.5, np.float32)
    assert all(det.observe("a", x, None) is None for _ in range(10))  # a repeat tells the attacker nothing
    near = [x + 0.01 * (i + 1) for i in range(4)]
    assert any(det.observe("b", n, None) is not None for n in near)


def test_shared_fingerprints_see_near_duplicates_across_identities_only() -> None:
    det = SharedFingerprints(n_features=8, threshold=0.2, hits=3, window=10)
    base = np.full((1, 8), 0.5, np.float32)
    assert all(det.observe("solo", base + 0.01 * i, None) is None for i in range(6))  # own queries: not shared
    fired = [det.observe(f"key{i}", base + 0.011 * i, None) for i in range(6)]
    assert all(a is None for a in fired)  # one match per key: none reaches 3 on its own
    again = [det.observe("key1", base + 0.013 * i + 0.001, None) for i in range(4)]
    assert any(a is not None for a in again)


def test_volume_and_low_margin_signals() -> None:
    volume = QueryVolume(budget=5)
    assert volume.observe("v", np.zeros((5, 2)), None) is None
    assert volume.observe("v", np.zeros((1, 2)), None) is not None
    low = LowMargin(margin=0.2, rate=0.3, window=10, min_queries=5)
    confident = np.array([[0.9, 0.1]])
    boundary = np.array([[0.52, 0.48]])
    assert all(low.observe("ok", np.zeros((1, 2)), confident) is None for _ in range(20))
    assert any(low.observe("walk", np.zeros((1, 2)), boundary) is not None for _ in range(10))


def test_escalation_ladder_and_shadow_mode() -> None:
    volume = QueryVolume(budget=1)
    low = LowMargin(margin=0.5, rate=0.1, window=5, min_queries=1)
    engine = DetectionEngine([volume, low], Policy(actions={"volume": "throttle", "low_margin": "alert"}))
    engine.observe("x", np.zeros((2, 2)), np.array([[0.5, 0.5], [0.5, 0.5]]))
    assert engine.action("x") == "degrade"  # throttle, then one step up for the second alarm
    engine.quarantine("y")
    assert engine.action("y") == "block"
    engine.release("y")
    assert engine.action("y") is None
    shadow = DetectionEngine([QueryVolume(budget=1)], Policy(mode="shadow"))
    assert shadow.observe("z", np.zeros((2, 2)), None) and shadow.action("z") is None
    with pytest.raises(InputError):
        Policy(actions={"volume": "explode"})  # type: ignore[dict-item]


def test_a_crashed_worker_is_reported_and_a_full_queue_drops() -> None:
    class Broken:
        name = "broken"

        def observe(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> None:
            raise RuntimeError("boom")

        def reset(self, identity: str) -> None:
            return None

        def bytes_per_identity(self, n_features: int) -> int:
            return 0

    worker = DetectionWorker(DetectionEngine([Broken()]), queue_size=1)
    worker.submit("a", np.zeros((1, 2)), None)
    worker.drain(5.0)
    assert not worker.alive and isinstance(worker.error, RuntimeError)
    stage = DetectStage({"mode": "enforce"})
    stage.worker = worker
    with pytest.raises(DetectorUnavailable):
        stage.check("a")


def test_scores_are_read_from_v2_and_plain_answers() -> None:
    v2 = b'{"outputs":[{"name":"p","shape":[1,2],"datatype":"FP32","data":[0.25,0.75]}]}'
    p = probabilities_of(v2)
    assert p is not None and np.allclose(p, [[0.25, 0.75]])
    logits = probabilities_of(b'{"predictions":[[2.0,-1.0]]}')
    assert logits is not None and np.allclose(logits.sum(), 1.0) and logits[0, 0] > 0.9
    assert probabilities_of(b"not json") is None and probabilities_of(b'{"labels":[1]}') is None


def test_calibration_sets_thresholds_and_measures_held_out_identities() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((300, 16)).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), 300)
    spec, summary = calibrate({"mode": "enforce"}, x, probs, fpr=0.05, identities=20, queries=40, seed=0)
    assert 0 < spec["prada"]["delta"] < 1 and spec["similarity"]["threshold"] > 0
    assert summary["all"]["identities"] == 10 and 0 <= summary["all"]["heldout_fpr"] <= 1
    with pytest.raises(InputError):
        calibrate({}, x, probs, fpr=2.0)


def test_an_identity_cannot_run_more_than_max_lag_queries_ahead_of_its_analysis() -> None:
    import threading

    release = threading.Event()

    class Slow:
        name = "slow"

        def observe(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> None:
            release.wait(5.0)

        def reset(self, identity: str) -> None:
            return None

        def bytes_per_identity(self, n_features: int) -> int:
            return 0

    stage = DetectStage({"mode": "enforce", "max_lag": 3})
    stage.worker = DetectionWorker(DetectionEngine([Slow()]), queue_size=100)
    try:
        for _ in range(3):
            assert stage.check("fast") is None
            stage.worker.submit("fast", np.zeros((1, 2)), None)
        assert stage.check("fast") == (
            429,
            "detect_backlog",
            "Too many of this identity's queries are still being analysed; retry.",
        )
        assert stage.check("other") is None  # the bound is per identity
        release.set()
        stage.worker.drain(5.0)
        assert stage.worker.backlog("fast") == 0 and stage.check("fast") is None
    finally:
        release.set()
        stage.worker.stop()
