"""API keys: created once, stored hashed under a public key-id prefix, checked in constant time.

A key reads ``hpl_<key id>_<secret>``: 12 hex digits of id and 256 random bits of secret (64 hex digits).
The store keeps ``SHA-256(key)`` only; keys are high-entropy random strings, so a plain hash (not a password KDF) is the
right tool and costs microseconds per request. A client may hold two live keys at once, so a key is
rotated by creating the second and then revoking the first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hoplon.core.errors import InputError

__all__ = ["MAX_LIVE_KEYS", "RECHECK_S", "ApiKey", "KeyStore"]

MAX_LIVE_KEYS = 2
# How stale the request path's view of the keys file may be for a known key id (a revocation's delay).
RECHECK_S = 0.2
_KEY_RE = re.compile(r"^hpl_([0-9a-f]{12})_([0-9a-f]{64})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored key (never the key itself)."""

    key_id: str
    client: str
    scopes: tuple[str, ...]
    created: float
    digest: str
    revoked: float | None = None

    @property
    def live(self) -> bool:
        return self.revoked is None


class KeyStore:
    """The keys file (``<state dir>/keys.json``); rereads itself when the file changes on disk."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / "keys.json"
        self._mtime: float = -1.0
        self._checked = 0.0
        self._keys: dict[str, ApiKey] = {}

    def _load(self, *, max_age_s: float = 0.0) -> dict[str, ApiKey]:
        now = time.monotonic()
        if max_age_s and now - self._checked < max_age_s:
            return self._keys
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            self._keys, self._mtime = {}, -1.0
            return self._keys
        if mtime != self._mtime:
            raw = json.loads(self.path.read_text())
            self._keys = {
                k["key_id"]: ApiKey(
                    k["key_id"], k["client"], tuple(k["scopes"]), k["created"], k["digest"], k.get("revoked")
                )
                for k in raw.get("keys", [])
            }
            self._mtime = mtime
        return self._keys

    def _save(self, keys: dict[str, ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"schema": "hoplon.keys/v1", "keys": [asdict(k) for k in keys.values()]}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
        Path(tmp).chmod(0o600)
        Path(tmp).replace(self.path)  # atomic: a running gateway sees the old or the new file, never half
        self._mtime, self._checked = -1.0, 0.0

    def create(self, client: str, *, scopes: tuple[str, ...] = ("model:*", "output:*")) -> tuple[str, ApiKey]:
        """Make a new key for ``client``; return the key (shown once) and its stored record."""
        if not _NAME_RE.match(client):
            raise InputError(f"A client name is 1-64 letters, digits and ._@-. Got {client!r}.")
        keys = dict(self._load())
        live = [k for k in keys.values() if k.client == client and k.live]
        if len(live) >= MAX_LIVE_KEYS:
            raise InputError(
                f"Client {client!r} already has {MAX_LIVE_KEYS} live keys ({', '.join(k.key_id for k in live)}); "
                "revoke one first (rotation: create the new key, deploy it, revoke the old one)."
            )
        key_id = secrets.token_hex(6)
        token = f"hpl_{key_id}_{secrets.token_hex(32)}"
        record = ApiKey(key_id, client, tuple(scopes), round(time.time(), 3), _digest(token))
        keys[key_id] = record
        self._save(keys)
        return token, record

    def revoke(self, key_id: str) -> ApiKey:
        keys = dict(self._load())
        record = keys.get(key_id)
        if record is None:
            raise InputError(f"No key with id {key_id!r}.")
        if record.live:
            record = ApiKey(record.key_id, record.client, record.scopes, record.created, record.digest, time.time())
            keys[key_id] = record
            self._save(keys)
        return record

    def list(self) -> list[ApiKey]:
        return sorted(self._load().values(), key=lambda k: (k.client, k.created))

    def check(self, token: str) -> tuple[ApiKey | None, str]:
        """The live key matching ``token`` and ``"ok"``, or ``None`` and why (``malformed``, ``unknown``, …)."""
        match = _KEY_RE.match(token)
        if match is None:
            return None, "malformed"
        # The file is looked at (one stat()) at most every RECHECK_S for known ids: a revocation applies
        # within that. An id not in the cached set is looked up afresh, so a new key works at once. A stat()
        # per request cost ~30 µs of CPU on the request path (the system call, and the GIL it hands over).
        key_id = match.group(1)
        record = self._load(max_age_s=RECHECK_S).get(key_id) or self._load().get(key_id)
        # Compare even for unknown ids so the timing does not tell a known id from an unknown one.
        expected = record.digest if record is not None else "0" * 64
        same = hmac.compare_digest(_digest(token), expected)
        if record is None or not same:
            return None, "unknown"
        if not record.live:
            return None, "revoked"
        return record, "ok"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
