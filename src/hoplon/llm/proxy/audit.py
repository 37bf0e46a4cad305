"""Audit records of the proxy, in an append-only, hash-chained JSONL file behind a small interface.

hoplon's ledger (a Merkle log with proofs, SQLite/PostgreSQL) is a separate component that does not exist
yet; :class:`AuditSink` is the interface the proxy writes to, so the ledger can replace
:class:`HashChainedJsonl` without touching the proxy. Each line holds ``seq``, ``time``, ``prev`` (the
previous line's hash), ``record`` and ``hash = sha256(prev + canonical JSON of seq, time, record)``; any edit,
removal or reordering breaks :meth:`HashChainedJsonl.verify`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from hoplon.core.errors import InputError

__all__ = ["GENESIS", "AuditSink", "HashChainedJsonl"]

GENESIS = "0" * 64


class AuditSink(Protocol):
    def append(self, record: Mapping[str, Any]) -> str: ...


def _digest(prev: str, seq: int, time: str, record: Mapping[str, Any]) -> str:
    body = json.dumps({"seq": seq, "time": time, "record": record}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev + body).encode()).hexdigest()


class HashChainedJsonl:
    """An append-only JSONL file where each line is chained to the previous one by its hash."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seq, self._prev = self._tail()

    def _tail(self) -> tuple[int, str]:
        if not self.path.exists():
            return 0, GENESIS
        last = None
        with self.path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    last = line
        if last is None:
            return 0, GENESIS
        try:
            entry = json.loads(last)
            return int(entry["seq"]) + 1, str(entry["hash"])
        except (ValueError, KeyError) as exc:
            raise InputError(f"Audit log {self.path} has a corrupt last line: {exc}") from None

    def append(self, record: Mapping[str, Any]) -> str:
        """Append ``record``; return its hash."""
        with self._lock:
            time = _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
            rec = json.loads(json.dumps(record, default=str))
            digest = _digest(self._prev, self._seq, time, rec)
            line = json.dumps({"seq": self._seq, "time": time, "prev": self._prev, "record": rec, "hash": digest})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
            self._seq += 1
            self._prev = digest
            return digest

    def verify(self) -> int:
        """Recompute the chain; return the number of records, or raise :class:`InputError` at the first break."""
        prev = GENESIS
        n = 0
        if not self.path.exists():
            return 0
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    ok = (
                        entry["seq"] == n
                        and entry["prev"] == prev
                        and entry["hash"] == _digest(prev, entry["seq"], entry["time"], entry["record"])
                    )
                except (ValueError, KeyError, TypeError):
                    ok = False
                if not ok:
                    raise InputError(f"Audit log {self.path} fails verification at line {lineno}.")
                prev = entry["hash"]
                n += 1
        return n
