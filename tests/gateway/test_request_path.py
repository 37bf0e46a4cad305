"""The request path's shared pieces: one bounded body reader (firewall, admin API, apps) and the audit HMAC."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from hoplon.gateway import server
from hoplon.gateway.protocol import BadRequest, read_body


def _receiver(*messages: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


def test_chunks_are_joined_and_the_limit_holds_across_chunks() -> None:
    chunks = ({"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.request", "body": b"cd"})
    assert asyncio.run(read_body(_receiver(*chunks), 4)) == b"abcd"
    assert asyncio.run(read_body(_receiver(*chunks), None)) == b"abcd"
    with pytest.raises(BadRequest) as too_large:
        asyncio.run(read_body(_receiver(*chunks), 3))
    assert (too_large.value.status, too_large.value.reason) == (413, "body_too_large")
    with pytest.raises(BadRequest) as gone:
        asyncio.run(read_body(_receiver({"type": "http.disconnect"}), 3))
    assert (gone.value.status, gone.value.reason) == (499, "client_disconnected")


def test_a_proxy_app_used_without_the_firewall_still_bounds_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "MAX_APP_BODY", 16)
    app = server.proxy_app("http://127.0.0.1:9/")
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await app(scope, _receiver({"type": "http.request", "body": b"x" * 17}), send)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [], "query_string": b""}
    asyncio.run(call())
    assert sent[0]["status"] == 413 and b"body_too_large" in sent[1]["body"]


def test_the_audit_hmac_is_standard_hmac_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The firewall copies one keyed HMAC state per request; the value is plain HMAC-SHA256 of the input."""
    import hmac

    from hoplon.gateway.config import parse_config
    from hoplon.gateway.runtime import Runtime

    configs = [parse_config({"version": 1}, state_dir=tmp_path)]  # the key generated in the state folder
    for length in (5, 64, 100):  # shorter than, equal to and longer than SHA-256's block
        monkeypatch.setenv(f"HOPLON_TEST_HMAC_{length}", "k" * length)
        raw = {"version": 1, "stages": {"audit": {"hmac_key": f"env:HOPLON_TEST_HMAC_{length}"}}}
        configs.append(parse_config(raw, state_dir=tmp_path))
    for config in configs:
        runtime = Runtime(config, {}, {})
        for message in (b"", b"m" * 32, b"z" * 3000):
            assert runtime.input_hmac(message) == hmac.digest(runtime.hmac_key, message, "sha256").hex()
    assert len({Runtime(c, {}, {}).hmac_key for c in configs}) == 4
