"""Rate limits, quotas and the failed-authentication guards (memory storage; Redis in test_backends)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hoplon.gateway import Firewall, KeyStore, parse_config

from .fake import FakeModel
from .helpers import acall, call, v2


def firewall(tmp_path: Path, **stages: Any) -> Firewall:
    raw: dict[str, Any] = {"version": 1, "models": {"m": {"routes": ["/predict"]}}, "stages": stages}
    return Firewall(FakeModel(), parse_config(raw, state_dir=tmp_path / "state"), state_dir=tmp_path / "state")


def key(fw: Firewall, name: str = "alice", scopes: tuple[str, ...] = ("model:*", "output:*")) -> str:
    return KeyStore(fw.config.state_dir).create(name, scopes=scopes)[0]


def test_per_identity_limit_gives_429_with_retry_after_and_ratelimit_headers(tmp_path: Path) -> None:
    fw = firewall(tmp_path, rate_limits={"per_identity": "5/minute"})
    k = key(fw)
    replies = [
        call(fw, "POST", "/predict", body={"instances": [[0.1, 0.2]]}, headers={"x-api-key": k}) for _ in range(7)
    ]
    assert [r.status for r in replies] == [200] * 5 + [429] * 2
    limited = replies[-1]
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-policy"] == '"per_identity";q=5;w=60'
    assert limited.headers["ratelimit"].startswith('"per_identity";r=0;t=')
    assert limited.json()["error"]["code"] == "per_identity"
    fw.close()


def test_cost_is_weighted_by_batch_and_the_daily_quota_is_an_extraction_budget(tmp_path: Path) -> None:
    fw = firewall(tmp_path, rate_limits={"per_identity": "1000/minute", "daily_quota": 10})
    k = key(fw)
    h = {"x-api-key": k}
    assert call(fw, "POST", "/predict", body={"instances": [[0.0, 0.0]] * 6}, headers=h).status == 200
    over = call(fw, "POST", "/predict", body={"instances": [[0.0, 0.0]] * 6}, headers=h)
    assert over.status == 429 and over.json()["error"]["code"] == "daily_quota"
    assert call(fw, "POST", "/predict", body={"instances": [[0.0, 0.0]] * 4}, headers=h).status == 200
    fw.close()


def test_limits_are_per_identity(tmp_path: Path) -> None:
    fw = firewall(tmp_path, rate_limits={"per_identity": "2/minute", "per_source": "100/minute"})
    a, b = key(fw, "a"), key(fw, "b")
    statuses = [
        call(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": k}).status for k in (a, a, a, b)
    ]
    assert statuses == [200, 200, 429, 200]
    fw.close()


def test_shadow_mode_records_but_lets_through(tmp_path: Path) -> None:
    fw = firewall(tmp_path, rate_limits={"mode": "shadow", "per_identity": "1/minute"})
    k = key(fw)
    replies = [call(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": k}) for _ in range(2)]
    assert [r.status for r in replies] == [200, 200]
    assert fw.ledger is not None
    fw.ledger.flush()
    last = list(fw.ledger.entries())[-1].body
    assert last["stages"]["rate_limits"] == "shadow:per_identity" and last["decision"] == "allow"
    fw.close()


def test_failed_auth_per_source(tmp_path: Path) -> None:
    fw = firewall(tmp_path, authentication={"failed_per_source": "3/minute"})
    k = key(fw)
    statuses = [
        call(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": "bad"}).status for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # Even the right key is refused from that source until the window passes; other sources are unaffected.
    assert call(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": k}).status == 429
    assert (
        call(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": k}, client="10.0.0.9").status
        == 200
    )
    fw.close()


def test_credential_stuffing_from_1000_addresses_trips_the_global_guard(tmp_path: Path) -> None:
    fw = firewall(
        tmp_path, authentication={"failed_per_source": "5/minute", "failed_global": "200/minute"}, audit={"mode": "off"}
    )
    good = key(fw)
    # A known-good client authenticates before the attack.
    assert (
        call(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": good}, client="192.0.2.1").status
        == 200
    )

    async def attack() -> list[int]:
        out = []
        for i in range(1000):
            guess = f"hpl_{i:012x}_" + "b" * 64
            reply = await acall(
                fw,
                "POST",
                "/predict",
                body={"instances": [[0]]},
                headers={"x-api-key": guess},
                client=f"198.51.{i // 250}.{i % 250}",
            )
            out.append(reply.status)
        return out

    statuses = asyncio.run(attack())
    assert statuses[:200] == [401] * 200
    assert statuses[200:] == [429] * 800  # the guard refuses unknown sources before looking at credentials
    assert fw.runtime.guard.tripped_at is not None
    # The known-good source still works; a new source with a *valid* key is held back while the guard is up.
    assert (
        call(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": good}, client="192.0.2.1").status
        == 200
    )
    assert (
        call(
            fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": good}, client="203.0.113.5"
        ).status
        == 429
    )
    from prometheus_client import generate_latest

    metrics = generate_latest(fw.metrics.registry).decode()
    assert "hoplon_gateway_auth_guard_tripped 1.0" in metrics
    assert 'hoplon_gateway_rate_limited_total{limit="failed_auth_global"} 801.0' in metrics
    fw.close()


def test_model_concurrency_cap_and_timeout(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "version": 1,
        "models": {"m": {"routes": ["/predict"]}},
        "stages": {"model": {"timeout_s": 0.2, "max_concurrency": 1}},
    }
    fw = Firewall(FakeModel(delay_s=0.5), parse_config(raw, state_dir=tmp_path / "s"), state_dir=tmp_path / "s")
    k = key(fw)

    async def two() -> list[int]:
        replies = await asyncio.gather(
            *(acall(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": k}) for _ in range(2))
        )
        return sorted(r.status for r in replies)

    assert asyncio.run(two()) == [503, 504]
    fw.close()


def test_output_hardening_noise_is_deterministic_per_input(tmp_path: Path) -> None:
    fw = firewall(tmp_path, output={"noise_scale": 0.05, "round_digits": 4, "top_k": 2})
    k = key(fw)
    h = {"x-api-key": k}
    x = np.asarray([[0.3, 0.1], [0.9, 0.2]])
    first = call(fw, "POST", "/predict", body={"instances": x.tolist()}, headers=h).json()
    again = call(fw, "POST", "/predict", body={"instances": x.tolist()}, headers=h).json()
    assert first == again  # averaging repeated queries removes nothing
    assert "embeddings" not in first and first["model"] == "m"
    p = np.asarray(first["predictions"])
    assert (p == 0).sum(axis=1).tolist() == [1, 1]  # top-2 of 3 classes
    other = call(fw, "POST", "/predict", body={"instances": [[0.3, 0.1000001]]}, headers=h).json()
    assert other["predictions"][0] != first["predictions"][0]
    fw.close()


def test_v2_outputs_strip_internal_fields_and_label_only(tmp_path: Path) -> None:
    fw = firewall(tmp_path, output={"label_only": True})
    k = key(fw)
    reply = call(fw, "POST", "/v2/models/m/infer", body=v2([[0.9, 0.0], [0.0, 0.0]]), headers={"x-api-key": k})
    doc = reply.json()
    assert "debug" not in doc
    assert doc["outputs"] == [{"name": "label", "shape": [2], "datatype": "INT64", "data": [0, 1]}]
    fw.close()


@pytest.mark.parametrize("mode", ["off", "shadow"])
def test_auth_off_or_shadow_lets_anonymous_through(tmp_path: Path, mode: str) -> None:
    fw = firewall(tmp_path, authentication={"mode": mode})
    assert call(fw, "POST", "/predict", body={"instances": [[0]]}).status == 200
    fw.close()


def test_metrics_can_be_disabled(tmp_path: Path) -> None:
    fw = firewall(tmp_path, metrics={"enabled": False})
    assert call(fw, "GET", "/metrics").status == 404
    assert call(fw, "GET", "/healthz").status == 200
    fw.close()
