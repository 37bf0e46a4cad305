"""Shared backends: limits across 4 uvicorn workers on one Redis, and Redis going down mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from hoplon.gateway import Firewall, KeyStore, parse_config
from hoplon.ledger import verify_url

from .fake import FakeModel
from .helpers import call, free_port, redis_server, uvicorn_server, wait_port, write_config


def test_limits_hold_across_4_workers_sharing_redis(tmp_path: Path, redis_url: str) -> None:
    limit = 30
    with uvicorn_server(FakeModel()) as upstream:
        state = tmp_path / "state"
        config = write_config(
            tmp_path / "hoplon.yaml",
            {
                "upstream": {"url": upstream},
                "models": {"m": {"routes": ["/predict"]}},
                "stages": {
                    "rate_limits": {
                        "storage": redis_url,
                        "per_identity": f"{limit}/minute",
                        "per_source": "10000/minute",
                    }
                },
            },
        )
        key = KeyStore(state).create("load")[0]
        port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hoplon.cli.main",
                "serve",
                "--config",
                str(config),
                "--workers",
                "4",
                "--state-dir",
                str(state),
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            wait_port(port, timeout_s=90)

            def burst(n: int) -> list[int]:
                out = []
                for _ in range(n):  # a new connection each time, so the kernel spreads them over workers
                    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                        out.append(
                            client.post("/predict", json={"instances": [[0.1]]}, headers={"x-api-key": key}).status_code
                        )
                return out

            # Let every worker finish starting (the port opens with the first one).
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                for _ in range(200):
                    if client.get("/readyz").status_code == 200:
                        break
            with ThreadPoolExecutor(16) as pool:
                statuses = Counter(s for part in pool.map(burst, [6] * 16) for s in part)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    assert statuses[200] == limit, statuses  # measured: never more than the configured count in the window
    assert statuses[429] == 96 - limit
    ledger = f"sqlite:///{state / 'audit.db'}"
    result = verify_url(ledger)
    assert result.ok and result.entries == 96  # one record per request (probes are not audited)
    assert not any("not yet covered" in w for w in result.warnings)  # the workers signed on shutdown
    from hoplon.ledger import Ledger

    with Ledger.open(ledger, signing_key=state / "ledger.key") as reader:
        workers = {e.body["worker"] for e in reader.entries(kind="gateway.decision")}
    assert len(workers) >= 2


def _firewall(tmp_path: Path, redis_url: str, on_error: str) -> Firewall:
    raw: dict[str, Any] = {
        "version": 1,
        "models": {"m": {"routes": ["/predict"]}},
        "stages": {"rate_limits": {"storage": redis_url, "on_error": on_error, "per_identity": "100/minute"}},
    }
    state = tmp_path / on_error
    return Firewall(FakeModel(), parse_config(raw, state_dir=state), state_dir=state)


@pytest.mark.parametrize(("on_error", "status_after"), [("fail_open", 200), ("fail_closed", 503)])
def test_redis_going_down_mid_run(
    tmp_path: Path, on_error: str, status_after: int, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import generate_latest

    with redis_server() as (url, proc):
        fw = _firewall(tmp_path, url, on_error)
        key = KeyStore(fw.config.state_dir).create("c")[0]
        h = {"x-api-key": key}
        assert call(fw, "POST", "/predict", body={"instances": [[0]]}, headers=h).status == 200
        proc.kill()
        proc.wait()
        reply = call(fw, "POST", "/predict", body={"instances": [[0]]}, headers=h)
    assert reply.status == status_after
    assert any(r.message.startswith("ALERT") and "ConnectionError" in r.message for r in caplog.records)
    metrics = generate_latest(fw.metrics.registry).decode()
    assert f'hoplon_gateway_stage_errors_total{{on_error="{on_error}",stage="auth_guard"}} 1.0' in metrics
    assert call(fw, "GET", "/readyz").status == 503
    assert fw.ledger is not None
    fw.ledger.flush()
    last = list(fw.ledger.entries())[-1].body
    if on_error == "fail_open":
        assert last["stages"]["rate_limits"] == "error:open" and last["decision"] == "allow"
        assert 'hoplon_gateway_stage_errors_total{on_error="fail_open",stage="rate_limits"} 1.0' in metrics
    else:  # refused at the first stage that needs Redis: the failed-auth guard
        assert last["reason"] == "auth_guard_unavailable" and last["decision"] == "deny"
    fw.close()


def test_audit_ledger_failure_with_fail_closed_refuses_to_serve(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "version": 1,
        "models": {"m": {"routes": ["/predict"]}},
        "stages": {"audit": {"durable": True}},
    }
    fw = Firewall(FakeModel(), parse_config(raw, state_dir=tmp_path), state_dir=tmp_path)
    key = KeyStore(tmp_path).create("c")[0]
    assert call(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": key}).status == 200
    assert fw.ledger is not None
    fw.ledger.close()  # the ledger is gone (disk full, database down): nothing can be recorded
    reply = call(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": key})
    assert reply.status == 503 and reply.json()["error"]["code"] == "audit_unavailable"
