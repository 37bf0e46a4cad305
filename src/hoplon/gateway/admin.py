"""The gateway's admin API and its quarantine list: the control channel of ``hoplon incident``.

``POST /admin/quarantine`` (``{"identity", "action": "block"|"throttle", "revoke": bool}``),
``DELETE /admin/quarantine/{identity}``, ``GET /admin/quarantine`` and ``POST /admin/rollback``
(``{"model"}``). Every call authenticates like a model request (API key or JWT) and needs the ``admin:*`` scope
(or ``admin:quarantine`` / ``admin:rollback``); every change is a ledger event in the gateway's audit ledger
(``admin.quarantine``, ``admin.release``, ``admin.rollback``, the affected identity or model as identity).

The quarantine list lives in ``<state dir>/quarantine.json`` (atomic replace under a file lock), so
``hoplon incident quarantine --state-dir`` works without the API and a restart keeps it. A quarantined identity
gets 403 (``block``) or 429 beyond ``rate_per_s`` requests a second (``throttle``) from its next request, whether
or not the detect stage is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hoplon.core.errors import HoplonError, InputError
from hoplon.gateway.auth import AuthFailure, Identity, has_scope
from hoplon.gateway.keys import KeyStore
from hoplon.gateway.protocol import BadRequest, read_body

if TYPE_CHECKING:
    from hoplon.gateway.firewall import Firewall, Receive, Scope, Send
    from hoplon.gateway.routing import RegistryRouter
    from hoplon.ledger import Ledger

__all__ = ["AdminApi", "QuarantineEntry", "QuarantineList", "revoke_identity"]

log = logging.getLogger("hoplon.gateway")

QUARANTINE_FILE = "quarantine.json"
MAX_QUARANTINED = 100_000
MAX_ADMIN_BODY = 64 * 1024
_IDENTITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:/+=-]{0,255}$")
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
QuarantineAction = Literal["block", "throttle"]


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One contained identity."""

    action: QuarantineAction
    since: float
    rate_per_s: float = 1.0
    by: str = "-"


def check_identity(identity: str) -> str:
    if not isinstance(identity, str) or not _IDENTITY_RE.match(identity):
        raise InputError(
            "An identity is 1-256 characters: letters, digits and ._@:/+=- (an API-key client or jwt:SUB)."
        )
    return identity


class QuarantineList:
    """The quarantine file, re-read when it changes (checked at most every ``max_age_s`` on the request path)."""

    def __init__(self, state_dir: str | Path, *, max_age_s: float = 0.2) -> None:
        self.path = Path(state_dir) / QUARANTINE_FILE
        self.max_age_s = max_age_s
        self._entries: dict[str, QuarantineEntry] = {}
        self._mtime: tuple[int, int, int] = (-1, -1, -1)
        self._checked = 0.0
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def _load(self, *, force: bool = False) -> dict[str, QuarantineEntry]:
        now = time.monotonic()
        if not force and now - self._checked < self.max_age_s:
            return self._entries
        self._checked = now
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._entries, self._mtime = {}, (-1, -1, -1)
            return self._entries
        mtime = (st.st_mtime_ns, st.st_ino, st.st_size)  # each write replaces the file: a new inode
        if mtime != self._mtime:
            try:
                self._entries = _parse(self.path.read_text())
                self._mtime = mtime
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # fail closed: a broken file never releases anyone; the last good list stays in force
                log.error("ALERT quarantine file %s unreadable, keeping the last good list: %s", self.path, exc)
        return self._entries

    def entries(self) -> dict[str, QuarantineEntry]:
        return dict(self._load(force=True))

    def refusal(self, identity: str) -> tuple[int, str, str, tuple[tuple[bytes, bytes], ...]] | None:
        """On the request path: ``(status, reason, message, headers)`` to refuse ``identity`` with, or ``None``."""
        entry = self._load().get(identity)
        if entry is None:
            return None
        if entry.action == "block":
            return 403, "quarantined", "This identity is quarantined (incident response).", ()
        now = time.monotonic()
        gap = 1.0 / entry.rate_per_s
        if now - self._last.get(identity, -gap) < gap:
            return 429, "throttled", "This identity is throttled (incident response).", ((b"retry-after", b"1"),)
        self._last[identity] = now
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, QuarantineEntry]]:
        """Read-modify-write under an exclusive file lock (the gateway and the CLI may both write)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, (self.path.parent / ".quarantine.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                try:
                    entries = _parse(self.path.read_text()) if self.path.exists() else {}
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    # never lose a containment: rewrite the file from the last good list this process read
                    log.error("ALERT quarantine file %s unreadable, rewriting it from memory: %s", self.path, exc)
                    entries = dict(self._entries)
                yield entries
                if len(entries) > MAX_QUARANTINED:
                    raise InputError(f"The quarantine list is full ({MAX_QUARANTINED} identities).")
                listed = {k: asdict(v) for k, v in sorted(entries.items())}
                body = json.dumps({"schema": "hoplon.quarantine/v1", "identities": listed}, indent=2)
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".quarantine-")
                with os.fdopen(fd, "w") as out:
                    out.write(body)
                Path(tmp).chmod(0o600)
                Path(tmp).replace(self.path)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        self._checked = 0.0
        self._load(force=True)

    def add(
        self, identity: str, action: QuarantineAction = "block", *, rate_per_s: float = 1.0, by: str = "-"
    ) -> QuarantineEntry:
        check_identity(identity)
        if action not in ("block", "throttle"):
            raise InputError(f"A quarantine action is block or throttle. Got {action!r}.")
        if not 0.001 <= rate_per_s <= 1000:
            raise InputError(f"rate_per_s must be in [0.001, 1000]. Got {rate_per_s}.")
        entry = QuarantineEntry(action, round(time.time(), 3), float(rate_per_s), by[:256])
        with self._locked() as entries:
            entries[identity] = entry
        return entry

    def remove(self, identity: str) -> bool:
        check_identity(identity)
        with self._locked() as entries:
            found = entries.pop(identity, None) is not None
        self._last.pop(identity, None)
        return found


def _parse(text: str) -> dict[str, QuarantineEntry]:
    raw = json.loads(text)
    if not isinstance(raw, dict) or raw.get("schema") != "hoplon.quarantine/v1":
        raise ValueError("not a hoplon.quarantine/v1 file")
    out = {}
    for identity, e in raw["identities"].items():
        if e["action"] not in ("block", "throttle"):
            raise ValueError(f"unknown action {e['action']!r}")
        out[str(identity)] = QuarantineEntry(e["action"], float(e["since"]), float(e["rate_per_s"]), str(e["by"]))
    return out


def revoke_identity(store: KeyStore, identity: str) -> list[str]:
    """Revoke every live API key of client ``identity``; return their key ids."""
    revoked = []
    for key in store.list():
        if key.client == identity and key.live:
            store.revoke(key.key_id)
            revoked.append(key.key_id)
    return revoked


class _AdminError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AdminApi:
    """``/admin/*`` on the gateway. ``router`` is set when the gateway serves from a model registry."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.quarantine = QuarantineList(state_dir)
        self.router: RegistryRouter | None = None

    async def handle(self, fw: Firewall, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, doc = await self._dispatch(fw, scope, receive)
        except _AdminError as exc:
            status, doc = exc.status, {"error": {"code": exc.code, "message": str(exc)}}
        except InputError as exc:
            status, doc = 400, {"error": {"code": "bad_request", "message": str(exc)}}
        body = json.dumps(doc, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _dispatch(self, fw: Firewall, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        method, path = scope["method"], scope["path"]
        body = await _read_bounded(receive)
        listing = path == "/admin/quarantine" and method in ("POST", "GET")
        if listing or (path.startswith("/admin/quarantine/") and method == "DELETE"):
            action = "quarantine"
        elif path == "/admin/rollback" and method == "POST":
            action = "rollback"
        else:
            raise _AdminError(404, "not_found", "No such admin endpoint.")
        actor = self._authorise(fw, scope, action)
        if method == "GET":
            return 200, {"quarantined": {k: asdict(v) for k, v in self.quarantine.entries().items()}}
        ledger = fw.ledger
        if ledger is None:
            raise _AdminError(503, "audit_unavailable", "Admin actions need the audit ledger (audit is off).")
        by = f"{actor.subject} ({actor.key_id or actor.method})"
        if method == "DELETE":
            identity = check_identity(path.removeprefix("/admin/quarantine/"))
            found = await asyncio.to_thread(self.quarantine.remove, identity)
            await _record(fw, ledger, "admin.release", identity, {"identity": identity, "found": found, "by": by})
            return 200, {"identity": identity, "released": found}
        doc = _json_object(body)
        if action == "rollback":
            model = doc.get("model")
            if not isinstance(model, str) or not _MODEL_RE.match(model):
                raise InputError('The body needs a model name: {"model": "NAME"}.')
            if self.router is None:
                raise _AdminError(409, "no_registry", "This gateway does not serve from a model registry.")
            router = self.router
            try:
                digest = await asyncio.to_thread(router.rollback, model)
            except HoplonError as exc:
                raise _AdminError(409, "rollback_refused", str(exc)) from None
            await _record(fw, ledger, "admin.rollback", model, {"model": model, "digest": digest, "by": by})
            return 200, {"model": model, "digest": digest}
        identity = check_identity(doc.get("identity", ""))
        kind = doc.get("action", "block")
        rate = doc.get("rate_per_s", 1.0)
        revoke = doc.get("revoke", False)
        if not isinstance(revoke, bool) or not isinstance(rate, (int, float)) or isinstance(rate, bool):
            raise InputError("revoke is a boolean and rate_per_s a number.")
        entry = await asyncio.to_thread(self.quarantine.add, identity, kind, rate_per_s=float(rate), by=by)
        revoked: list[str] = []
        if revoke:
            revoked = await asyncio.to_thread(revoke_identity, KeyStore(fw.config.state_dir), identity)
        record = {"identity": identity, "action": entry.action, "rate_per_s": entry.rate_per_s, "revoked": revoked}
        await _record(fw, ledger, "admin.quarantine", identity, {**record, "by": by})
        return 200, record

    def _authorise(self, fw: Firewall, scope: Scope, action: str) -> Identity:
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        rt = fw.runtime
        source = rt.source_of(scope)
        try:  # the failed-authentication guard of model requests covers the admin API too
            blocked = rt.guard.blocked(source)
        except Exception as exc:  # the gateway boundary: its storage (Redis) may be down; admin fails closed
            log.error("ALERT failed-auth guard unavailable for an admin call: %s: %s", type(exc).__name__, exc)
            raise _AdminError(
                503, "auth_guard_unavailable", "The failed-authentication guard is unavailable."
            ) from None
        if blocked is not None:
            raise _AdminError(429, blocked.limit, "Too many failed authentications.")
        try:
            identity = rt.authenticator.authenticate(headers)
        except AuthFailure as failure:
            fw.metrics.auth_failures.labels(failure.reason).inc()
            with contextlib.suppress(Exception):  # counting the failure is best effort; the call is refused anyway
                rt.guard.failed(source)
            raise _AdminError(401, failure.reason, str(failure)) from None
        if not has_scope(identity, "admin", action):
            log.error("ALERT %s called the admin API without the admin scope", identity.subject)
            raise _AdminError(403, "scope", "This identity has no admin scope.")
        return identity


async def _read_bounded(receive: Receive) -> bytes:
    try:
        return await read_body(receive, MAX_ADMIN_BODY)
    except BadRequest as exc:
        raise _AdminError(exc.status, exc.reason, str(exc)) from None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        raise InputError("The body is not JSON.") from None
    if not isinstance(doc, dict):
        raise InputError("The body is a JSON object.")
    return doc


async def _record(fw: Firewall, ledger: Ledger, kind: str, identity: str, record: dict[str, Any]) -> None:
    """The admin action's ledger event; a failure is an ALERT (the containment itself stays in force)."""
    try:
        await asyncio.to_thread(ledger.append, record, kind=kind, identity=identity)
    except Exception as exc:  # the gateway boundary: a ledger failure is an alert, never a lost containment
        fw.metrics.audit_write_errors.inc()
        log.error("ALERT admin event %s for %s not written: %s", kind, identity, exc)
        raise _AdminError(503, "audit_unavailable", "The action is applied but its ledger event failed.") from None
    log.warning("admin: %s %s by %s", kind, identity, record.get("by"))
