"""Audit records of the proxy, behind a small interface: hoplon's ledger, or a hash-chained JSONL file.

:class:`AuditSink` is what the proxy writes to. :func:`open_sink` picks the backend from the policy's
``proxy.audit_path``: a ``sqlite:///…`` or ``postgresql://…`` URL writes to hoplon's ledger (hash chain plus
Ed25519-signed Merkle checkpoints, verified with ``hoplon ledger verify``); a plain path writes the
self-contained :class:`HashChainedJsonl` file (verified with ``hoplon llm verify-audit``).

In the file, each line holds ``seq``, ``time``, ``prev`` (the
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

__all__ = ["GENESIS", "AuditSink", "HashChainedJsonl", "LedgerSink", "open_sink"]

GENESIS = "0" * 64


class AuditSink(Protocol):
    def append(self, record: Mapping[str, Any]) -> object: ...


class LedgerSink:
    """Writes audit records to hoplon's ledger without waiting for the commit (the ledger groups commits;
    its ``durable`` setting states the loss window). Commit failures are logged as alerts."""

    def __init__(self, url: str) -> None:
        from hoplon.ledger import Ledger

        self.ledger = Ledger.open(url, on_error=self._failed)

    @staticmethod
    def _failed(exc: BaseException) -> None:
        import logging

        logging.getLogger(__name__).warning("hoplon llm proxy alert: audit_write_failed %s", exc)

    def append(self, record: Mapping[str, Any]) -> object:
        return self.ledger.submit(record, kind="llm.proxy")


def open_sink(target: str) -> AuditSink:
    """The audit sink for ``proxy.audit_path``: a ledger URL, or a JSONL file path."""
    if target.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return LedgerSink(target)
    return HashChainedJsonl(target)


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
