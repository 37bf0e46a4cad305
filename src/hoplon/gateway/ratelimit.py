"""Rate limits, quotas and failed-authentication guards on the ``limits`` library.

Storage is ``memory://`` (one process) or ``redis://…`` (shared by workers and hosts). Windows are moving
windows, so no more than the configured count is admitted in any window; the daily quota is a fixed window
per UTC day. Costs are weighted by batch size when ``cost: batch``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from hoplon.core.errors import InputError
from hoplon.gateway.config import AuthConfig, RateLimitConfig

__all__ = ["AuthGuard", "Limited", "RateLimiter", "make_storage"]


class _MemoryStorage(MemoryStorage):
    """``limits``' memory storage with one expiry thread instead of a new ``threading.Timer`` per hit.

    limits 5.8 creates (and never starts) a Timer object on every hit, which costs about 40 µs each, and so
    never trims expired moving-window entries. Here one daemon thread trims them every second.
    """

    def __init__(self, uri: str | None = None, **options: Any) -> None:
        super().__init__(uri, **options)
        self._stopped = threading.Event()
        self._expirer = threading.Thread(target=self._expire_loop, name="hoplon-limits-expiry", daemon=True)
        self._expirer.start()

    def _MemoryStorage__schedule_expiry(self) -> None:
        return None

    def _expire_loop(self) -> None:
        while not self._stopped.wait(1.0):
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]

    def close(self) -> None:
        self._stopped.set()


def make_storage(uri: str) -> Storage:
    if uri.startswith("memory://"):
        return _MemoryStorage(uri)
    try:
        storage = storage_from_string(
            uri, **({"socket_timeout": 0.5, "socket_connect_timeout": 0.5} if uri.startswith("redis") else {})
        )
    except Exception as exc:  # limits raises ConfigurationError and driver errors for bad URIs
        raise InputError(f"The rate-limit storage {uri!r} cannot be used: {exc}") from None
    if not isinstance(storage, Storage):  # pragma: no cover - only async+ URIs give another type
        raise InputError(f"The rate-limit storage {uri!r} is asynchronous; use memory:// or redis://.")
    return storage


def _item(text: str) -> RateLimitItem:
    try:
        return parse(text)
    except ValueError:
        raise InputError(f"{text!r} is not a rate (e.g. 100/second, 10 per minute).") from None


@dataclass(frozen=True, slots=True)
class Limited:
    """A refusal: which limit, and the response headers (``Retry-After``, ``RateLimit-Policy``, ``RateLimit``)."""

    limit: str
    headers: tuple[tuple[bytes, bytes], ...]


def _headers(name: str, item: RateLimitItem, remaining: int, reset: float) -> tuple[tuple[bytes, bytes], ...]:
    window = item.get_expiry()
    retry = max(1, math.ceil(reset - time.time()))
    return (
        (b"retry-after", str(retry).encode()),
        (b"ratelimit-policy", f'"{name}";q={item.amount};w={window}'.encode()),
        (b"ratelimit", f'"{name}";r={max(0, remaining)};t={retry}'.encode()),
    )


class RateLimiter:
    """Per identity, per (identity, model), per source, and a daily quota; ``check`` spends and decides."""

    def __init__(self, config: RateLimitConfig, storage: Storage) -> None:
        self.config = config
        self.storage = storage
        self.moving = MovingWindowRateLimiter(storage)
        self.fixed = FixedWindowRateLimiter(storage)
        self.per_identity = _item(config.per_identity) if config.per_identity else None
        self.per_identity_model = _item(config.per_identity_model) if config.per_identity_model else None
        self.per_source = _item(config.per_source) if config.per_source else None
        self.daily = _item(f"{config.daily_quota}/day") if config.daily_quota else None

    def check(self, identity: str, model: str, source: str, batch: int) -> Limited | None:
        cost = batch if self.config.cost == "batch" else 1
        checks = (
            ("per_source", self.per_source, ("src", source), self.moving),
            ("per_identity", self.per_identity, ("id", identity), self.moving),
            ("per_identity_model", self.per_identity_model, ("idm", identity, model), self.moving),
            ("daily_quota", self.daily, ("day", identity), self.fixed),
        )
        for name, item, keys, strategy in checks:
            if item is None:
                continue
            # A fixed window counts refused hits too, so ask first: a refused request spends no quota.
            refused = cost > item.amount or (
                strategy is self.fixed and not strategy.test(item, "hoplon", *keys, cost=cost)
            )
            if refused or not strategy.hit(item, "hoplon", *keys, cost=cost):
                stats = strategy.get_window_stats(item, "hoplon", *keys)
                return Limited(name, _headers(name, item, stats.remaining, stats.reset_time))
        return None


class AuthGuard:
    """Failed-authentication limits: per source address, and a global failure rate against stuffing.

    When the global rate trips, sources with no successful authentication in the last hour are refused
    before their credentials are even looked at, until the rate falls again; known-good sources keep working.
    """

    def __init__(self, config: AuthConfig, storage: Storage) -> None:
        self.limiter = MovingWindowRateLimiter(storage)
        self.per_source = _item(config.failed_per_source)
        self.global_ = _item(config.failed_global)
        self._good: dict[str, float] = {}
        self.tripped_at: float | None = None

    def blocked(self, source: str) -> Limited | None:
        if not self.limiter.test(self.per_source, "hoplon-authfail", source):
            stats = self.limiter.get_window_stats(self.per_source, "hoplon-authfail", source)
            return Limited("failed_auth_source", _headers("failed_auth_source", self.per_source, 0, stats.reset_time))
        if not self.limiter.test(self.global_, "hoplon-authfail-global"):
            if self.tripped_at is None:
                self.tripped_at = time.time()
            seen = self._good.get(source)
            if seen is None or time.time() - seen > 3600:
                stats = self.limiter.get_window_stats(self.global_, "hoplon-authfail-global")
                return Limited("failed_auth_global", _headers("failed_auth_global", self.global_, 0, stats.reset_time))
        else:
            self.tripped_at = None
        return None

    def failed(self, source: str) -> Limited | None:
        self.limiter.hit(self.per_source, "hoplon-authfail", source)
        self.limiter.hit(self.global_, "hoplon-authfail-global")
        return None

    def succeeded(self, source: str) -> None:
        if len(self._good) > 100_000:  # bounded: forget the oldest half
            for key in sorted(self._good, key=self._good.__getitem__)[:50_000]:
                del self._good[key]
        self._good[source] = time.time()
