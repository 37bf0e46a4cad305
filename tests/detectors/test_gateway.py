"""The ``detect`` stage in the firewall chain: quarantine → 403, degrade → labels, shadow, worker faults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hoplon.gateway import Firewall, KeyStore, parse_config

from ..gateway.fake import FakeModel
from ..gateway.helpers import call, v2

PATH = "/v2/models/m/infer"


def _gateway(tmp_path: Path, detect: dict[str, Any]) -> tuple[Firewall, str]:
    cfg = parse_config(
        {
            "version": 1,
            "models": {"m": {"input_shape": [4]}},
            "stages": {"audit": {"mode": "off"}, "detect": detect},
        },
        state_dir=tmp_path,
    )
    key = KeyStore(tmp_path).create("alice")[0]
    return Firewall(FakeModel(), cfg), key


def _send(app: Firewall, key: str, row: list[float]) -> int:
    return call(app, "POST", PATH, body=v2([row]), headers={"x-api-key": key}).status


def test_an_alarm_quarantines_the_identity_with_403(tmp_path: Path) -> None:
    app, key = _gateway(tmp_path, {"mode": "enforce", "inline": True, "volume": {"budget": 3, "action": "block"}})
    assert [_send(app, key, [0.1, 0.2, 0.3, 0.4]) for _ in range(4)] == [200, 200, 200, 200]
    reply = call(app, "POST", PATH, body=v2([[0.1, 0.2, 0.3, 0.4]]), headers={"x-api-key": key})
    assert reply.status == 403 and reply.json()["error"]["code"] == "quarantined"
    app.close()


def test_shadow_mode_records_but_serves(tmp_path: Path) -> None:
    app, key = _gateway(tmp_path, {"mode": "shadow", "inline": True, "volume": {"budget": 1, "action": "block"}})
    assert [_send(app, key, [0.1, 0.2, 0.3, 0.4]) for _ in range(5)] == [200] * 5
    assert app.detect is not None and app.detect.engine is not None and app.detect.engine.alarms
    app.close()


def test_degrade_serves_labels_only(tmp_path: Path) -> None:
    app, key = _gateway(tmp_path, {"mode": "enforce", "inline": True, "volume": {"budget": 1, "action": "degrade"}})
    for _ in range(2):
        _send(app, key, [0.1, 0.2, 0.3, 0.4])
    reply = call(app, "POST", PATH, body=v2([[0.1, 0.2, 0.3, 0.4]]), headers={"x-api-key": key})
    assert reply.status == 200 and reply.json()["outputs"][0]["name"] == "label"
    app.close()


def test_the_worker_runs_off_the_hot_path(tmp_path: Path) -> None:
    app, key = _gateway(tmp_path, {"mode": "enforce", "volume": {"budget": 2, "action": "block"}})
    for _ in range(3):
        assert _send(app, key, [0.5, 0.5, 0.5, 0.5]) == 200
    assert app.detect is not None and app.detect.worker is not None
    app.detect.worker.drain()
    assert _send(app, key, [0.5, 0.5, 0.5, 0.5]) == 403
    app.close()


@pytest.mark.parametrize(("on_error", "expected"), [("fail_open", 200), ("fail_closed", 503)])
def test_a_crashed_worker_fails_to_the_declared_side(
    tmp_path: Path, on_error: str, expected: int, caplog: pytest.LogCaptureFixture
) -> None:
    app, key = _gateway(tmp_path, {"mode": "enforce", "on_error": on_error})
    assert _send(app, key, [0.5, 0.5, 0.5, 0.5]) == 200
    assert app.detect is not None and app.detect.worker is not None
    worker = app.detect.worker
    worker.drain()

    def crash(*args: object) -> None:
        raise RuntimeError("detector bug")

    assert app.detect.engine is not None
    app.detect.engine.observe = crash  # type: ignore[method-assign,assignment]
    _send(app, key, [0.4, 0.5, 0.5, 0.5])
    worker.drain()
    assert not worker.alive
    assert _send(app, key, [0.3, 0.5, 0.5, 0.5]) == expected
    assert any("ALERT" in r.getMessage() for r in caplog.records)
    app.close()


def test_manual_quarantine_before_any_traffic(tmp_path: Path) -> None:
    app, key = _gateway(tmp_path, {"mode": "enforce", "inline": True})
    assert app.detect is not None
    app.detect.quarantine("alice")
    assert _send(app, key, [0.1, 0.2, 0.3, 0.4]) == 403
    app.close()
