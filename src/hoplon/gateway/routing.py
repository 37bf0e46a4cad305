"""`RegistryRouter`: the running gateway's view of a :class:`~hoplon.registry.ModelRegistry`.

Each request resolves its model's alias (``prod``, or the ``canary`` for its share of caller identities) to a
digest in an in-memory routing table, then gets the target loaded for that digest. The table is re-read when the
registry's index changes (its mtime is polled) and swapped as one reference, so a request that already resolved
keeps the target it got: promote and rollback never fail an in-flight request.

Loading a digest re-hashes its blob, re-verifies its signature (when the gateway has the public key), scans it and
opens it with hoplon's safe loader (no pickle). A blob that stops matching its digest, at load or at a periodic
check, is an integrity failure: the gateway stops routing it, the registry retires it and moves ``prod`` back to
the last good version (ledger event ``registry.auto_rollback``), and an ALERT is logged.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hoplon.core.errors import HoplonError, InputError, PolicyViolation, UnsafeArtifactError
from hoplon.registry import IntegrityError, KillSwitch, ModelRegistry, RegistryState, open_registry

__all__ = ["RegistryRouter", "Route", "RouteError"]

log = logging.getLogger("hoplon.gateway")


class RouteError(Exception):
    """A request that cannot be routed: the HTTP status, an error code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes: a digest and its loaded target, or a kill switch."""

    name: str
    digest: str | None
    target: Any = None
    kill: KillSwitch | None = None


@dataclass(slots=True)
class _Stat:
    """A blob's identity on disk when it was last hashed (a change means it must be hashed again)."""

    mtime_ns: int
    size: int
    inode: int
    hashed_at: float


class RegistryRouter:
    """Route requests through the registry at ``root``.

    Args:
        root: the registry folder (as ``hoplon registry --root``).
        shapes: one sample's shape per model name; ``default_shape`` for names not listed.
        require_signature: route only versions whose signature verified at push.
        public_key: verify the stored signature again at every load and full re-check.
        poll_s: how often the index's mtime (and the served blobs) are checked.
        verify_s: how often every loaded blob is hashed again in full (a changed mtime/size/inode triggers it
            at once).
        max_cached: loaded targets kept (the oldest load is dropped first; a request holding it keeps it).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        shapes: dict[str, tuple[int, ...]] | None = None,
        default_shape: tuple[int, ...] | None = None,
        require_signature: bool = False,
        public_key: str | Path | None = None,
        poll_s: float = 1.0,
        verify_s: float = 60.0,
        max_cached: int = 8,
    ) -> None:
        self.root = Path(root)
        if not (self.root / "index.json").is_file():
            raise InputError(f"{self.root} is not a model registry (no index.json); push a model first.")
        if not 0.05 <= poll_s <= 3600 or not 0.05 <= verify_s <= 86400 or not 1 <= max_cached <= 1024:
            raise InputError("registry: poll_s in [0.05, 3600], verify_s in [0.05, 86400], max_cached in [1, 1024].")
        if public_key is not None and not Path(public_key).is_file():
            raise InputError(f"The registry public key {public_key} does not exist.")
        self.shapes = dict(shapes or {})
        self.default_shape = default_shape
        self.require_signature = require_signature
        self.public_key = Path(public_key) if public_key is not None else None
        self.poll_s, self.verify_s, self.max_cached = poll_s, verify_s, max_cached
        self._reader = ModelRegistry(self.root, require_signature=require_signature)
        self._index_key = self._index_stat()
        self.state: RegistryState = self._reader.state()
        self._targets: OrderedDict[str, Any] = OrderedDict()
        self._stats: dict[str, _Stat] = {}
        self._bad: frozenset[str] = frozenset()
        self._containing = 0  # integrity failures being rolled back right now
        self._lock = threading.Lock()  # loads, the cache and the bad set
        # table swaps and registry changes, one at a time (re-entrant: a swap may contain an integrity failure);
        # always taken before ``_lock``
        self._swap = threading.RLock()
        self._poller: asyncio.Task[None] | None = None
        missing = [n for n in self.state.names() if self.shape(n) is None]
        if missing:
            raise InputError(
                f"Registry models {', '.join(missing)} need their sample shape: --input-shape, or "
                "models.NAME.input_shape in the config."
            )
        self._warm(self.state)  # the served versions are loaded (and checked) before the first request

    # ------------------------------------------------------------------ table

    def names(self) -> list[str]:
        return self.state.names()

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name, self.default_shape)

    def _index_stat(self) -> tuple[int, int, int]:
        """The index's mtime, inode and size: each write replaces the file, so a change shows even when two
        writes fall in one coarse mtime tick."""
        try:
            st = self._reader.index_path.stat()
        except OSError:
            return (-1, -1, -1)
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the index when it changed; swap the table in as one reference. True when it changed.

        Returns once the table is in place (a concurrent refresh is waited for).
        """
        with self._swap:
            key = self._index_stat()
            if not force and key == self._index_key:
                return False
            try:
                state = self._reader.state()
            except HoplonError as exc:
                log.error("ALERT registry index unreadable, keeping the routing table: %s", exc)
                return False
            self._index_key = key
            if self._warm(state):
                self.state = state
            return True

    def _warm(self, state: RegistryState) -> bool:
        """Load the digests ``state`` routes to before it is swapped in, so no request waits on a load.

        Returns False when an integrity failure was contained meanwhile (a newer table is already in place).
        """
        for name in state.names():
            if state.kill_switch(name) is not None:
                continue
            aliases = state.data["aliases"][name]
            routed = [aliases.get("prod"), (aliases.get("canary") or {}).get("digest")]
            for digest in [d for d in routed if d]:
                if digest in self._targets or digest in self._bad:
                    continue
                try:
                    state.routable(digest)
                except HoplonError:
                    continue  # never routed; a request for it is refused (503) with an ALERT
                try:
                    self._load(name, digest, state)
                except IntegrityError as exc:
                    self.contain(name, digest, str(exc))
                    return False
                except Exception as exc:  # the gateway boundary: a model that will not load is an alert
                    log.error(
                        "ALERT model %s version %s not loaded: %s: %s", name, digest[:19], type(exc).__name__, exc
                    )
        return True

    def route(self, name: str, identity: str) -> Route:
        """The digest (canary share keyed on ``identity``) or kill switch for one request; fail closed."""
        state = self.state
        if name not in state.data["aliases"]:
            raise RouteError(404, "no_such_model", f"No model {name!r} in the registry.")
        kill = state.kill_switch(name)
        if kill is not None:
            return Route(name, None, None, kill)
        try:
            digest = state.resolve(name, request_key=identity, exclude=self._bad)
        except (InputError, PolicyViolation) as exc:
            log.error("ALERT model %s not routed: %s", name, exc)
            raise RouteError(503, "model_unavailable", f"Model {name!r} has no routable version.") from None
        return Route(name, digest)

    # ------------------------------------------------------------------ targets

    async def resolve(self, name: str, identity: str) -> Route:
        """Route one request and load its target (cached per digest); fail closed with :class:`RouteError`.

        A blob that fails its integrity check here is contained (rolled back) and the request is routed again,
        so it is answered by the last good version.
        """
        for attempt in range(3):
            try:
                route = self.route(name, identity)
            except RouteError:
                if self._containing and attempt < 2:
                    await self._settled()  # a rollback is under way: answer with the version it settles on
                    continue
                raise
            if route.digest is None:
                return route
            cached = self._targets.get(route.digest)
            if cached is not None:
                return Route(name, route.digest, cached)
            try:
                target = await asyncio.to_thread(self._load, name, route.digest)
            except IntegrityError as exc:
                await asyncio.to_thread(self.contain, name, route.digest, str(exc))
                continue
            except HoplonError as exc:
                log.error("ALERT model %s version %s not loaded: %s", name, route.digest[:19], exc)
                raise RouteError(503, "model_unavailable", f"Model {name!r} cannot be loaded.") from None
            return Route(name, route.digest, target)
        raise RouteError(503, "integrity_failure", f"Model {name!r} failed its integrity check.")

    async def _settled(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._containing and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _load(self, name: str, digest: str, state: RegistryState | None = None) -> Any:
        from hoplon.core.finding import Severity
        from hoplon.scan import fails_policy, scan_file
        from hoplon.targets import load_target

        with self._lock:
            cached = self._targets.get(digest)
            if cached is not None:
                return cached
            (state or self.state).routable(digest)
            shape = self.shape(name)
            if shape is None:
                raise InputError(f"Model {name!r} has no sample shape.")
            blob = self._reader.blob(digest)
            stat = self._stat(digest, blob)
            # hash, verify, scan and load one private copy: the blob cannot change between the check and the load
            with tempfile.TemporaryDirectory(prefix="hoplon-blob-") as private:
                copy = Path(private) / digest[7:]
                shutil.copyfile(blob, copy)
                self._check(digest, copy)
                if fails_policy(scan_file(copy), Severity.HIGH):
                    raise UnsafeArtifactError(f"The blob of {digest} fails the scan; it is not loaded.")
                target = load_target(copy, input_shape=shape)
            self._stats[digest] = stat
            self._targets[digest] = target
            while len(self._targets) > self.max_cached:
                old, _ = self._targets.popitem(last=False)
                self._stats.pop(old, None)
            log.warning("registry: loaded %s for %s", digest[:19], name)
            return target

    def _stat(self, digest: str, blob: Path) -> _Stat:
        try:
            st = blob.stat()
        except OSError:
            raise IntegrityError(f"The blob of {digest} is missing.") from None
        return _Stat(st.st_mtime_ns, st.st_size, st.st_ino, time.monotonic())

    def _check(self, digest: str, path: Path) -> None:
        """``path`` hashes to ``digest`` (and its stored signature verifies with the public key), else raise."""
        from hoplon.targets import file_digest

        actual = file_digest(path)
        if actual != digest:
            raise IntegrityError(f"The blob of {digest} is corrupt (it hashes to {actual}).")
        if self.public_key is not None:
            from hoplon.scan import verify_model

            result = verify_model(path, public_key=self.public_key, signature=self._reader.signature_path(digest))
            if not result.ok:
                raise IntegrityError(f"The signature of {digest} does not verify: {result.describe()}.")

    def _verify(self, digest: str) -> None:
        """Re-check a loaded blob in place; remember its on-disk identity as it was before the hash."""
        blob = self._reader.blob(digest)
        stat = self._stat(digest, blob)
        self._check(digest, blob)
        self._stats[digest] = stat

    def check_loaded(self) -> list[str]:
        """Re-check every loaded blob (at once when its mtime, size or inode changed, else every ``verify_s``).

        Returns the digests that failed (each already contained).
        """
        failed = []
        now = time.monotonic()
        with self._lock:
            loaded = list(self._targets)
        for digest in loaded:
            stat = self._stats.get(digest)
            try:
                st = self._reader.blob(digest).stat()
                unchanged = stat is not None and (st.st_mtime_ns, st.st_size, st.st_ino) == (
                    stat.mtime_ns,
                    stat.size,
                    stat.inode,
                )
                if unchanged and stat is not None and now - stat.hashed_at < self.verify_s:
                    continue
                self._verify(digest)
            except (IntegrityError, OSError) as exc:
                version = self.state.version(digest)
                self.contain(version.name if version is not None else None, digest, str(exc))
                failed.append(digest)
        return failed

    def contain(self, name: str | None, digest: str, reason: str) -> str | None:
        """Stop routing ``digest`` at once, roll the registry back to the last good version, log an ALERT.

        ``name`` is ``None`` for a digest the index no longer lists: it is dropped, with nothing to roll back.
        """
        with self._lock:
            first = digest not in self._bad
            self._bad = self._bad | {digest}
            self._targets.pop(digest, None)
            self._stats.pop(digest, None)
            self._containing += 1
        try:
            if name is None:
                log.error("ALERT integrity failure of %s, which the index no longer lists: %s", digest[:19], reason)
                return None
            return self._roll_back(name, digest, reason) if first else None
        finally:
            with self._lock:
                self._containing -= 1

    def _roll_back(self, name: str, digest: str, reason: str) -> str | None:
        log.error("ALERT integrity failure of %s (%s): %s; rolling back", name, digest[:19], reason)
        good: str | None = None
        with self._swap:
            registry = open_registry(self.root, require_signature=self.require_signature)
            try:
                good = registry.auto_rollback(name, digest, reason=reason)
            except HoplonError as exc:
                log.error("ALERT automatic rollback of %s failed, %s stays unrouted: %s", name, digest[:19], exc)
            finally:
                if registry.ledger is not None:
                    registry.ledger.close()
            self.refresh(force=True)
        if good is None:
            log.error("ALERT %s has no good version left; it answers 503 until one is promoted", name)
        else:
            log.error("ALERT %s now serves %s (automatic rollback)", name, good[:19])
        return good

    def rollback(self, name: str) -> str:
        """``hoplon incident rollback`` through the gateway: registry rollback (a ledger event), applied at once."""
        if name not in self.state.data["aliases"]:
            raise InputError(f"No model {name!r} in the registry.")
        with self._swap:
            registry = open_registry(self.root, require_signature=self.require_signature)
            try:
                digest = registry.rollback(name)
            finally:
                if registry.ledger is not None:
                    registry.ledger.close()
            self.refresh(force=True)
        return digest

    # ------------------------------------------------------------------ polling

    def poll(self) -> None:
        """One poll: re-read a changed index, then re-check the loaded blobs."""
        self.refresh()
        self.check_loaded()

    def start(self) -> None:
        """Start polling on the running event loop (once)."""
        if self._poller is None or self._poller.done():  # done: its event loop has ended (a new one runs now)
            self._poller = asyncio.get_running_loop().create_task(self._poll_loop())

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await asyncio.to_thread(self.poll)
            except Exception as exc:  # the gateway boundary: a failed poll is an alert, never a dead poller
                log.error("ALERT registry poll failed: %s: %s", type(exc).__name__, exc)

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
