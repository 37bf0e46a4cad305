"""Detector settings on a config reload: thresholds, actions and mode apply on the next request; per-identity
state is kept where its layout is unchanged and rebuilt (logged) where it is not; a bad spec changes nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hoplon.gateway import Firewall, KeyStore
from hoplon.gateway.detectors import PRADA, DetectStage, StatefulSimilarity

from ..gateway.fake import FakeModel
from ..gateway.helpers import call, shared_redis, v2, write_config

PATH = "/v2/models/m/infer"
ROW = [0.1, 0.2, 0.3, 0.4]


def _write(path: Path, detect: dict[str, Any]) -> Path:
    raw = {"models": {"m": {"input_shape": [4]}}, "stages": {"audit": {"mode": "off"}, "detect": detect}}
    return write_config(path, raw)


def _statuses(app: Firewall, key: str, n: int) -> list[int]:
    return [call(app, "POST", PATH, body=v2([ROW]), headers={"x-api-key": key}).status for _ in range(n)]


def _firewall(tmp_path: Path, detect: dict[str, Any]) -> tuple[Firewall, str, Path]:
    config = _write(tmp_path / "hoplon.yaml", detect)
    app = Firewall(FakeModel(), config, state_dir=tmp_path)
    return app, KeyStore(tmp_path).create("alice")[0], config


def test_a_new_threshold_applies_on_the_next_request_and_keeps_the_count(tmp_path: Path) -> None:
    app, key, config = _firewall(tmp_path, {"mode": "enforce", "inline": True, "volume": {"budget": 100}})
    assert _statuses(app, key, 3) == [200, 200, 200]
    _write(config, {"mode": "enforce", "inline": True, "volume": {"budget": 4, "action": "block"}})
    assert app.reload()
    # the 3 rows counted before the reload still count: the 5th row crosses the new budget of 4
    assert _statuses(app, key, 3) == [200, 200, 403]
    app.close()


def test_a_new_mode_applies_on_the_next_request(tmp_path: Path) -> None:
    enforce = {"mode": "enforce", "inline": True, "volume": {"budget": 1, "action": "block"}}
    app, key, config = _firewall(tmp_path, enforce)
    assert _statuses(app, key, 3) == [200, 200, 403]
    _write(config, {**enforce, "mode": "shadow"})
    assert app.reload() and _statuses(app, key, 2) == [200, 200]
    _write(config, enforce)
    assert app.reload() and _statuses(app, key, 1) == [403]
    app.close()


def test_a_reload_that_turns_detection_on_builds_the_stage(tmp_path: Path) -> None:
    app, key, config = _firewall(tmp_path, {"mode": "off"})
    assert app.detect is None and _statuses(app, key, 3) == [200] * 3
    _write(config, {"mode": "enforce", "inline": True, "volume": {"budget": 1, "action": "block"}})
    assert app.reload() and app.detect is not None
    assert _statuses(app, key, 3) == [200, 200, 403]
    app.close()


def test_a_bad_detector_spec_is_refused_and_the_old_one_kept(tmp_path: Path) -> None:
    detect = {"mode": "enforce", "inline": True, "volume": {"budget": 2, "action": "block"}}
    app, key, config = _firewall(tmp_path, detect)
    assert _statuses(app, key, 1) == [200]
    _write(config, {**detect, "prada": {"min_queries": 50, "window": 10}})  # window < min_queries
    assert not app.reload() and app.last_reload_error is not None and "PRADA" in app.last_reload_error
    assert _statuses(app, key, 3) == [200, 200, 403]
    app.close()


def test_compatible_state_is_kept_and_a_changed_layout_rebuilt(caplog: pytest.LogCaptureFixture) -> None:
    stage = DetectStage({"mode": "enforce", "inline": True})
    rng = np.random.default_rng(0)
    for _ in range(5):
        stage.record("a", rng.random((1, 8)).astype(np.float32), b'{"predictions": [[0.6, 0.4]]}')
    engine = stage.engine
    assert engine is not None
    before = {d.name: d for d in engine.detectors}
    similarity, prada = before["similarity"], before["prada"]
    assert isinstance(similarity, StatefulSimilarity) and isinstance(prada, PRADA)
    kept = similarity._states.peek("a")
    assert kept is not None and kept.queries == 5
    stage.reconfigure({"mode": "enforce", "inline": True, "similarity": {"threshold": 0.1}, "prada": {"delta": 0.5}})
    after = {d.name: d for d in engine.detectors}
    assert isinstance(after["similarity"], StatefulSimilarity) and after["similarity"].threshold == 0.1
    assert after["similarity"]._states.peek("a") is kept
    assert isinstance(after["prada"], PRADA) and after["prada"].delta == 0.5
    assert after["prada"]._states.peek("a") is prada._states.peek("a")
    stage.reconfigure({"mode": "enforce", "inline": True, "similarity": {"buffer": 16}})
    rebuilt = next(d for d in engine.detectors if d.name == "similarity")
    assert isinstance(rebuilt, StatefulSimilarity) and rebuilt._states.peek("a") is None
    assert any("similarity: its state layout changed" in r.getMessage() for r in caplog.records)
    assert stage.engine is engine  # containment and the other detectors' state untouched
    for i in range(4):
        stage.record(f"other{i}", rng.random((1, 8)).astype(np.float32), b'{"predictions": [[0.6, 0.4]]}')
    stage.reconfigure({"mode": "enforce", "inline": True, "similarity": {"buffer": 16}, "max_identities": 2})
    assert all(len(d._states) == 2 for d in engine.detectors if isinstance(d, PRADA | StatefulSimilarity))
    stage.close()


def test_a_reload_keeps_the_state_in_redis_where_the_layout_allows(caplog: pytest.LogCaptureFixture) -> None:
    import redis

    caplog.set_level(logging.INFO, logger="hoplon.gateway.detectors")
    url = shared_redis()
    client = redis.Redis.from_url(url)
    client.flushdb()
    spec: dict[str, Any] = {"mode": "enforce", "inline": True, "storage": url, "volume": {"budget": 100}}
    stage = DetectStage(spec)
    rows = np.random.default_rng(1).random((4, 8)).astype(np.float32)
    for i in range(4):
        stage.record("b", rows[i : i + 1], b'{"predictions": [[0.6, 0.4]]}')
    stage.reconfigure({**spec, "volume": {"budget": 4, "action": "block"}, "similarity": {"buffer": 16}})
    assert stage.check("b") is None
    stage.record("b", rows[:1] + 0.3, b'{"predictions": [[0.6, 0.4]]}')  # the 5th row, kept count: over 4
    assert stage.check("b") == (403, "quarantined", "This identity is quarantined after a detector alarm.")
    assert any("similarity: stored state of b has another layout" in r.getMessage() for r in caplog.records)
    client.close()
    stage.close()
