"""Detector state shared in Redis by several gateway workers (``detect.storage: redis://host:port/db``).

With one process, the detectors keep their state in memory. Behind several workers (``--workers N``, several
hosts) each worker would see only part of an identity's stream, and a quarantine decided in one would not
hold in the others. With ``storage: redis://…`` everything the detectors decide on lives in Redis:

* ``<prefix>s:<id>``: one hash per identity, a field per detector holding its state (PRADA's growing set and
  distances, the similarity ring, the match windows and counters) as :func:`pack_state` bytes: a JSON header
  with each array's dtype and shape, then the raw arrays — no pickle. Written in a ``WATCH``/``MULTI``
  transaction, so two workers observing the same identity at once are serialised (the loser re-runs on the
  new state): the detectors see one stream, as in one process. The key expires ``state_ttl_s`` after the
  identity's last query; ``<prefix>ids`` (a sorted set by last query) bounds them to ``max_identities``,
  least recently seen evicted first.
* ``<prefix>fp``: the shared fingerprints, a stream capped at ``capacity`` entries (code, owner hash, digest:
  ``d + 16`` bytes each). Every worker appends its queries and reads the others' before each observation,
  so the Sybil detector sees the queries of all keys on all workers.
* ``<prefix>c:<id>``: an identity's containment (action, since, last alarms) as JSON, expiring with
  ``quarantine_s`` for a block; ``<prefix>contained`` (a sorted set by time) bounds them to ``max_contained``.
  A change is published on ``<prefix>invalidate``: every worker drops its cached entry at once. The hot path
  reads a local cache (``cache_s``) while that subscription is live, and Redis itself otherwise.

``<id>`` is the first 32 hex digits of the SHA-256 of the identity, so no caller-chosen text becomes a key.
A Redis error reaches the caller: the stage's ``on_error`` decides (``fail_open``: serve and alert;
``fail_closed``: 503); the worker drops observations while Redis is away and resumes when it is back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hoplon.core.errors import InputError
from hoplon.gateway.detectors.engine import ACTIONS, Action, DetectionEngine, Policy
from hoplon.gateway.detectors.similarity import SharedFingerprints
from hoplon.gateway.detectors.types import Alarm, Detector, PortableDetector

__all__ = ["RedisDetectionEngine", "RedisState", "connect"]

log = logging.getLogger("hoplon.gateway.detectors")

_RETRIES = 8  # WATCH conflicts tolerated per observation before it is dropped (and alerted)
_MAX_RECORD = 65_536  # the largest containment record read back
_MAX_CACHE = 100_000  # cached containment entries before the cache is emptied
_TRIM_EVERY = 32  # observations between two passes bounding the identities


def connect(uri: str) -> Any:
    """A Redis client for ``uri`` with short timeouts and one reconnect (a dead pooled connection after a
    Redis restart), so a Redis outage fails a request in milliseconds instead of hanging it."""
    if not uri.startswith(("redis://", "rediss://", "unix://")):
        raise InputError(f"The 'storage' parameter of the detect stage must be memory or redis://… Got {uri!r}.")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        return redis.Redis.from_url(
            uri, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1), health_check_interval=0
        )
    except ValueError as exc:
        raise InputError(f"The detect storage {uri!r} cannot be used: {exc}") from None


def _transient() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError)


class RedisState:
    """The connection, the key layout and the containment state in Redis, with the invalidation listener.

    Args:
        uri: ``redis://host:port/db`` (or ``rediss://``, ``unix://``).
        prefix: the key prefix (default ``hoplon:detect:``), so several gateways can share one Redis.
        state_ttl_s: an identity's detector state expires this long after its last query.
        max_identities: identities whose state is kept (the least recently seen are evicted).
        max_contained: containment records kept (the oldest are dropped).
        cache_s: how long the hot path trusts a cached containment lookup while invalidation is live.
    """

    def __init__(
        self,
        uri: str,
        *,
        prefix: str = "hoplon:detect:",
        state_ttl_s: float = 86_400.0,
        max_identities: int = 10_000,
        max_contained: int = 100_000,
        cache_s: float = 1.0,
    ) -> None:
        if not prefix or len(prefix) > 128:
            raise InputError(
                f"The 'key_prefix' parameter of the detect stage must hold 1 to 128 chars. Got {prefix!r}."
            )
        if state_ttl_s <= 0 or max_identities < 1 or max_contained < 1 or cache_s < 0:
            raise InputError("The detect storage needs state_ttl_s > 0, max_identities >= 1, max_contained >= 1.")
        self.uri, self.prefix = uri, prefix
        self.state_ttl_ms = int(state_ttl_s * 1000)
        self.max_identities, self.max_contained, self.cache_s = max_identities, max_contained, cache_s
        self.client = connect(uri)
        self.transient_errors = _transient()
        self.ids_key, self.contained_key = f"{prefix}ids", f"{prefix}contained"
        self.stream_key, self.channel = f"{prefix}fp", f"{prefix}invalidate"
        self._cache: dict[str, tuple[Action | None, float]] = {}
        self._generation = 0  # bumped by every invalidation: a lookup that raced one is not cached
        self._live = threading.Event()
        self._stopped = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="hoplon-detect-invalidate", daemon=True)
        self._listener.start()

    # ------------------------------------------------------------------ keys

    @staticmethod
    def key_of(identity: str) -> str:
        return hashlib.sha256(identity.encode()).hexdigest()[:32]

    def state_key(self, key: str) -> str:
        return f"{self.prefix}s:{key}"

    def containment_key(self, key: str) -> str:
        return f"{self.prefix}c:{key}"

    # ------------------------------------------------------------------ containment

    def action(self, identity: str, policy: Policy) -> Action | None:
        """The action in force for ``identity`` (the hot path: a cached lookup, or one ``GET``)."""
        if policy.mode == "shadow":
            return None
        key = self.key_of(identity)
        now = time.monotonic()
        if self._live.is_set():
            cached = self._cache.get(key)
            if cached is not None and now - cached[1] < self.cache_s:
                return cached[0]
        generation = self._generation
        record = self._read(key)
        action: Action | None = None
        if record is not None:
            action = record["action"]
            quarantine_s = policy.quarantine_s
            if action == "block" and quarantine_s is not None and time.time() - record["since"] > quarantine_s:
                self.release(identity)
                action = None
        if self._live.is_set() and generation == self._generation:
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[key] = (action, now)
        return action

    def _read(self, key: str) -> dict[str, Any] | None:
        raw = self.client.get(self.containment_key(key))
        record = None if raw is None or len(raw) > _MAX_RECORD else _loads(raw)
        if record is not None:
            record["since"] = float(record.get("since", 0.0))
        return record

    def contain(
        self, identity: str, policy: Policy, decide: Callable[[Action | None], Action], alarm: Alarm | None = None
    ) -> Action:
        """Set ``identity``'s action to ``decide(current action)`` atomically (a ``WATCH`` transaction), and
        tell every worker. Returns the action set."""
        from redis.exceptions import WatchError

        key = self.key_of(identity)
        ckey = self.containment_key(key)
        for _ in range(_RETRIES):
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(ckey)
                    raw = pipe.get(ckey)
                    current = None if raw is None or len(raw) > _MAX_RECORD else _loads(raw)
                    action = decide(None if current is None else current["action"])
                    alarms = [] if current is None else list(current.get("alarms", []))[-9:]
                    if alarm is not None:
                        alarms.append([alarm.detector, alarm.score, alarm.threshold, alarm.at_query])
                    since = time.time() if current is None else float(current.get("since", time.time()))
                    record = {"identity": identity[:1024], "action": action, "since": since, "alarms": alarms}
                    expiry = policy.quarantine_s if action == "block" else None
                    pipe.multi()
                    if expiry is None:
                        pipe.set(ckey, json.dumps(record))
                    else:
                        pipe.set(ckey, json.dumps(record), px=max(int((since + expiry - time.time()) * 1000), 1))
                    pipe.zadd(self.contained_key, {key: since})
                    pipe.publish(self.channel, key)
                    pipe.execute()
                except WatchError:
                    continue
            self._forget_cached(key)
            self._bound(self.contained_key, self.max_contained, self.containment_key)
            return action
        raise RuntimeError(f"the containment of {identity} kept changing under {_RETRIES} attempts")

    def release(self, identity: str) -> None:
        """Lift ``identity``'s containment and drop its detector state, in every worker."""
        key = self.key_of(identity)
        with self.client.pipeline() as pipe:
            pipe.delete(self.containment_key(key), self.state_key(key))
            pipe.zrem(self.contained_key, key)
            pipe.zrem(self.ids_key, key)
            pipe.publish(self.channel, key)
            pipe.execute()
        self._forget_cached(key)

    def _forget_cached(self, key: str) -> None:
        self._generation += 1
        self._cache.pop(key, None)

    def _bound(self, zset: str, limit: int, key_of: Callable[[str], str]) -> None:
        """Keep at most ``limit`` members in ``zset`` (lowest scores dropped, with the keys they name)."""
        excess = int(self.client.zcard(zset)) - limit
        if excess <= 0:
            return
        dropped = self.client.zpopmin(zset, min(excess, 10_000))
        names = [m.decode() if isinstance(m, bytes) else str(m) for m, _ in dropped]
        if names:
            self.client.delete(*(key_of(n) for n in names))

    def bound_identities(self) -> None:
        """Drop the expired identities from the index and the least recently seen beyond ``max_identities``."""
        self.client.zremrangebyscore(self.ids_key, "-inf", time.time() - self.state_ttl_ms / 1000)
        self._bound(self.ids_key, self.max_identities, self.state_key)

    # ------------------------------------------------------------------ invalidation

    def _listen(self) -> None:
        """Drop cached containment entries as other workers publish changes; without a live subscription the
        cache is not used (every lookup reads Redis), so a lost message cannot leave a stale entry behind."""
        import redis

        while not self._stopped.is_set():
            pubsub = None
            try:
                listener: Any = redis.Redis.from_url(
                    self.uri, socket_timeout=None, socket_connect_timeout=0.5, retry=None, health_check_interval=0
                )
                pubsub = listener.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self._cache.clear()
                self._live.set()
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None and isinstance(message.get("data"), bytes):
                        self._forget_cached(message["data"].decode(errors="replace"))
            except self.transient_errors:
                pass
            except Exception as exc:  # the listener's boundary: never let it die silently; the cache goes off
                log.error("ALERT detector invalidation listener failed: %s: %s", type(exc).__name__, exc)
            finally:
                self._live.clear()
                self._cache.clear()
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception as exc:  # closing a dead connection; nothing is left to do with it
                        log.debug("detector invalidation listener close: %s", exc)
            self._stopped.wait(0.5)

    @property
    def invalidation_live(self) -> bool:
        return self._live.is_set()

    def close(self) -> None:
        self._stopped.set()
        self._listener.join(timeout=2.0)
        self.client.close()


def _loads(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("action") not in ACTIONS:
        return None
    if not isinstance(record.get("since", 0.0), int | float) or not isinstance(record.get("alarms", []), list):
        return None
    return record


class RedisDetectionEngine(DetectionEngine):
    """A :class:`DetectionEngine` whose per-identity state, shared fingerprints and containment live in Redis
    (see the module's docstring for the layout). Every detector must be a :class:`PortableDetector`."""

    def __init__(
        self,
        detectors: Sequence[Detector],
        policy: Policy | None = None,
        *,
        state: RedisState,
        on_alarm: Callable[[Alarm, Action], None] | None = None,
    ) -> None:
        super().__init__(detectors, policy, on_alarm=on_alarm, max_contained=state.max_contained)
        self.state = state
        self.transient_errors = state.transient_errors
        self._stream_last = "0-0"
        self._observed = 0
        self._portable(self.detectors)

    def _portable(self, detectors: Sequence[Detector]) -> list[PortableDetector]:
        out = []
        for detector in detectors:
            if not isinstance(detector, PortableDetector):
                raise InputError(f"Detector {detector.name!r} cannot keep its state in Redis (not portable).")
            if isinstance(detector, SharedFingerprints) and detector.outbox is None:
                detector.outbox = []
            out.append(detector)
        return out

    def reconfigure(self, detectors: Sequence[Detector], policy: Policy) -> list[str]:
        self._portable(detectors)
        with self._observe_lock:
            rebuilt = super().reconfigure(detectors, policy)
            if "shared" in rebuilt:
                self._stream_last = "0-0"  # a new ring: read the stream again from its start
        return rebuilt

    def _shared(self) -> SharedFingerprints | None:
        return next((d for d in self.detectors if isinstance(d, SharedFingerprints)), None)

    def observe(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> list[Alarm]:
        from redis.exceptions import WatchError

        with self._observe_lock:
            shared = self._shared()
            if shared is not None:
                self._sync(shared)
            for _ in range(_RETRIES):
                try:
                    fired = self._attempt(identity, x, probs)
                    break
                except WatchError:
                    continue
            else:
                log.error("ALERT detector state of %s kept changing; an observation was dropped", identity)
                return []
            self._observed += 1
            if self._observed % _TRIM_EVERY == 0:
                self.state.bound_identities()
            for alarm in fired:
                self._escalate(alarm)
        return fired

    def _attempt(self, identity: str, x: np.ndarray, probs: np.ndarray | None) -> list[Alarm]:
        """One optimistic pass: read the identity's state, run the detectors, write it back unless another
        worker wrote it meanwhile (``WatchError``: the caller runs the pass again on the new state)."""
        detectors = self._portable(self.detectors)
        key = self.state.key_of(identity)
        skey = self.state.state_key(key)
        outboxes = [d for d in detectors if isinstance(d, SharedFingerprints) and d.outbox is not None]
        with self.state.client.pipeline() as pipe:
            try:
                pipe.watch(skey)
                stored: Mapping[bytes, bytes] = pipe.hgetall(skey)
                done = self._load(identity, detectors, stored)
                fired: list[Alarm] = []
                for detector in detectors:
                    alarm = detector.observe(identity, x, probs)
                    if alarm is not None and detector.name not in done:
                        done.add(detector.name)
                        fired.append(alarm)
                fields: dict[str, bytes] = {"_fired": json.dumps(sorted(done)).encode()}
                for detector in detectors:
                    blob = detector.dump(identity)
                    if blob is not None:
                        fields[detector.name] = blob
                pipe.multi()
                pipe.hset(skey, mapping=fields)
                pipe.pexpire(skey, self.state.state_ttl_ms)
                pipe.zadd(self.state.ids_key, {key: time.time()})
                for shared in outboxes:  # the new fingerprints, in the same transaction as the state
                    for entry in shared.outbox or ():
                        pipe.xadd(self.state.stream_key, {"e": entry}, maxlen=shared.capacity, approximate=False)
                    pipe.pexpire(self.state.stream_key, self.state.state_ttl_ms)
                pipe.execute()
            finally:  # written or not, this pass's fingerprints are done with (a retry makes its own)
                for detector in detectors:
                    detector.forget(identity)
                for shared in outboxes:
                    if shared.outbox is not None:
                        shared.outbox.clear()
        return fired

    def _load(self, identity: str, detectors: Sequence[PortableDetector], stored: Mapping[bytes, bytes]) -> set[str]:
        for detector in detectors:
            blob = stored.get(detector.name.encode())
            detector.forget(identity)
            if blob is None:
                continue
            try:
                if not detector.load(identity, blob):
                    log.info(
                        "detector %s: stored state of %s has another layout; starting afresh", detector.name, identity
                    )
            except InputError as exc:
                log.warning(
                    "detector %s: stored state of %s refused (%s); starting afresh", detector.name, identity, exc
                )
                detector.forget(identity)
        try:
            names = json.loads(stored.get(b"_fired", b"[]"))
        except ValueError:
            names = []
        known = {d.name for d in detectors}
        return {n for n in names if isinstance(n, str) and n in known} if isinstance(names, list) else set()

    def _sync(self, shared: SharedFingerprints) -> None:
        """Read the fingerprints other workers (and this one) appended since the last read."""
        for _ in range(16):
            reply = self.state.client.xread({self.state.stream_key: self._stream_last}, count=shared.capacity)
            if not reply:
                return
            entries = reply[0][1]
            for _entry_id, fields in entries:
                try:
                    shared.ingest(fields.get(b"e", b""))
                except InputError as exc:
                    log.warning("shared fingerprint entry refused: %s", exc)
            last = entries[-1][0]
            self._stream_last = last.decode() if isinstance(last, bytes) else str(last)
            if len(entries) < shared.capacity:
                return

    def _escalate(self, alarm: Alarm) -> None:
        action = self.state.contain(alarm.identity, self.policy, lambda current: self.level(current, alarm), alarm)
        with self._lock:
            self.alarms = [*self.alarms[-999:], alarm]
        self.announce(alarm, action)

    def action(self, identity: str) -> Action | None:
        return self.state.action(identity, self.policy)

    def quarantine(self, identity: str, action: Action = "block") -> None:
        self.state.contain(identity, self.policy, lambda current: action)

    def release(self, identity: str) -> None:
        self.state.release(identity)

    def close(self) -> None:
        self.state.close()
