"""Storage for the ledger: SQLite (WAL) and PostgreSQL (psycopg 3) behind one small connection type.

SQL is written once with ``?`` placeholders. Writers serialise on an exclusive lock (SQLite's
``BEGIN IMMEDIATE``, a PostgreSQL transaction-scoped advisory lock), so several processes can append to one
ledger and the chain stays linear.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from hoplon.core.errors import InputError

__all__ = ["Connection", "connect", "describe_url"]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ledger_entries (seq BIGINT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, "
    "kind TEXT NOT NULL, identity TEXT, prev TEXT NOT NULL, hash TEXT NOT NULL, data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ledger_entries_ts ON ledger_entries (ts)",
    "CREATE INDEX IF NOT EXISTS ledger_entries_identity ON ledger_entries (identity)",
    "CREATE TABLE IF NOT EXISTS ledger_checkpoints (tree_size BIGINT PRIMARY KEY, root TEXT NOT NULL, "
    "ts DOUBLE PRECISION NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL, frontier TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_PG_LOCK = 0x686F706C6F6E  # "hoplon"

Row = tuple[Any, ...]


class Connection(Protocol):
    """The few operations the ledger needs from a database connection."""

    kind: str

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def begin_exclusive(self) -> None: ...

    def others_version(self) -> int | None:
        """Inside a transaction: a number that changes whenever another connection has committed, or
        ``None`` where the database cannot tell (the caller then re-reads what it cached)."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


class SqliteConnection:
    kind = "sqlite"

    def __init__(self, path: Path, *, durable: bool, readonly: bool = False) -> None:
        if readonly:
            if not path.exists():
                raise InputError(f"The ledger {path} does not exist.")
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL fsyncs every commit; NORMAL in WAL mode survives a process crash (kill -9) but may lose the
            # last commits on power loss.
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("PRAGMA busy_timeout=30000")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self._db.execute(sql, tuple(params)).fetchall())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._db.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, [tuple(r) for r in rows])

    def begin_exclusive(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def others_version(self) -> int | None:
        # SQLite's data_version changes when another connection (this process or another) commits.
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()


class PostgresConnection:
    kind = "postgresql"

    def __init__(self, url: str, *, durable: bool) -> None:
        try:
            import psycopg
        except ImportError:
            raise InputError("A PostgreSQL ledger needs psycopg 3: pip install 'hoplon[gateway]'.") from None
        self._pg = psycopg.connect(url, autocommit=True, connect_timeout=10)
        # Without durability, commits return before the WAL reaches disk (a crash of the server, not of
        # hoplon, may lose the last few hundred ms; the data stays consistent).
        self._pg.execute(f"SET synchronous_commit = {'on' if durable else 'off'}")

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self._pg.execute(self._sql(sql), tuple(params)).fetchall())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._pg.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._pg.cursor() as cursor:
            cursor.executemany(self._sql(sql), [tuple(r) for r in rows])

    def begin_exclusive(self) -> None:
        self._pg.execute("BEGIN")
        self._pg.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))

    def others_version(self) -> int | None:
        return None

    def commit(self) -> None:
        self._pg.execute("COMMIT")

    def rollback(self) -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error):  # the connection is gone; nothing to roll back
            self._pg.execute("ROLLBACK")

    def close(self) -> None:
        self._pg.close()


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL, or ``None`` for other schemes."""
    if not url.startswith("sqlite:"):
        return None
    rest = url[len("sqlite:") :]
    if not rest.startswith("///"):
        raise InputError(f"A SQLite ledger URL is sqlite:///relative/path or sqlite:////absolute/path. Got {url!r}.")
    return Path(unquote(rest[3:]))


def connect(url: str, *, durable: bool = False, readonly: bool = False, create: bool = True) -> Connection:
    """Open ``url`` and make sure the schema exists (unless ``readonly``)."""
    path = sqlite_path(url)
    conn: Connection
    if path is not None:
        conn = SqliteConnection(path, durable=durable, readonly=readonly)
    elif urlparse(url).scheme in {"postgresql", "postgres"}:
        conn = PostgresConnection(url, durable=durable)
    else:
        raise InputError(f"The ledger URL must start with sqlite:/// or postgresql://. Got {describe_url(url)!r}.")
    if not readonly and create:
        conn.begin_exclusive()
        try:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.commit()
        except Exception:
            conn.rollback()
            conn.close()
            raise
    return conn


def describe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return url
