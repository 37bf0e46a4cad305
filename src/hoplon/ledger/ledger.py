"""`Ledger`: an append-only, hash-chained log with signed RFC 9162 Merkle checkpoints.

Appends go to a background writer thread that commits in groups: without durability it gathers records for
``commit_delay_s`` (5 ms) and writes them in one transaction; with durability, whatever queued while the
previous commit ran goes into the next. ``append`` waits for the commit; ``submit`` returns a future at once.
With ``durable=True`` every commit is fsynced (SQLite ``synchronous=FULL``, PostgreSQL
``synchronous_commit=on``) and callers are expected to wait; with ``durable=False`` a process crash loses at
most the records still queued: ``commit_delay_s`` plus one commit, about 5-10 ms of records (see
``docs/ledger.md``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hoplon.core import merkle
from hoplon.core.errors import HoplonError, InputError
from hoplon.ledger._backends import Connection, connect, describe_url, sqlite_path
from hoplon.ledger.signing import key_id, load_or_create_key, load_public_key, public_pem, sign
from hoplon.ledger.types import (
    ENTRY_VERSION,
    Checkpoint,
    ConsistencyProof,
    Entry,
    InclusionProof,
    VerifyResult,
    checkpoint_text,
)

__all__ = ["GENESIS", "Ledger", "LedgerError"]

log = logging.getLogger(__name__)
GENESIS = "00" * 32
_ENTRY_COLUMNS = "seq, ts, kind, identity, prev, hash, data"

_orjson: ModuleType | None
try:  # the gateway extra's C JSON codec; without it every entry goes through the standard library
    import orjson as _orjson
except ImportError:  # pragma: no cover - only without the gateway extra
    _orjson = None

# ``canonical_json``, made once (``json.dumps`` builds an encoder per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_SCALARS = frozenset({str, int, bool, type(None)})


def _orjson_exact(value: Any) -> bool:
    """Whether orjson writes ``value`` byte for byte as ``canonical_json`` does.

    Both write the shortest round-trip digits of a float, but only agree on plain notation (0, and
    1e-4 <= |x| < 1e16); orjson writes NaN and infinity as ``null`` where ``canonical_json`` refuses them.
    Strings, 64-bit integers, booleans, None, lists and str-keyed dicts agree (orjson raises on the rest).
    Exact types only: subclasses go to the standard library. One loop over a stack rather than a call per
    container (this runs for every ledger entry).
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            children: Any = item.values()
        elif kind is list or kind is tuple:
            children = item
        elif kind is float:
            if not (item == 0.0 or 1e-4 <= abs(item) < 1e16):
                return False
            continue
        elif kind in _SCALARS:
            continue
        else:
            return False
        for child in children:
            child_kind = type(child)
            if child_kind in _SCALARS:
                continue
            if child_kind is float:
                if not (child == 0.0 or 1e-4 <= abs(child) < 1e16):
                    return False
                continue
            stack.append(child)
    return True


def _canonical(value: dict[str, Any]) -> str:
    """``canonical_json(value)``, through orjson (~4x faster) when that gives the very same text."""
    if _orjson is not None and _orjson_exact(value):
        try:
            text: str = _orjson.dumps(value, option=_orjson.OPT_SORT_KEYS).decode()
            return text
        except _orjson.JSONEncodeError:  # an integer beyond 64 bits: the standard library writes it
            pass
    return _CANONICAL.encode(value)


# Rows per INSERT statement: one statement runs as one database call (executemany makes one per row, and
# SQLite's driver hands the GIL over around each), well inside SQLite's 32,766 bound parameters.
_ROWS_PER_INSERT = 256
_INSERTS: dict[int, str] = {}


def _insert_entries(conn: Connection, params: list[Any]) -> None:
    """Insert entries given as one flat list of their seven columns, in statements of many rows."""
    step = _ROWS_PER_INSERT * 7
    for start in range(0, len(params), step):
        chunk = params[start : start + step]
        rows = len(chunk) // 7
        sql = _INSERTS.get(rows)
        if sql is None:
            sql = _INSERTS.setdefault(
                rows, f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) VALUES " + ",".join(["(?,?,?,?,?,?,?)"] * rows)
            )
        conn.execute(sql, chunk)


class LedgerError(HoplonError):
    """The ledger could not be written or read."""


@dataclass(frozen=True, slots=True)
class _Pending:
    ts: float
    kind: str
    identity: str | None
    body: Mapping[str, Any]
    future: Future[Entry] | None  # None: posted, nobody waits
    exact: bool = False  # known to pass _orjson_exact (decoded by orjson from a frame that did): skip the check


@dataclass(frozen=True, slots=True)
class _Control:
    action: str  # "flush", "checkpoint" or "stop"
    future: Future[None]


class Ledger:
    """The tamper-evident log. Open one with :meth:`Ledger.open`; close it (or use ``with``) to flush.

    Args:
        url: ``sqlite:///path.db`` or ``postgresql://user@host/db``.
        signing_key: an Ed25519 private key, or the path of its PEM file (created 0600 if missing). Default:
            ``<db>.key`` beside a SQLite file; PostgreSQL needs it explicitly.
        durable: fsync each group commit (see the module docstring).
        checkpoint_every: sign a checkpoint at least every this many entries (>= 1).
        checkpoint_interval_s: and at least this often while entries arrive; one more on close.
        max_batch: the most records one commit takes.
        commit_delay_s: how long the writer waits after the first queued record to gather more into one commit
            (default 5 ms without durability, 0 with it). It bounds the loss window on a crash, and trades a
            little latency of the record (never of the response, unless durable) for far fewer commits.
        on_error: called with the exception when a commit fails (for metrics and alerts).
    """

    #: ``commit_delay_s`` when it is not given and the ledger is not durable.
    default_commit_delay_s = 0.005

    def __init__(
        self,
        url: str,
        *,
        signing_key: Ed25519PrivateKey | str | Path | None = None,
        durable: bool = False,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 10.0,
        max_batch: int = 2048,
        commit_delay_s: float | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise InputError(f"The 'checkpoint_every' parameter of Ledger must be >= 1. Got {checkpoint_every}.")
        if checkpoint_interval_s <= 0:
            raise InputError(
                f"The 'checkpoint_interval_s' parameter of Ledger must be > 0. Got {checkpoint_interval_s}."
            )
        self.url = url
        self.durable = durable
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.max_batch = max_batch
        if commit_delay_s is None:
            commit_delay_s = 0.0 if durable else self.default_commit_delay_s
        self.commit_delay_s = commit_delay_s
        self.on_error = on_error
        self.write_errors = 0
        self.appended = 0
        if signing_key is None:
            path = sqlite_path(url)
            if path is None:
                raise InputError("A PostgreSQL ledger needs signing_key (an Ed25519 PEM file path).")
            signing_key = path.with_name(path.name + ".key")
        self._key = signing_key if isinstance(signing_key, Ed25519PrivateKey) else load_or_create_key(signing_key)
        self.key_id = key_id(self._key.public_key())
        self._conn = connect(url, durable=durable)
        self._register_key()
        self._frontier: merkle.Frontier | None = None
        self._head: tuple[int | None, int, str, int] | None = None  # (others_version, seq, hash, checkpoint size)
        self._last_cp_size, self.last_checkpoint_ts = self._last_checkpoint_head()
        self._closed = False
        self._start_writer()

    def _start_writer(self) -> None:
        """Start the background writer: a thread of this process (``writer="process"`` runs it in another)."""
        self._queue: queue.SimpleQueue[_Pending | _Control] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hoplon-ledger-writer", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, url: str, *, writer: str = "thread", **options: Any) -> Ledger:
        """Open (creating if needed) the ledger at ``url``; keyword options as for :class:`Ledger`.

        ``writer="process"`` commits in a child process (:class:`hoplon.ledger.ProcessLedger`): the hashing,
        JSON and database work, and the GIL hand-overs a writer thread costs, leave the calling process.
        """
        if writer == "process":
            from hoplon.ledger._process import ProcessLedger

            return ProcessLedger(url, **options)
        if writer != "thread":
            raise InputError(f"The 'writer' parameter of Ledger.open must be 'thread' or 'process'. Got {writer!r}.")
        return cls(url, **options)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def healthy(self) -> bool:
        """The writer thread runs and the ledger is open."""
        return not self._closed and self._thread.is_alive()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    # ------------------------------------------------------------------ writing

    def submit(
        self, record: Mapping[str, Any], *, kind: str = "record", identity: str | None = None, exact: bool = False
    ) -> Future[Entry]:
        """Queue ``record`` (a JSON-able mapping) and return a future that resolves to its :class:`Entry`.

        ``exact=True`` is the caller's word that ``record`` holds only exact ``str``, ``int`` (64-bit),
        ``bool``, ``None``, lists, tuples and str-keyed dicts, and floats that are 0 or have
        1e-4 <= |x| < 1e16 (what a writer of fixed-schema records can tell from how it built them): the
        per-record check of that is skipped. A wrong word stores non-canonical text (a NaN as ``null``).
        """
        if self._closed:
            raise LedgerError("The ledger is closed.")
        future: Future[Entry] = Future()
        self._queue.put(_Pending(time.time(), kind, identity, record, future, exact=exact))
        return future

    def post(
        self, record: Mapping[str, Any], *, kind: str = "record", identity: str | None = None, exact: bool = False
    ) -> None:
        """Queue ``record`` like :meth:`submit`, for a caller that will not wait for it (no future to make
        and resolve); a failed commit is counted in ``write_errors``, logged and passed to ``on_error``."""
        if self._closed:
            raise LedgerError("The ledger is closed.")
        self._queue.put(_Pending(time.time(), kind, identity, record, None, exact=exact))

    def append(
        self,
        record: Mapping[str, Any],
        *,
        kind: str = "record",
        identity: str | None = None,
        timeout_s: float | None = 30.0,
    ) -> Entry:
        """Append ``record`` and wait for its commit; return the entry (its ``seq`` and ``hash``)."""
        return self.submit(record, kind=kind, identity=identity).result(timeout=timeout_s)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything submitted so far is committed (or has failed)."""
        self._control("flush", timeout_s)

    def checkpoint(self, timeout_s: float = 30.0) -> Checkpoint | None:
        """Commit what is queued, sign a checkpoint of it, return the latest (``None`` for an empty ledger)."""
        self._control("checkpoint", timeout_s)
        return self.latest_checkpoint()

    def _control(self, action: str, timeout_s: float) -> None:
        if self._closed:
            raise LedgerError("The ledger is closed.")
        done: Future[None] = Future()
        self._queue.put(_Control(action, done))
        done.result(timeout=timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush, sign a final checkpoint and stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_Control("stop", Future()))
        self._thread.join(timeout=timeout_s)
        self._conn.close()

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=min(1.0, self.checkpoint_interval_s))
            except queue.Empty:
                self._maybe_timed_checkpoint()
                continue
            batch: list[_Pending] = []
            markers: list[_Control] = []
            force_checkpoint = False
            if self.commit_delay_s and isinstance(first, _Pending):
                time.sleep(self.commit_delay_s)
            item = first
            while True:
                if isinstance(item, _Control):
                    markers.append(item)
                    stop = stop or item.action == "stop"
                    force_checkpoint = force_checkpoint or item.action == "checkpoint"
                else:
                    batch.append(item)
                if stop or len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch or force_checkpoint or stop:
                self._commit(batch, force_checkpoint=force_checkpoint or stop)
            for marker in markers:
                marker.future.set_result(None)

    def _maybe_timed_checkpoint(self) -> None:
        if time.time() - self.last_checkpoint_ts >= self.checkpoint_interval_s:
            self._commit([], force_checkpoint=False, timed=True)

    def _commit(self, batch: Sequence[_Pending], *, force_checkpoint: bool, timed: bool = False) -> None:
        try:
            params = self._write(batch, force_checkpoint=force_checkpoint, timed=timed)
        except Exception as exc:  # the writer's boundary: any database failure fails these records
            if self.on_error is not None:
                self.on_error(exc)
            failure = LedgerError(f"The ledger commit failed: {exc}")
            for item in batch:
                if item.future is not None:
                    item.future.set_exception(failure)
            return
        for i, item in enumerate(batch):
            if item.future is not None:  # posted records (no future) never need their Entry object
                row = params[i * 7 : i * 7 + 7]
                item.future.set_result(Entry(row[0], row[1], row[2], row[3], row[4], row[5], row[6]))

    def _write(self, batch: Sequence[_Pending], *, force_checkpoint: bool, timed: bool = False) -> list[Any]:
        """Append ``batch`` in one transaction (with any checkpoints due); return the entries' columns as one
        flat list, seven per entry. On failure: roll back, count, log, and raise."""
        conn = self._conn
        try:
            conn.begin_exclusive()
            # The chain head and last checkpoint size, re-read only when another connection has committed
            # since this writer's last commit (two queries per commit saved; the lock is held from here on).
            version = conn.others_version()
            cached = self._head
            if cached is not None and version is not None and cached[0] == version:
                seq, prev, cp_size = cached[1], cached[2], cached[3]
            else:
                head = conn.query("SELECT seq, hash FROM ledger_entries ORDER BY seq DESC LIMIT 1")
                seq, prev = (int(head[0][0]), str(head[0][1])) if head else (0, GENESIS)
                cp_size, _ = self._last_checkpoint_head(conn)
            params: list[Any] = []
            for item in batch:
                seq += 1
                ts = round(item.ts, 6)
                entry = {
                    "v": ENTRY_VERSION,
                    "seq": seq,
                    "ts": ts,
                    "kind": item.kind,
                    "identity": item.identity,
                    "prev": prev,
                    "body": item.body,
                }
                if item.exact and _orjson is not None and type(item.identity) in _SCALARS:
                    data = _orjson.dumps(entry, option=_orjson.OPT_SORT_KEYS).decode()
                else:
                    data = _canonical(entry)
                digest = merkle.leaf_hash(data.encode()).hex()
                params += (seq, ts, item.kind, item.identity, prev, digest, data)
                prev = digest
            _insert_entries(conn, params)
            every = self.checkpoint_every
            sizes = list(range((cp_size // every + 1) * every, seq + 1, every))
            overdue = time.time() - self.last_checkpoint_ts >= self.checkpoint_interval_s
            if seq > max([cp_size, *sizes]) and (force_checkpoint or timed or overdue):
                sizes.append(seq)
            for size in sizes:
                self._write_checkpoint(conn, size)
            conn.commit()
            self._head = (version, seq, prev, max([cp_size, *sizes]))
        except Exception as exc:
            conn.rollback()
            self.write_errors += len(batch) or 1
            self._frontier = None
            self._head = None
            log.error("ledger %s: commit of %d records failed: %s", describe_url(self.url), len(batch), exc)
            raise
        self.appended += len(batch)
        return params

    def _write_checkpoint(self, conn: Connection, size: int) -> None:
        last = conn.query("SELECT tree_size, frontier FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1")
        if self._frontier is not None and last and self._frontier.size == int(last[0][0]):
            frontier = self._frontier.copy()
        elif last:
            frontier = merkle.Frontier(int(last[0][0]), [bytes.fromhex(h) for h in str(last[0][1]).split(",") if h])
        else:
            frontier = merkle.Frontier()
        for (digest,) in conn.query(
            "SELECT hash FROM ledger_entries WHERE seq > ? AND seq <= ? ORDER BY seq", (frontier.size, size)
        ):
            frontier.append(bytes.fromhex(str(digest)))
        if frontier.size != size:
            raise LedgerError(f"The ledger has a gap below entry {size}; run `hoplon ledger verify`.")
        root = frontier.root().hex()
        ts = round(time.time(), 6)
        signature = sign(self._key, checkpoint_text(size, root, ts, self.key_id))
        conn.execute(
            "INSERT INTO ledger_checkpoints (tree_size, root, ts, key_id, signature, frontier) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (size, root, ts, self.key_id, signature, ",".join(n.hex() for n in frontier.nodes)),
        )
        self._frontier = frontier
        self._last_cp_size = size
        self.last_checkpoint_ts = ts

    def _register_key(self) -> None:
        conn = self._conn
        conn.begin_exclusive()
        try:
            name = f"key:{self.key_id}"
            if not conn.query("SELECT value FROM ledger_meta WHERE key = ?", (name,)):
                conn.execute("INSERT INTO ledger_meta (key, value) VALUES (?, ?)", (name, public_pem(self.public_key)))
            conn.commit()
        except Exception:
            conn.rollback()
            raise

    def _last_checkpoint_head(self, conn: Connection | None = None) -> tuple[int, float]:
        rows = (conn or self._conn).query(
            "SELECT tree_size, ts FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1"
        )
        return (int(rows[0][0]), float(rows[0][1])) if rows else (0, time.time())

    # ------------------------------------------------------------------ reading

    def _reader(self) -> Connection:
        return connect(self.url, readonly=sqlite_path(self.url) is not None, create=False)

    @property
    def size(self) -> int:
        """Committed entries."""
        reader = self._reader()
        try:
            return int(reader.query("SELECT COUNT(*) FROM ledger_entries")[0][0])
        finally:
            reader.close()

    def latest_checkpoint(self) -> Checkpoint | None:
        cps = self.checkpoints()
        return cps[-1] if cps else None

    def checkpoints(self) -> list[Checkpoint]:
        return read_checkpoints(self._reader(), close=True)

    def entries(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        identity: str | None = None,
        kind: str | None = None,
    ) -> Iterator[Entry]:
        """Committed entries in order, filtered by time (Unix seconds), identity and kind."""
        yield from read_entries(self._reader(), since=since, until=until, identity=identity, kind=kind, close=True)

    def inclusion_proof(self, seq: int, tree_size: int | None = None) -> InclusionProof:
        """Prove entry ``seq`` is in the tree of the latest checkpoint (or of ``tree_size`` entries)."""
        leaves = self._leaves()
        size = tree_size or (cp.tree_size if (cp := self.latest_checkpoint()) else len(leaves))
        if not 1 <= seq <= size <= len(leaves):
            raise InputError(f"Entry {seq} is not in a tree of {size} entries (the ledger holds {len(leaves)}).")
        path = merkle.inclusion_path(seq - 1, leaves[:size])
        root = merkle.root_of(leaves[:size])
        return InclusionProof(seq, size, leaves[seq - 1].hex(), tuple(p.hex() for p in path), root.hex())

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """Prove the tree of ``old_size`` entries is a prefix of the tree of ``new_size`` (default: all)."""
        leaves = self._leaves()
        new = new_size or len(leaves)
        if not 0 < old_size <= new <= len(leaves):
            raise InputError(f"A consistency proof needs 0 < old <= new <= {len(leaves)}. Got {old_size}, {new}.")
        path = merkle.consistency_path(old_size, leaves[:new])
        return ConsistencyProof(
            old_size,
            new,
            merkle.root_of(leaves[:old_size]).hex(),
            merkle.root_of(leaves[:new]).hex(),
            tuple(p.hex() for p in path),
        )

    def _leaves(self) -> list[bytes]:
        reader = self._reader()
        try:
            return [bytes.fromhex(str(h)) for (h,) in reader.query("SELECT hash FROM ledger_entries ORDER BY seq")]
        finally:
            reader.close()

    def verify(
        self, *, public_keys: Sequence[Ed25519PublicKey] = (), trusted: Sequence[Checkpoint] = ()
    ) -> VerifyResult:
        """Check the chain, every checkpoint, and consistency with ``trusted`` checkpoints kept elsewhere."""
        from hoplon.ledger.verify import verify_url

        return verify_url(self.url, public_keys=public_keys, trusted=trusted)


def read_checkpoints(conn: Connection, *, close: bool = False) -> list[Checkpoint]:
    try:
        rows = conn.query(
            "SELECT tree_size, root, ts, key_id, signature, frontier FROM ledger_checkpoints ORDER BY tree_size"
        )
    finally:
        if close:
            conn.close()
    return [
        Checkpoint(int(r[0]), str(r[1]), float(r[2]), str(r[3]), str(r[4]), tuple(h for h in str(r[5]).split(",") if h))
        for r in rows
    ]


def read_entries(
    conn: Connection,
    *,
    since: float | None = None,
    until: float | None = None,
    identity: str | None = None,
    kind: str | None = None,
    close: bool = False,
) -> Iterator[Entry]:
    clauses, params = [], []
    for column, op, value in (
        ("ts", ">=", since),
        ("ts", "<", until),
        ("identity", "=", identity),
        ("kind", "=", kind),
    ):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    try:
        rows = conn.query(f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries{where} ORDER BY seq", params)
    finally:
        if close:
            conn.close()
    for r in rows:
        yield Entry(
            int(r[0]), float(r[1]), str(r[2]), None if r[3] is None else str(r[3]), str(r[4]), str(r[5]), str(r[6])
        )


def stored_public_keys(conn: Connection) -> dict[str, Ed25519PublicKey]:
    rows = conn.query("SELECT key, value FROM ledger_meta WHERE key LIKE ?", ("key:%",))
    return {str(k)[4:]: load_public_key(str(v)) for k, v in rows}
