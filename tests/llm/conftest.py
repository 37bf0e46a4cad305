"""Fixtures of the LLM tests, and a network guard: any connection to a non-loopback address fails the test."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from hoplon.llm.corpus import Item, build_corpus
from hoplon.llm.firewall import Firewall

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX paths are local
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"network access is not allowed in tests (tried {address!r})")
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"network access is not allowed in tests (tried {address!r})")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse every connection except to loopback (the fake upstreams the proxy tests start)."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    yield


@pytest.fixture(scope="session")
def firewall() -> Firewall:
    return Firewall()


@pytest.fixture(scope="session")
def corpus() -> list[Item]:
    """A smaller build of the corpus (same family split as the one the shipped model was trained on)."""
    return build_corpus(seed=0, per_family=50, benign_per_family=110)


@pytest.fixture(scope="session")
def held_out(corpus: list[Item]) -> list[Item]:
    return [it for it in corpus if it.split == "test"]
