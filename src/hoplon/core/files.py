"""Files that several processes may create at once (keys, secrets): created whole, exactly once."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["create_once"]


def create_once(path: Path, data: bytes, *, mode: int = 0o600) -> bytes:
    """Create ``path`` holding ``data`` unless it exists; return the content that is there afterwards.

    The content is written to a private temporary file beside ``path`` and hard-linked into place, so a
    reader never sees a half-written file, and when several workers race to create the same key exactly one
    wins and every one of them gets the winner's bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_bytes()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process won the race: its content stands
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()
