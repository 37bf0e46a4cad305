"""The request path's fast paths give the same answers as the slow ones they stand in for.

Rate-limit keys and spending on the memory storage vs the ``limits`` strategies; orjson vs the standard
library for bodies; the ledger's orjson canonical text vs ``canonical_json``; and the time limits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hoplon.gateway import Firewall, KeyStore, parse_config
from hoplon.gateway.firewall import Receive, Scope, Send
from hoplon.gateway.profile import build_profile
from hoplon.gateway.protocol import (
    BadRequest,
    Hardening,
    dump_json,
    harden_response,
    load_json,
    parse_inputs,
    parse_json,
)
from hoplon.gateway.ratelimit import RateLimiter, _Check, _item, make_storage
from hoplon.ledger import Ledger
from hoplon.ledger.ledger import _canonical, _orjson_exact
from hoplon.ledger.types import canonical_json

from .fake import FakeModel
from .helpers import call


def _firewall(tmp_path: Path, app: Any, **stages: Any) -> tuple[Firewall, str]:
    raw: dict[str, Any] = {"version": 1, "models": {"m": {"routes": ["/predict"]}}, "stages": stages}
    state = tmp_path / "state"
    fw = Firewall(app, parse_config(raw, state_dir=state), state_dir=state)
    return fw, KeyStore(state).create("alice")[0]


# ---------------------------------------------------------------------------------------------- rate limits


@pytest.mark.parametrize("rate", ["5/second", "10 per minute", "3/hour", "100/day"])
def test_prebuilt_keys_are_the_strategies_keys(rate: str) -> None:
    item = _item(rate)
    check = _Check.of("per_identity_model", item, False, "idm")
    assert check.key(("alice", "m")) == item.key_for("hoplon", "idm", "alice", "m")
    assert check.key(("10.0.0.1",)) == item.key_for("hoplon", "idm", "10.0.0.1")


def test_memory_fast_path_spends_what_the_strategies_read(tmp_path: Path) -> None:
    raw = {"version": 1, "stages": {"rate_limits": {"per_identity": "4/minute", "daily_quota": 6}}}
    config = parse_config(raw, state_dir=tmp_path).rate_limits
    storage = make_storage("memory://")
    limiter = RateLimiter(config, storage)
    assert limiter._identity is not None and limiter._daily is not None
    assert limiter.check("alice", "m", "10.0.0.1", 1) is None
    assert limiter.check("alice", "m", "10.0.0.1", 2) is None
    moving = limiter.window(limiter._identity, ("alice",))
    fixed = limiter.fixed.get_window_stats(limiter._daily.item, "hoplon", "day", "alice")
    assert (moving[1], fixed.remaining) == (1, 3)
    assert limiter.window(limiter._daily, ("alice",))[1] == 3
    refused = limiter.check("alice", "m", "10.0.0.1", 2)
    assert refused is not None and refused.limit == "per_identity"
    assert limiter.fixed.get_window_stats(limiter._daily.item, "hoplon", "day", "alice").remaining == 3
    assert limiter.check("bob", "m", "10.0.0.1", 7) is not None  # more than the quota: refused, nothing spent
    assert limiter.fixed.get_window_stats(limiter._daily.item, "hoplon", "day", "bob").remaining == 6
    storage.close()  # type: ignore[attr-defined]


def test_memory_moving_window_decides_as_the_limits_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A seeded run of hits of random cost at random times: the deque windows admit exactly what ``limits``'
    own moving window (on its own memory storage) admits, and report the same room and reset time."""
    import random

    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    clock = [1_000_000.0]
    monkeypatch.setattr("time.time", lambda: clock[0])
    item = _item("10/second")
    check = _Check.of("per_identity", item, False, "id")
    ours = make_storage("memory://")
    theirs = MovingWindowRateLimiter(MemoryStorage())
    rng = random.Random(0)
    admitted = 0
    for _ in range(400):
        # (limits itself counts a hit exactly one window old as inside for admission and outside for the
        # stats; real clocks never land there, so neither does this one)
        clock[0] += rng.choice([0.0, 0.01, 0.05, 0.2, 0.5, 1.0, 1.3]) + rng.uniform(1e-6, 1e-3)
        cost = rng.choice([1, 1, 1, 2, 3, 7, 11])
        got = ours.moving_acquire(check.key(("alice",)), item.amount, check.expiry, cost)  # type: ignore[attr-defined]
        assert got == theirs.hit(item, "hoplon", "id", "alice", cost=cost)
        admitted += got
        reset, remaining = ours.moving_stats(check.key(("alice",)), item.amount, check.expiry)  # type: ignore[attr-defined]
        stats = theirs.get_window_stats(item, "hoplon", "id", "alice")
        assert remaining == stats.remaining
        if remaining < item.amount:  # (an empty window: limits reports the time of a stale, untrimmed hit)
            assert reset == pytest.approx(stats.reset_time)
    assert 50 < admitted < 400  # both admitting and refusing were exercised
    ours.close()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- output


@pytest.mark.parametrize("label_only", [False, True])
@pytest.mark.parametrize("top_k", [None, 1, 3])
@pytest.mark.parametrize("digits", [None, 0, 3])
def test_small_outputs_harden_as_numpy_hardens_them(label_only: bool, top_k: int | None, digits: int | None) -> None:
    """The plain-Python path for small, finite, noiseless outputs gives numpy's values byte for byte: ties,
    negative scores (signed zeros), integers, halfway values."""
    import random

    rng = random.Random(hash((label_only, top_k, digits)) & 0xFFFF)
    h = Hardening(label_only, top_k, digits, 0.0, b"k" * 32, ())
    halfway = [0.0005, 0.0015, -0.0025, 2.5, -0.5, 1e-9, -1e-9, 0.1235, 7, -3, 0]
    for _ in range(60):
        rows, cols = rng.randint(1, 4), rng.randint(1, 6)
        data = [rng.choice([rng.uniform(-2, 2), rng.choice(halfway)]) for _ in range(rows * cols)]
        if rng.random() < 0.3:
            data[1 % len(data)] = data[0]  # a tie
        body = dump_json(
            {"outputs": [{"name": "p", "shape": [rows, cols], "datatype": "FP64", "data": data}]}, plain=True
        )
        fast, fast_summary = harden_response(load_json(body)[0], [], h, finite=True)
        slow, slow_summary = harden_response(load_json(body)[0], [], h, finite=False)
        assert dump_json(fast, plain=True) == dump_json(slow, plain=True)
        assert fast_summary == slow_summary


@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (3, 64), (4, 2, 3), (5,), (2, 0)])
def test_row_digests_hash_each_samples_float32_bytes(shape: tuple[int, ...]) -> None:
    import hashlib

    import numpy as np

    from hoplon.gateway.protocol import ParsedInput

    array = np.random.default_rng(0).normal(size=shape)
    for view in (array, np.asfortranarray(array), array[:, ::-1] if array.ndim > 1 else array):
        expected = [hashlib.sha256(np.asarray(row, dtype=np.float32).tobytes()).digest() for row in view]
        assert ParsedInput(view, "inputs").row_digests() == expected
    assert ParsedInput(np.zeros((0, 5)), "inputs").row_digests() == []


# ---------------------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("n", [5, 3000])  # one by one, and the numpy fold of a large batch
def test_stage_times_fold_into_what_observe_would_export(n: int) -> None:
    import random

    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from hoplon.gateway.metrics import _BUCKETS, STAGE_NAMES, StageTimes

    def histogram() -> tuple[CollectorRegistry, Histogram]:
        registry = CollectorRegistry()
        return registry, Histogram("s", "s", ["stage"], buckets=_BUCKETS, registry=registry)

    rng = random.Random(n)
    # values on bucket bounds too: a bound belongs to its own bucket (le)
    pairs = [(rng.randrange(len(STAGE_NAMES)), rng.choice([rng.expovariate(1e3), *_BUCKETS])) for _ in range(n)]
    ours_registry, ours = histogram()
    times = StageTimes(ours)
    times.pending.extend(pairs)
    times.fold()
    assert times.pending == []
    theirs_registry, theirs = histogram()
    for stage, seconds in pairs:
        theirs.labels(STAGE_NAMES[stage]).observe(seconds)

    def samples(registry: CollectorRegistry) -> dict[str, float]:
        lines = generate_latest(registry).decode().splitlines()
        return {
            k: float(v) for k, v in (line.rsplit(" ", 1) for line in lines if line[0] != "#" and "_created" not in line)
        }

    ours_samples, theirs_samples = samples(ours_registry), samples(theirs_registry)
    assert ours_samples.keys() == theirs_samples.keys()
    for key, value in theirs_samples.items():
        assert ours_samples[key] == pytest.approx(value, rel=1e-9), key


# ---------------------------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [[1, 2.5, -3e-7, 1e300]]}',
        b'{"a": 1, "a": 2}',
        b'{"big": 123456789012345678901234567890, "x": [1]}',
        '{"s": "caf\u00e9 \U0001f600"}'.encode(),
        '{"s": "caf\u00e9"}'.encode("utf-16"),
        b'{"lone": "\\ud800"}',
    ],
)
def test_json_bodies_parse_as_the_standard_library_parses_them(body: bytes) -> None:
    expected = json.loads(body)
    assert parse_json(body, strict=False) == expected
    doc, plain = load_json(body, strict=False)
    assert json.loads(dump_json(doc, plain=plain)) == expected


def test_long_integers_stay_exact_and_non_finite_values_keep_their_errors() -> None:
    doc, plain = load_json(b'{"id": 123456789012345678901234567890}', strict=False)
    assert doc["id"] == 123456789012345678901234567890 and not plain
    assert dump_json(doc, plain=plain) == b'{"id":123456789012345678901234567890}'
    # below -2^63 (orjson's floor) and from 2^64 (its ceiling): the standard library's exact integers
    for text in ("-9223372036854775809", "-9999999999999999999", "18446744073709551616"):
        doc, plain = load_json(b'{"id": %s}' % text.encode(), strict=False)
        assert doc["id"] == int(text) and type(doc["id"]) is int and not plain
        assert dump_json(doc, plain=plain) == b'{"id":%s}' % text.encode()
    doc, plain = load_json(b'{"id": -922337203685477580, "x": -0.5e-10}', strict=False)
    assert doc["id"] == -922337203685477580 and plain  # 18 digits: orjson's, exactly
    answer, plain = load_json(b'{"scores": [NaN, Infinity]}', strict=False)
    assert math.isnan(answer["scores"][0]) and not plain
    assert dump_json(answer, plain=plain) == b'{"scores":[NaN,Infinity]}'
    with pytest.raises(BadRequest) as refused:
        parse_inputs(b'{"instances": [[NaN]]}', max_elements=10)
    assert refused.value.reason == "non_finite"
    # a number written as a string is refused, whatever it says ("nan", "inf", an overflowing one, "1.5")
    for body in (
        b'{"instances": [["nan", 1.0]]}',
        b'{"instances": [["1e999", 1.0]]}',
        b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": ["inf", 1.0]}]}',
        b'{"inputs": [["-Infinity", 1.0]]}',
        b'{"instances": [["1.5", 1.0]]}',
    ):
        with pytest.raises(BadRequest) as stringly:
            parse_inputs(body, max_elements=10)
        assert stringly.value.reason == "bad_values", body
    with pytest.raises(BadRequest) as bad:
        parse_inputs(b'{"instances": [[1,]]}', max_elements=10)
    assert bad.value.reason == "bad_json"
    with pytest.raises(BadRequest) as overflow:
        parse_inputs(b'{"instances": [[1e400]]}', max_elements=10)
    assert overflow.value.reason == "non_finite"


# ---------------------------------------------------------------------------------------------- ledger


@pytest.mark.parametrize(
    "value",
    [
        {"f": [0.0, -0.0, 1e-4, 0.523, 123456.789, 9999999999999998.0, 1764412345.123456]},
        {"f": [1e-5, 2.5e-7, 1e16, 1.5e300, -3e-9]},
        {"z\u00e9": 1, "a": {"\U0001f600": "x\x01\x1f\u2028\x7f", "A": None}, "b": [True, False, (1, "t")]},
        {"n": [2**63 - 1, -(2**63), 2**64 - 1, 2**70, -(2**70)]},
        {"k": {1: "int key"}},
    ],
)
def test_ledger_entry_text_is_canonical_json(value: dict[str, Any]) -> None:
    assert _canonical(value) == canonical_json(value)


def test_ledger_refuses_non_finite_values_on_both_paths() -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="JSON compliant"):
            _canonical({"x": bad})


def test_posted_records_are_committed_and_failures_counted(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with Ledger.open(f"sqlite:///{tmp_path / 'a.db'}", on_error=errors.append) as ledger:
        for i in range(5):
            ledger.post({"i": i, "latency_ms": 0.5 + i}, kind="test", identity="alice")
        ledger.flush()
        assert [e.body["i"] for e in ledger.entries()] == [0, 1, 2, 3, 4]
        ledger.post({"x": float("nan")}, kind="test")
        ledger.flush()
        assert ledger.write_errors == 1 and len(errors) == 1
        assert ledger.append({"ok": 1}).seq == 6
    assert Ledger.open(f"sqlite:///{tmp_path / 'a.db'}").verify().ok


def test_the_firewall_vouches_for_its_audit_records_only_when_orjson_writes_them_canonically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(build_profile(np.tile(np.linspace(0, 1, 10)[:, None], (1, 4)), max_categories=0)))
    raw: dict[str, Any] = {"version": 1, "models": {"m": {"routes": ["/predict"], "profile": str(profile)}}}
    state = tmp_path / "state"
    fw = Firewall(FakeModel(), parse_config(raw, state_dir=state), state_dir=state)
    key = KeyStore(state).create("alice")[0]
    assert fw.ledger is not None
    seen: list[tuple[dict[str, Any], bool]] = []
    post = fw.ledger.post

    def spy(record: dict[str, Any], **kwargs: Any) -> None:
        seen.append((record, kwargs.get("exact", False)))
        post(record, **kwargs)

    monkeypatch.setattr(fw.ledger, "post", spy)
    # in range (score 0), just outside the observed range (a score below 1e-4), further out, unauthenticated
    for row, headers in [
        ([0.5] * 4, {"x-api-key": key}),
        ([1.00001, 0.5, 0.5, 0.5], {"x-api-key": key}),
        ([1.02, 0.5, 0.5, 0.5], {"x-api-key": key}),
        ([0.5] * 4, {}),
    ]:
        call(fw, "POST", "/predict", body={"instances": [row]}, headers=headers)
    fw.close()
    assert [exact for _, exact in seen] == [True, False, True, True]
    assert [record["scores"].get("ood") for record, _ in seen] == [0.0, 3e-06, 0.005, None]
    for record, exact in seen:
        assert _orjson_exact(record) is exact


# ---------------------------------------------------------------------------------------------- time limits


class _RaisesTimeout:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise TimeoutError("the model's own client timed out")


def test_model_timeout_request_timeout_and_the_next_request(tmp_path: Path) -> None:
    slow = FakeModel(delay_s=0.5)
    fw, k = _firewall(tmp_path, slow, model={"timeout_s": 0.1})
    h = {"x-api-key": k}
    late = call(fw, "POST", "/predict", body={"instances": [[0.1]]}, headers=h)
    assert late.status == 504 and late.json()["error"]["code"] == "model_timeout"
    slow.delay_s = 0.0
    assert call(fw, "POST", "/predict", body={"instances": [[0.1]]}, headers=h).status == 200
    fw.close()

    fw, k = _firewall(tmp_path / "b", FakeModel(delay_s=0.5), admission={"request_timeout_s": 0.1})
    late = call(fw, "POST", "/predict", body={"instances": [[0.1]]}, headers={"x-api-key": k})
    assert late.status == 504 and late.json()["error"]["code"] == "request_timeout"
    fw.close()

    fw, k = _firewall(tmp_path / "c", _RaisesTimeout())
    own = call(fw, "POST", "/predict", body={"instances": [[0.1]]}, headers={"x-api-key": k})
    assert own.status == 504 and own.json()["error"]["code"] == "model_timeout"
    fw.close()


def test_deadlines_cancel_only_their_own_task_and_the_watchdog_rests_when_idle() -> None:
    import asyncio

    from hoplon.gateway.deadlines import Deadlines

    async def scenario() -> None:
        deadlines = Deadlines(tick_s=0.01)

        async def slow(seconds: float) -> str:
            deadline = deadlines.enter(seconds, "request")
            try:
                await asyncio.sleep(0.3)
                return "done"
            except asyncio.CancelledError:
                if not deadline.timed_out():
                    raise
                return f"timed out ({deadline.expired})"
            finally:
                deadlines.leave(deadline)

        assert list(await asyncio.gather(slow(0.05), slow(5.0))) == ["timed out (request)", "done"]
        await asyncio.sleep(0.05)
        assert deadlines._watchdog is not None and deadlines._watchdog.done()  # nothing live: it has ended
        other = asyncio.create_task(slow(5.0))  # a cancellation from elsewhere is not a timeout
        await asyncio.sleep(0.02)
        other.cancel()
        with pytest.raises(asyncio.CancelledError):
            await other

    asyncio.run(scenario())


def test_concurrency_cap_serves_waiters_in_order_and_a_cancelled_wait_holds_nothing() -> None:
    import asyncio

    from hoplon.gateway.deadlines import ConcurrencyCap

    async def scenario() -> None:
        cap = ConcurrencyCap(2)
        order: list[str] = []

        async def job(name: str, hold_s: float) -> None:
            if not cap.try_acquire():
                await cap.acquire()
            order.append(name)
            try:
                await asyncio.sleep(hold_s)
            finally:
                cap.release()

        first = [asyncio.create_task(job(n, 0.05)) for n in ("a", "b")]
        await asyncio.sleep(0)
        assert cap.held == 2 and not cap.try_acquire()
        waiters = [asyncio.create_task(job(n, 0.01)) for n in ("c", "d", "e")]
        await asyncio.sleep(0)
        with pytest.raises(TimeoutError):  # a bounded wait gives up and leaves no slot taken
            async with asyncio.timeout(0.01):
                await cap.acquire()
        await asyncio.gather(*first, *waiters)
        assert order == ["a", "b", "c", "d", "e"] and cap.held == 0
        # a wait cancelled just as its slot arrives passes the slot on
        cap = ConcurrencyCap(1)
        assert cap.try_acquire()
        late = asyncio.create_task(cap.acquire())
        after = asyncio.create_task(cap.acquire())
        await asyncio.sleep(0)
        cap.release()  # the slot goes to `late`'s waiter...
        late.cancel()  # ...whose task is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await late
        await after
        assert cap.held == 1
        cap.release()
        assert cap.held == 0 and cap.try_acquire()

    asyncio.run(scenario())
