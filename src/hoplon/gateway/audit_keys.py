"""The audit HMAC key: its public id, rotation, and finding an old key again for an investigation.

Every audit record carries ``input_hmac`` (HMAC-SHA256 of the input) and ``input_hmac_key``, the key's id:
the first 8 hex digits of SHA-256 of the key (never the key). ``hoplon keys rotate-hmac`` writes a new
``audit-hmac.key`` and keeps every key it ever held in ``audit-hmac.d/<id>.key`` (0600), so an investigator
can recompute the HMAC of a suspected input under the key a record names (``hoplon keys input-hmac``). A
running gateway takes the new key on its next config reload (``SIGHUP``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from pathlib import Path

from hoplon.core.errors import InputError

__all__ = ["HMAC_ARCHIVE", "HMAC_KEY_FILE", "find_hmac_key", "hmac_key_id", "input_hmac", "rotate_hmac_key"]

HMAC_KEY_FILE = "audit-hmac.key"
HMAC_ARCHIVE = "audit-hmac.d"
_ID_RE = re.compile(r"^[0-9a-f]{8}$")
_MAX_KEY_FILE = 4096


def hmac_key_id(key: bytes) -> str:
    """The public id of an HMAC key: 8 hex digits of its SHA-256 (32 bits: names a key, reveals nothing)."""
    return hashlib.sha256(key).hexdigest()[:8]


def _read_key(path: Path) -> bytes:
    with path.open("rb") as handle:
        raw = handle.read(_MAX_KEY_FILE + 1)
    if len(raw) > _MAX_KEY_FILE or not raw.strip():
        raise InputError(f"The HMAC key file {path} is empty or too large.")
    return raw.strip()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (readers see the old file or the new one)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hmac-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rotate_hmac_key(state_dir: str | Path) -> tuple[str | None, str]:
    """Archive the current key (if any), install a new one; return (old id or None, new id)."""
    state = Path(state_dir)
    archive = state / HMAC_ARCHIVE
    archive.mkdir(parents=True, exist_ok=True)
    archive.chmod(0o700)
    current = state / HMAC_KEY_FILE
    old_id = None
    if current.exists():
        old = _read_key(current)
        old_id = hmac_key_id(old)
        if not (archive / f"{old_id}.key").exists():
            _write_private(archive / f"{old_id}.key", old.decode() + "\n")
    new = secrets.token_hex(32)
    new_id = hmac_key_id(new.encode())
    _write_private(archive / f"{new_id}.key", new + "\n")  # archived first: no record can name a lost key
    _write_private(current, new + "\n")
    return old_id, new_id


def find_hmac_key(state_dir: str | Path, key_id: str) -> bytes:
    """The key whose id is ``key_id``: the current one or an archived one; refuses a file that does not match."""
    if not _ID_RE.match(key_id):
        raise InputError(f"An HMAC key id is 8 lowercase hex digits. Got {key_id[:16]!r}.")
    state = Path(state_dir)
    for path in (state / HMAC_KEY_FILE, state / HMAC_ARCHIVE / f"{key_id}.key"):
        if path.is_file():
            key = _read_key(path)
            if hmac_key_id(key) == key_id:
                return key
    raise InputError(
        f"No HMAC key with id {key_id} in {state} (a key given by audit.hmac_key in the config is not kept there)."
    )


def input_hmac(key: bytes, body: bytes, *, max_elements: int = 1 << 24) -> str:
    """The ``input_hmac`` the gateway records for an inference ``body`` (per-sample digests; else the raw bytes)."""
    from hoplon.gateway.protocol import BadRequest, parse_inputs

    try:
        message = b"".join(parse_inputs(body, max_elements=max_elements).row_digests())
    except BadRequest:
        message = body
    return "hmac-sha256:" + hmac.new(key, message, hashlib.sha256).hexdigest()
