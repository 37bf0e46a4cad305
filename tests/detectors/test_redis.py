"""Detector state in Redis: the state codec, two workers sharing one stream and one containment, Redis loss
with each declared ``on_error``, and bounds on what is kept."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hoplon.core.errors import InputError
from hoplon.gateway import Firewall, KeyStore, parse_config
from hoplon.gateway.detectors import (
    PRADA,
    DetectionEngine,
    DetectStage,
    Policy,
    RedisDetectionEngine,
    RedisState,
    SharedFingerprints,
    StatefulSimilarity,
)
from hoplon.gateway.detectors.types import pack_state, unpack_state

from ..gateway.fake import FakeModel
from ..gateway.helpers import call, free_port, require_binary, shared_redis, v2, wait_port

PATH = "/v2/models/m/infer"


@pytest.fixture()
def redis_url() -> str:
    """The process's shared Redis, emptied for this test."""
    import redis

    url = shared_redis()
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@contextlib.contextmanager
def redis_on(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server on ``port`` (so a test can kill it and start it again at the same address)."""
    proc = subprocess.Popen(
        [
            require_binary("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _jbda(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    """JbDA's shape: each round adds one child per held point, a fixed step away."""
    held = rng.random((10, d)).astype(np.float32)
    while len(held) < n:
        held = np.concatenate([held, np.clip(held + 0.05 * rng.choice([-1, 1], held.shape), 0, 1).astype(np.float32)])
    return held[:n]


def _engine(url: str, detectors: list[Any], **policy: Any) -> RedisDetectionEngine:
    return RedisDetectionEngine(detectors, Policy(**policy), state=RedisState(url, cache_s=5.0))


def test_the_state_codec_round_trips_and_refuses_what_it_did_not_write() -> None:
    arrays = {"g": np.arange(6, dtype=np.float16).reshape(2, 3), "m": np.array([True, False])}
    meta, back = unpack_state(pack_state({"slot": 1}, arrays))
    assert meta == {"slot": 1} and back["g"].dtype == np.float16 and np.array_equal(back["g"], arrays["g"])
    good = pack_state({}, {"a": np.zeros(4, np.uint8)})
    for bad in (good[:-1], good + b"x", b"\x00", b"\xff\xff\xff\x7f{}", b"\x02\x00\x00\x00[]"):
        with pytest.raises(InputError):
            unpack_state(bad)
    with pytest.raises(InputError):  # only plain numeric dtypes: an object array would mean pickle
        unpack_state(b"".join([b"\x2c\x00\x00\x00", b'{"meta":{},"arrays":[["a","object",[1]]]}   ']))
    prada = PRADA(n_features=4, min_queries=5, window=10, growing_cap=4)
    prada.observe("a", np.random.default_rng(0).random((8, 4)), None)
    blob = prada.dump("a")
    assert blob is not None
    other = PRADA(n_features=4, min_queries=5, window=10, growing_cap=8)
    assert not other.load("a", blob)  # another layout: a fresh state, not a misread one
    same = PRADA(n_features=4, min_queries=5, window=10, growing_cap=4)
    assert same.load("a", blob) and same.dump("a") == blob


def test_the_config_accepts_redis_storage_and_refuses_other_schemes(tmp_path: Path) -> None:
    from hoplon.core.errors import HoplonError

    def detect(storage: str) -> dict[str, Any]:
        raw = {"version": 1, "stages": {"audit": {"mode": "off"}, "detect": {"mode": "enforce", "storage": storage}}}
        return dict(parse_config(raw, state_dir=tmp_path).detect.spec)

    assert detect("redis://10.0.0.5:6379/2")["storage"] == "redis://10.0.0.5:6379/2"
    assert detect("memory")["storage"] == "memory"
    for bad in ("ftp://x", "redis:/nohost", ""):
        with pytest.raises(HoplonError):
            detect(bad)
    with pytest.raises(InputError):
        DetectStage({"storage": "postgres://db"})


def test_a_jbda_stream_split_over_two_workers_is_detected_as_if_one(redis_url: str) -> None:
    stream = _jbda(np.random.default_rng(3), 160)
    alone = DetectionEngine([PRADA(n_features=16, min_queries=30)])
    first = next(a for i in range(len(stream)) for a in alone.observe("jbda", stream[i : i + 1], None))
    w1 = _engine(redis_url, [PRADA(n_features=16, min_queries=30)])
    w2 = _engine(redis_url, [PRADA(n_features=16, min_queries=30)])
    split = [a for i in range(len(stream)) for a in (w1, w2)[i % 2].observe("jbda", stream[i : i + 1], None)]
    assert [(a.detector, a.at_query, round(a.score, 6)) for a in split] == [
        (first.detector, first.at_query, round(first.score, 6))
    ]
    # each worker alone saw half of the stream: the alarm needed both halves
    assert w1.action("jbda") == w2.action("jbda") == "block"
    half = DetectionEngine([PRADA(n_features=16, min_queries=30)])
    assert all(not half.observe("jbda", stream[i : i + 1], None) for i in range(0, first.at_query, 2))
    w1.close()
    w2.close()


def test_a_sybil_attack_over_two_workers_and_many_keys_is_seen(redis_url: str) -> None:
    def shared() -> SharedFingerprints:
        return SharedFingerprints(n_features=8, threshold=0.2, hits=3, window=10)

    w1, w2 = _engine(redis_url, [shared()]), _engine(redis_url, [shared()])
    base = np.full((1, 8), 0.5, np.float32)
    assert not any(w1.observe(f"key{i}", base + 0.011 * i, None) for i in range(3))
    assert not any(w2.observe(f"key{i}", base + 0.011 * i, None) for i in range(3, 6))
    fired = [a for i in range(4) for a in (w1, w2)[i % 2].observe("key1", base + 0.013 * i + 0.001, None)]
    assert [a.detector for a in fired] == ["shared"]  # key1 matched the other keys' queries on both workers
    w1.close()
    w2.close()


def test_a_quarantine_in_one_worker_is_enforced_by_the_other_at_once(redis_url: str) -> None:
    spec = {"mode": "enforce", "inline": True, "storage": redis_url, "cache_s": 30.0}
    one, two = DetectStage(spec), DetectStage(spec)
    deadline = time.monotonic() + 5
    while not (one.shared and two.shared and one.shared.invalidation_live and two.shared.invalidation_live):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert two.check("eve") is None  # cached as "nothing" for 30 s, unless invalidated
    one.quarantine("eve")
    waited = time.monotonic()
    while two.check("eve") is None:
        assert time.monotonic() - waited < 2.0, "the invalidation never came"
        time.sleep(0.002)
    assert two.check("eve") == (403, "quarantined", "This identity is quarantined after a detector alarm.")
    assert two.shared is not None
    two.shared.release("eve")
    waited = time.monotonic()
    while one.check("eve") is not None:
        assert time.monotonic() - waited < 2.0
        time.sleep(0.002)
    one.close()
    two.close()


def _gateway(tmp_path: Path, detect: dict[str, Any]) -> tuple[Firewall, str]:
    cfg = parse_config(
        {"version": 1, "models": {"m": {"input_shape": [4]}}, "stages": {"audit": {"mode": "off"}, "detect": detect}},
        state_dir=tmp_path,
    )
    return Firewall(FakeModel(), cfg), KeyStore(tmp_path).create("alice")[0]


def _send(app: Firewall, key: str, row: list[float]) -> tuple[int, str]:
    reply = call(app, "POST", PATH, body=v2([row]), headers={"x-api-key": key})
    return reply.status, reply.json()["error"]["code"] if reply.status >= 400 else ""


def test_two_gateway_workers_share_the_count_and_the_quarantine(tmp_path: Path, redis_url: str) -> None:
    detect = {"mode": "enforce", "storage": redis_url, "volume": {"budget": 3, "action": "block"}}
    one, key = _gateway(tmp_path, detect)
    two = Firewall(FakeModel(), one.config)  # a second worker process: same config, its own detect stage
    for app in (one, two, one, two):  # 4 rows in all, 2 per worker: neither alone crosses the budget of 3
        assert _send(app, key, [0.1, 0.2, 0.3, 0.4]) == (200, "")
        assert app.detect is not None and app.detect.worker is not None
        app.detect.worker.drain()
    assert one.detect is not None
    deadline = time.monotonic() + 2.0  # worker one's cached "not contained" is dropped by the pub/sub message
    while one.detect.check("alice") is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert _send(one, key, [0.1, 0.2, 0.3, 0.4]) == (403, "quarantined")
    assert _send(two, key, [0.1, 0.2, 0.3, 0.4]) == (403, "quarantined")
    one.close()
    two.close()


@pytest.mark.parametrize(
    ("on_error", "expected"), [("fail_open", (200, "")), ("fail_closed", (503, "detect_unavailable"))]
)
def test_redis_loss_fails_to_the_declared_side_and_detection_resumes(
    tmp_path: Path, on_error: str, expected: tuple[int, str], caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import generate_latest

    port = free_port()
    detect = {"mode": "enforce", "on_error": on_error, "storage": f"redis://127.0.0.1:{port}/0"}
    with redis_on(port) as proc:
        app, key = _gateway(tmp_path, {**detect, "volume": {"budget": 3, "action": "block"}})
        assert app.detect is not None
        assert _send(app, key, [0.1, 0.2, 0.3, 0.4]) == (200, "")
        worker = app.detect.worker
        assert worker is not None
        worker.drain()
        proc.kill()
        proc.wait()
        # the invalidation listener's connection drops with Redis (milliseconds): from then on every check
        # reads Redis; before, a cached "not contained" may be served for up to cache_s
        shared = app.detect.shared
        assert shared is not None
        deadline = time.monotonic() + 2.0
        while shared.invalidation_live:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        assert _send(app, key, [0.2, 0.2, 0.3, 0.4]) == expected
        assert _send(app, key, [0.3, 0.2, 0.3, 0.4]) == expected
        worker.drain()
    assert worker.alive  # a Redis outage is not a worker crash
    metrics = generate_latest(app.metrics.registry).decode()
    assert f'hoplon_gateway_stage_errors_total{{on_error="{on_error}",stage="detect"}} 2.0' in metrics
    assert any(r.getMessage().startswith("ALERT stage detect failed") for r in caplog.records)
    if on_error == "fail_open":  # served, so observed: the worker dropped them and said so once
        assert worker.storage_errors == 2
        assert any("ALERT detector storage unavailable" in r.getMessage() for r in caplog.records)
    with redis_on(port):  # Redis is back (empty): detection resumes, on the same connections
        statuses = [_send(app, key, [0.5, 0.2, 0.3, 0.4]) for _ in range(4)]
        worker.drain()
        assert statuses == [(200, "")] * 4
        assert _send(app, key, [0.5, 0.2, 0.3, 0.4]) == (403, "quarantined")
        assert worker.storage_error is None
    app.close()


def test_redis_loss_with_inline_detectors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    with redis_on(port) as proc:
        app, key = _gateway(tmp_path, {"mode": "enforce", "inline": True, "storage": f"redis://127.0.0.1:{port}/0"})
        assert _send(app, key, [0.1, 0.2, 0.3, 0.4]) == (200, "")
        proc.kill()
        proc.wait()
        assert _send(app, key, [0.1, 0.2, 0.3, 0.4]) == (200, "")
    assert any("ALERT detect stage failed (fail_open)" in r.getMessage() for r in caplog.records)
    app.close()


def test_the_state_in_redis_is_bounded(redis_url: str) -> None:
    import redis

    spec = {"mode": "enforce", "inline": True, "storage": redis_url, "max_identities": 5, "state_ttl_s": 60}
    stage = DetectStage(spec)
    rng = np.random.default_rng(0)
    for i in range(40):
        stage.record(f"id{i}", rng.random((2, 8)).astype(np.float32), b'{"predictions": [[0.6, 0.4], [0.1, 0.9]]}')
    assert stage.shared is not None
    stage.shared.bound_identities()
    client = redis.Redis.from_url(redis_url)
    keys = client.keys("hoplon:detect:s:*")
    assert len(keys) == 5 and client.zcard("hoplon:detect:ids") == 5
    assert all(0 < client.pttl(k) <= 60_000 for k in keys)
    assert client.xlen("hoplon:detect:fp") == 80 and 0 < client.pttl("hoplon:detect:fp") <= 60_000
    fields = client.hgetall(keys[0])
    assert set(fields) == {b"_fired", b"prada", b"similarity", b"shared", b"volume", b"low_margin"}
    assert max(len(v) for v in fields.values()) < 2048  # two 8-feature rows: small blobs, no pickle
    client.close()
    stage.close()


def test_a_malformed_stored_state_is_refused_and_started_afresh(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    engine = _engine(redis_url, [StatefulSimilarity(n_features=4, threshold=0.5, hits=2)])
    client = redis.Redis.from_url(redis_url)
    client.hset(engine.state.state_key(engine.state.key_of("mallory")), mapping={"similarity": b"\x10\x00\x00\x00junk"})
    assert engine.observe("mallory", np.full((1, 4), 0.5, np.float32), None) == []
    assert any("refused" in r.getMessage() for r in caplog.records)
    blob = client.hget(engine.state.state_key(engine.state.key_of("mallory")), "similarity")
    assert isinstance(blob, bytes) and unpack_state(blob)[0]["n_features"] == 4  # rewritten, well-formed
    client.close()
    engine.close()
