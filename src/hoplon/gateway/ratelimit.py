"""Rate limits, quotas and failed-authentication guards on the ``limits`` library.

Storage is ``memory://`` (one process) or ``redis://…`` (shared by workers and hosts). Windows are moving
windows, so no more than the configured count is admitted in any window; the daily quota is a fixed window
per UTC day. Costs are weighted by batch size when ``cost: batch``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from hoplon.core.errors import InputError
from hoplon.gateway.config import AuthConfig, RateLimitConfig

__all__ = ["AuthGuard", "Limited", "RateLimiter", "make_storage"]


class _Window:
    """One key's moving window: hit times, oldest first, with their amounts and their running total."""

    __slots__ = ("amounts", "expiry", "times", "total")

    def __init__(self, expiry: int) -> None:
        self.times: deque[float] = deque()
        self.amounts: deque[int] = deque()
        self.total = 0
        self.expiry = expiry

    def trim(self, now: float) -> None:
        """Drop the hits older than the window (a hit exactly ``expiry`` old still counts, as in ``limits``)."""
        times, cutoff = self.times, now - self.expiry
        while times and times[0] < cutoff:
            times.popleft()
            self.total -= self.amounts.popleft()


class _MemoryStorage(MemoryStorage):
    """``limits``' memory storage with one expiry thread instead of a new ``threading.Timer`` per hit, and
    O(1) moving windows for the rate limits.

    limits 5.8 creates (and never starts) a Timer object on every hit, which costs about 40 µs each, and so
    never trims expired moving-window entries; here one daemon thread trims them every second. Its moving
    window is a list with the newest hit first, one ``Entry`` object per unit of cost, so every hit shifts the
    whole list (a window of 1,000/second holds up to 1,000 entries). The rate limiter's windows here
    (``moving_acquire``, ``moving_stats``) are deques of hit times and amounts, appended at the end and
    trimmed from the front, with the same admission rule; the failed-authentication guard, rare by nature,
    stays on ``limits``' own structures (``moving_count``).
    """

    def __init__(self, uri: str | None = None, **options: Any) -> None:
        super().__init__(uri, **options)
        self._windows: dict[str, _Window] = {}
        self._windows_lock = threading.Lock()
        self._stopped = threading.Event()
        self._expirer = threading.Thread(target=self._expire_loop, name="hoplon-limits-expiry", daemon=True)
        self._expirer.start()

    def _MemoryStorage__schedule_expiry(self) -> None:
        return None

    def _expire_loop(self) -> None:
        while not self._stopped.wait(1.0):
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
            now = time.time()
            with self._windows_lock:
                for key, window in list(self._windows.items()):
                    window.trim(now)
                    if not window.times:
                        del self._windows[key]

    def close(self) -> None:
        self._stopped.set()

    def reset(self) -> int | None:
        with self._windows_lock:
            self._windows.clear()
        return super().reset()

    def clear(self, key: str) -> None:
        with self._windows_lock:
            self._windows.pop(key, None)
        super().clear(key)

    # The request path's own entry points. Fixed windows: the same logic and data as ``get`` and ``incr`` (so
    # the strategies' ``get_window_stats`` read what ``fixed_spend`` writes), without the two layers of
    # exception wrapping and the timer scheduling those carry (about 3 µs per call).

    def moving_acquire(self, key: str, limit: int, expiry: int, amount: int, now: float | None = None) -> bool:
        """Room for ``amount`` more in the moving window of ``key`` (at most ``limit`` in any ``expiry``
        seconds)? Take it if so. The rule of ``limits``' ``acquire_entry``. ``now``: ``time.time()``."""
        if amount > limit:
            return False
        if now is None:
            now = time.time()
        with self._windows_lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(expiry)
            window.trim(now)
            if window.total + amount > limit:
                return False
            window.times.append(now)
            window.amounts.append(amount)
            window.total += amount
            return True

    def moving_stats(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """``(reset time, remaining)`` of the moving window of ``key``: when its oldest hit leaves it, and
        the room left (``limits``' ``get_window_stats``)."""
        now = time.time()
        with self._windows_lock:
            window = self._windows.get(key)
            if window is None:
                return now + expiry, limit
            window.trim(now)
            start = window.times[0] if window.times else now
            return start + expiry, limit - window.total

    def moving_count(self, key: str, expiry: int) -> int:
        """The entries in the moving window of ``key`` (``get_moving_window``'s count); 0 at once if none."""
        if not self.events.get(key):
            return 0
        return self.get_moving_window(key, 0, expiry)[1]

    def fixed_spend(self, key: str, limit: int, expiry: int, amount: int, now: float) -> bool:
        """Room for ``amount`` more in the fixed window of ``key``? Spend it if so (a refusal spends nothing,
        unlike a plain ``incr``): the storage's ``get`` (dropping an expired window) and ``incr`` in one call."""
        if self.expirations.get(key, 0) <= now:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
            self.locks.pop(key, None)
        if self.storage.get(key, 0) > limit - amount:
            return False
        with self.locks[key]:
            self.storage[key] += amount
            if self.storage[key] == amount:
                self.expirations[key] = now + expiry
            return self.storage[key] <= limit


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


@dataclass(frozen=True, slots=True)
class _Check:
    """One configured limit with its storage key split around the varying identifiers (built once)."""

    name: str
    item: RateLimitItem
    fixed: bool
    scope: str
    head: str
    tail: str
    expiry: int
    amount: int

    @classmethod
    def of(cls, name: str, item: RateLimitItem, fixed: bool, scope: str) -> _Check:
        # ``item.key_for("hoplon", scope, *ids)`` is ``{namespace}/hoplon/{scope}/{ids joined by /}/{amount}/...``
        # for string ids; formatting it directly saves ~6 µs per limit per request.
        head = f"{item.namespace}/hoplon/{scope}/"
        tail = "/" + item.key_for().split("/", 1)[1]
        return cls(name, item, fixed, scope, head, tail, item.get_expiry(), item.amount)

    def key(self, ids: tuple[str, ...]) -> str:
        return f"{self.head}{'/'.join(ids)}{self.tail}"


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
        self._batch_cost = config.cost == "batch"
        self._memory = storage if isinstance(storage, _MemoryStorage) else None
        self._source = _Check.of("per_source", self.per_source, False, "src") if self.per_source else None
        self._identity = _Check.of("per_identity", self.per_identity, False, "id") if self.per_identity else None
        self._identity_model = (
            _Check.of("per_identity_model", self.per_identity_model, False, "idm") if self.per_identity_model else None
        )
        self._daily = _Check.of("daily_quota", self.daily, True, "day") if self.daily else None

    def check(self, identity: str, model: str, source: str, batch: int) -> Limited | None:
        """Spend ``batch`` (or 1) from each limit in turn; the first that has no room refuses the request."""
        cost = batch if self._batch_cost else 1
        checks: tuple[tuple[_Check | None, tuple[str, ...]], ...] = (
            (self._source, (source,)),
            (self._identity, (identity,)),
            (self._identity_model, (identity, model)),
            (self._daily, (identity,)),
        )
        memory = self._memory
        now = time.time()
        for check, ids in checks:
            if check is None:
                continue
            key = check.head + "/".join(ids) + check.tail  # check.key(ids), inline
            if memory is None:
                spent = self._spend(check, key, cost)
            elif check.fixed:
                spent = memory.fixed_spend(key, check.amount, check.expiry, cost, now)
            else:
                spent = memory.moving_acquire(key, check.amount, check.expiry, cost, now)
            if not spent:
                reset, remaining = self.window(check, ids)
                return Limited(check.name, _headers(check.name, check.item, remaining, reset))
        return None

    def window(self, check: _Check, ids: tuple[str, ...]) -> tuple[float, int]:
        """``(reset time, remaining)`` of one limit for ``ids``."""
        if self._memory is not None and not check.fixed:
            return self._memory.moving_stats(check.key(ids), check.item.amount, check.expiry)
        strategy = self.fixed if check.fixed else self.moving
        stats = strategy.get_window_stats(check.item, "hoplon", check.scope, *ids)
        return stats.reset_time, stats.remaining

    def _spend(self, check: _Check, key: str, cost: int) -> bool:
        """What the moving- and fixed-window strategies' ``hit`` (and ``test``) do, on a pre-built key, in a
        shared storage (Redis); the memory storage has its own entry points."""
        amount = check.amount
        if cost > amount:
            return False
        storage = self.storage
        if check.fixed:
            # A fixed window counts refused hits too, so ask first: a refused request spends no quota.
            return storage.get(key) <= amount - cost and storage.incr(key, check.expiry, amount=cost) <= amount
        return bool(storage.acquire_entry(key, amount, check.expiry, amount=cost))  # type: ignore[attr-defined]


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
        self._memory = storage if isinstance(storage, _MemoryStorage) else None
        self._source_head = f"{self.per_source.namespace}/hoplon-authfail/"
        self._source_tail = "/" + self.per_source.key_for().split("/", 1)[1]
        self._source_expiry = self.per_source.get_expiry()
        self._global_key = self.global_.key_for("hoplon-authfail-global")
        self._global_expiry = self.global_.get_expiry()
        self._quick = self.per_source.amount >= 1 and self.global_.amount >= 1  # a count of 0 is below both

    def blocked(self, source: str) -> Limited | None:
        memory = self._memory
        # The common case, no recent failure from this source nor a tripped global rate, decided on
        # pre-built keys without the strategies' key formatting (the full test below when in doubt). With no
        # failure on record at all the counts are 0 (``moving_count`` without its calls).
        if (
            memory is not None
            and self._quick
            and not memory.events.get(self._source_head + source + self._source_tail)
            and not memory.events.get(self._global_key)
        ):
            self.tripped_at = None
            return None
        if memory is not None and (
            memory.moving_count(self._source_head + source + self._source_tail, self._source_expiry)
            <= self.per_source.amount - 1
            and memory.moving_count(self._global_key, self._global_expiry) <= self.global_.amount - 1
        ):
            self.tripped_at = None
            return None
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
