"""The ledger's writer in a child process: ``Ledger.open(url, writer="process")``.

A writer thread shares the serving process's GIL: its JSON, hashing and database calls (each of which hands
the GIL over and back) cost the request path about 100 µs per record on the gateway's benchmark. Here the
parent only encodes each record (orjson, ~2 µs) into a buffer; a sender thread writes the buffer to the
child's stdin every ``commit_delay_s`` (at once when durable), and the child, ``python -m
hoplon.ledger._process``, commits each batch with the same code as the thread writer and answers on its
stdout: entries for the records someone waits for, counts, failures, checkpoint times.

Frames are a 4-byte big-endian length and a payload whose first byte names it: ``I`` init (JSON: the
ledger's options and the signing key's PEM; never on the command line), ``R``/``J`` a record encoded by
orjson / by the standard library (integers beyond 64 bits), ``C`` a control (flush, checkpoint, stop);
back: ``K`` ready, ``E`` a start-up error, ``A`` an acknowledgement. Nothing is pickled.

Loss on a crash: a ``kill -9`` of the serving process loses only what the parent had not yet sent (at
most ``commit_delay_s``); the child sees its stdin close, commits everything it received, signs a final
checkpoint and exits. The child ignores SIGINT, SIGTERM and SIGHUP for that reason (it runs in its own
session) and ends when its stdin does.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import itertools
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoplon.ledger.ledger import Ledger, LedgerError, _orjson_exact, _Pending
from hoplon.ledger.types import Entry

__all__ = ["ProcessLedger"]

log = logging.getLogger(__name__)
_HEADER = 4
_MAX_FRAME = 64 << 20  # a frame longer than this is a protocol error, never an allocation
_MAX_BATCH_BYTES = 16 << 20  # read at most this much before committing it (memory bound per group)
_PIPE_BYTES = 1 << 20  # the pipe's capacity, asked of Linux (F_SETPIPE_SZ): ~3,000 records between wake-ups
_READ = 1 << 16  # below malloc's mmap threshold: a larger read buffer costs an mmap, mremap and munmap per read
_START_TIMEOUT_S = 60.0
_MAX_BUFFERED = 200_000  # records waiting to be sent; beyond, the writer is stuck: records are refused


def _frame(kind: bytes, payload: bytes) -> bytes:
    return (len(payload) + 1).to_bytes(_HEADER, "big") + kind + payload


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Frames:
    """Frames read from a file descriptor; ``None`` at end of file."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self.eof = False

    def _complete(self) -> Iterator[bytes]:
        while len(self._buffer) >= _HEADER:
            size = int.from_bytes(self._buffer[:_HEADER], "big")
            if not 1 <= size <= _MAX_FRAME:
                raise LedgerError(f"The ledger writer pipe carried a frame of {size} bytes.")
            if len(self._buffer) < _HEADER + size:
                return
            frame = bytes(self._buffer[_HEADER : _HEADER + size])
            del self._buffer[: _HEADER + size]
            yield frame

    def read(self, timeout_s: float | None) -> list[bytes] | None:
        """The frames that arrive within ``timeout_s`` (at least one unless it passes); ``None`` at EOF."""
        frames = list(self._complete())
        while not frames:
            if self.eof:
                return None
            ready, _, _ = select.select([self.fd], [], [], timeout_s)
            if not ready:
                return []
            self._fill()
            frames = list(self._complete())
        return frames

    def _fill(self) -> None:
        """Read what the pipe holds now (at least one read), up to _MAX_BATCH_BYTES."""
        total = 0
        while True:
            chunk = os.read(self.fd, _READ)
            if not chunk:
                self.eof = True
                return
            self._buffer += chunk
            total += len(chunk)
            if len(chunk) < _READ or total >= _MAX_BATCH_BYTES or not select.select([self.fd], [], [], 0.0)[0]:
                return


# ---------------------------------------------------------------------------------------------- parent


class ProcessLedger(Ledger):
    """A :class:`Ledger` whose writer is a child process; open it with ``Ledger.open(url, writer="process")``.

    Same options, methods and guarantees as the thread writer; reading (entries, proofs, verify) happens in
    the calling process. ``healthy`` is false once the child has gone; records posted then raise
    :class:`LedgerError` (the gateway's audit ``on_error`` decides what that means for the request).
    """

    #: Without durability, the child wakes at most once per ``group_s`` and commits what gathered in its
    #: pipe meanwhile (a flush, a stop or an ``append`` waits up to that long). The parent still sends every
    #: ``commit_delay_s``, and what it sent stays in the pipe if it dies, so a ``kill -9`` of the serving
    #: process loses no more than before; only killing the writer process itself (or the whole container)
    #: loses up to ``group_s`` more. Each group costs the child ~1 ms (two wake-ups and a commit) on this
    #: VM: at 1,000 records/s the child spends ~80 µs per record woken per 5 ms frame, ~60 at 20 ms groups,
    #: ~47 at 50 ms, ~37 at 100 ms.
    group_s = 0.05
    #: The caller sends what it buffered this often (its share of the loss window on a ``kill -9``); the
    #: child's grouping makes a short interval cheap: a timer and one non-blocking write.
    default_commit_delay_s = 0.002

    def _start_writer(self) -> None:
        self._conn.close()  # the parent registered its key; the child holds the only write connection
        self._ids = itertools.count(1)
        self._waiting: dict[int, Future[Any]] = {}
        self._buffer: list[bytes] = []
        self._wake = threading.Event()
        self._gone = False
        self._urgent = False  # a control waits: the sender writes without gathering
        self._scheduled_on: asyncio.AbstractEventLoop | None = None  # a loop with a send scheduled
        self._send_lock = threading.Lock()  # one writer to the pipe at a time
        self._buffer_lock = threading.Lock()  # appends against the swap in ``_send``
        self._unsent = b""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hoplon.ledger._process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._out = self._proc.stdin.fileno()
        with contextlib.suppress(AttributeError, OSError):  # Linux only; the default 64 KiB works, blocking sooner
            fcntl.fcntl(self._out, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._in = _Frames(self._proc.stdout.fileno())
        key_pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        init = {
            "url": self.url,
            "durable": self.durable,
            "checkpoint_every": self.checkpoint_every,
            "checkpoint_interval_s": self.checkpoint_interval_s,
            "max_batch": self.max_batch,
            "group_s": self.group_s,
            "key_pem": key_pem.decode(),
        }
        try:
            _write_all(self._out, _frame(b"I", json.dumps(init).encode()))
            frames = self._in.read(_START_TIMEOUT_S)
        except OSError as exc:
            frames = None
            log.error("ledger writer process: %s", exc)
        if not frames or frames[0][:1] != b"K":
            detail = frames[0][1:].decode(errors="replace") if frames and frames[0][:1] == b"E" else "no answer"
            self._proc.kill()
            self._proc.wait()
            raise LedgerError(f"The ledger writer process did not start: {detail}")
        self.last_checkpoint_ts = float(orjson.loads(frames[0][1:])["cp"])
        os.set_blocking(self._out, False)  # from here on ``_send`` writes: the event loop must never wait
        self._sender = threading.Thread(target=self._send_loop, name="hoplon-ledger-sender", daemon=True)
        self._receiver = threading.Thread(target=self._receive_loop, name="hoplon-ledger-receiver", daemon=True)
        self._sender.start()
        self._receiver.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    @property
    def healthy(self) -> bool:
        return not self._closed and self._proc.poll() is None and self._receiver.is_alive()

    # The request path: encode, buffer; the caller's event loop sends the buffer, or else the sender thread.

    def _enqueue(self, frame: bytes) -> None:
        if self._closed:
            raise LedgerError("The ledger is closed.")
        if self._gone:  # set by the receiver (no system call per record, as ``healthy`` would make)
            raise LedgerError("The ledger writer process has exited; records cannot be written.")
        if len(self._buffer) >= _MAX_BUFFERED:
            raise LedgerError(f"The ledger writer process is {len(self._buffer)} records behind; refusing more.")
        with self._buffer_lock:  # a sender in another thread may be swapping the buffer out
            self._buffer.append(frame)
        if not self.commit_delay_s:
            self._wake.set()  # durable: the sender writes at once
            return
        # Called on an event loop (the gateway), the loop itself sends the group commit_delay_s later: no
        # thread to wake, and no interpreter-lock hand-over per group (the sender thread cost the serving
        # process ~25-30 µs per request). Elsewhere the sender thread does it.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._wake.set()
            return
        if self._scheduled_on is not loop:
            self._scheduled_on = loop
            loop.call_later(self.commit_delay_s, self._send_from_loop, loop)

    def _send_from_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._scheduled_on is loop:
            self._scheduled_on = None
        try:
            sent = self._send(block=False)
        except OSError:  # the child is gone: the receiver sees it and fails what waits
            return
        if not sent:
            self._wake.set()  # the pipe is full or the sender holds it: the sender thread takes over

    def _send(self, *, block: bool) -> bool:
        """Write what is buffered to the child; False when something is left (without ``block``: a full
        pipe, or the sender thread writing). The pipe is non-blocking: the event loop never waits on it."""
        if not self._send_lock.acquire(blocking=block):
            return False
        try:
            with self._buffer_lock:
                batch, self._buffer = self._buffer, []
            data = self._unsent + b"".join(batch)
            while data:
                try:
                    data = data[os.write(self._out, data) :]
                except BlockingIOError:
                    if not block:
                        break
                    select.select([], [self._out], [], 1.0)
            self._unsent = data
            return not data
        finally:
            self._send_lock.release()

    def _encode(self, ident: int, record: Mapping[str, Any], kind: str, identity: str | None, exact: bool) -> bytes:
        row = (ident, time.time(), kind, identity, record)
        if exact or _orjson_exact(record):
            try:
                return _frame(b"R", orjson.dumps(row))
            except orjson.JSONEncodeError:  # an integer beyond 64 bits: the standard library writes it
                pass
        try:
            return _frame(b"J", json.dumps(row, allow_nan=False, separators=(",", ":")).encode())
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"The record cannot be written as JSON: {exc}") from None

    def submit(
        self, record: Mapping[str, Any], *, kind: str = "record", identity: str | None = None, exact: bool = False
    ) -> Future[Entry]:
        ident = next(self._ids)
        future: Future[Entry] = Future()
        frame = self._encode(ident, record, kind, identity, exact)
        self._waiting[ident] = future
        try:
            self._enqueue(frame)
        except LedgerError:
            del self._waiting[ident]
            raise
        return future

    def post(
        self, record: Mapping[str, Any], *, kind: str = "record", identity: str | None = None, exact: bool = False
    ) -> None:
        self._enqueue(self._encode(0, record, kind, identity, exact))

    def _control(self, action: str, timeout_s: float) -> None:
        if self._closed:
            raise LedgerError("The ledger is closed.")
        self._send_control(action).result(timeout=timeout_s)

    def _send_control(self, action: str) -> Future[Any]:
        ident = next(self._ids)
        done: Future[Any] = Future()
        self._waiting[ident] = done
        if self._gone:
            del self._waiting[ident]
            raise LedgerError("The ledger writer process has exited.")
        with self._buffer_lock:
            self._buffer.append(_frame(b"C", orjson.dumps([ident, action])))
        self._urgent = True
        self._wake.set()
        return done

    def close(self, timeout_s: float = 30.0) -> None:
        """Send what is buffered, have the child commit and sign a final checkpoint, and wait for it."""
        if self._closed:
            return
        try:
            if self.healthy:
                self._send_control("stop").result(timeout=timeout_s)
        except Exception as exc:  # closing must finish: the child is stopped below either way
            log.error("ledger %s: the writer process did not stop cleanly: %s", self.url, exc)
        self._closed = True
        self._wake.set()
        self._sender.join(timeout=timeout_s)
        try:
            self._proc.stdin.close()  # type: ignore[union-attr]
            self._proc.wait(timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        self._receiver.join(timeout=timeout_s)
        self._proc.stdout.close()  # type: ignore[union-attr]

    # Threads of the parent.

    def _send_loop(self) -> None:
        # Woken by records posted outside an event loop (then it gathers for commit_delay_s first), by
        # durable records, controls and a full pipe (then it writes at once, waiting on the pipe if need be).
        while True:
            self._wake.wait()
            self._wake.clear()
            if self.commit_delay_s and not self._closed and not self._urgent:
                time.sleep(self.commit_delay_s)
            self._urgent = False
            try:
                self._send(block=True)
            except OSError as exc:  # the child is gone: the receiver fails what waits
                log.error("ledger %s: the writer process is unreachable: %s", self.url, exc)
                return
            if self._closed and not self._buffer and not self._unsent:
                return

    def _receive_loop(self) -> None:
        try:
            while (frames := self._in.read(None)) is not None:
                for frame in frames:
                    if frame[:1] == b"A":
                        self._acknowledged(orjson.loads(frame[1:]))
        except Exception as exc:  # the receiver's boundary: a broken pipe or frame ends the writer
            log.error("ledger %s: reading from the writer process failed: %s", self.url, exc)
        self._gone = True
        failure = LedgerError("The ledger writer process has exited.")
        for future in list(self._waiting.values()):
            if not future.done():
                future.set_exception(failure)
        self._waiting.clear()
        if not self._closed:
            log.error("ALERT ledger %s: the writer process has exited", self.url)
            self.write_errors += 1
            if self.on_error is not None:
                self.on_error(failure)

    def _acknowledged(self, ack: dict[str, Any]) -> None:
        self.appended = int(ack["total"])  # as of the child's last answer
        self.last_checkpoint_ts = float(ack["cp"])
        for ident, *columns in ack["done"]:
            future = self._waiting.pop(int(ident), None)
            if future is not None:
                future.set_result(Entry(*columns))
        if ack.get("error"):
            self.write_errors += int(ack["failed_n"]) or 1
            failure = LedgerError(f"The ledger commit failed: {ack['error']}")
            if self.on_error is not None:
                self.on_error(failure)
            for ident in ack["failed"]:
                future = self._waiting.pop(int(ident), None)
                if future is not None:
                    future.set_exception(failure)
        for ident in ack["controls"]:
            future = self._waiting.pop(int(ident), None)
            if future is not None:
                future.set_result(None)


def _close_at_exit(ref: Callable[[], ProcessLedger | None]) -> None:
    ledger = ref()
    if ledger is not None:
        ledger.close(timeout_s=10.0)


# ---------------------------------------------------------------------------------------------- child


class _ChildLedger(Ledger):
    """The ledger in the writer process: commits are called directly, no writer thread."""

    def _start_writer(self) -> None:
        return None


def _commit(ledger: _ChildLedger, records: list[tuple[int, _Pending]], controls: list[int], force: bool) -> bytes:
    """Commit ``records``; the acknowledgement to send, or ``b""`` when nobody needs one (only posted
    records, no failure, no new checkpoint: the parent's ``appended`` catches up with the next one)."""
    ack = _status(ledger)
    ack["controls"] = controls
    checkpoint = ledger.last_checkpoint_ts
    try:
        params = ledger._write([r for _, r in records], force_checkpoint=force)
        ack["done"] = [[ident, *params[i * 7 : i * 7 + 7]] for i, (ident, _) in enumerate(records) if ident]
    except Exception as exc:  # the writer's boundary: the failure goes back to the parent
        ack["error"] = str(exc)
        ack["failed_n"] = len(records)
        ack["failed"] = [ident for ident, _ in records if ident]
    ack["cp"], ack["total"] = ledger.last_checkpoint_ts, ledger.appended
    if not (ack["done"] or controls or ack["error"] or ack["cp"] != checkpoint):
        return b""
    return _frame(b"A", orjson.dumps(ack))


def _child(stdin: int, stdout: int) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    frames = _Frames(stdin)
    first = frames.read(_START_TIMEOUT_S)
    if not first or first[0][:1] != b"I":
        return 2
    try:
        init = json.loads(first[0][1:])
        key = serialization.load_pem_private_key(init["key_pem"].encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise LedgerError("The signing key is not an Ed25519 key.")
        ledger = _ChildLedger(
            init["url"],
            signing_key=key,
            durable=bool(init["durable"]),
            checkpoint_every=int(init["checkpoint_every"]),
            checkpoint_interval_s=float(init["checkpoint_interval_s"]),
            max_batch=int(init["max_batch"]),
        )
    except Exception as exc:  # start-up's boundary: the parent raises it as a LedgerError
        _write_all(stdout, _frame(b"E", str(exc).encode()))
        return 1
    _write_all(stdout, _frame(b"K", orjson.dumps({"cp": ledger.last_checkpoint_ts})))
    tick = min(1.0, ledger.checkpoint_interval_s)
    group_s = 0.0 if ledger.durable else float(init.get("group_s", 0.0))
    while True:
        batch = frames.read(tick)
        if batch is None:  # the parent is gone (closed, or killed): sign what is there, end
            _write_all_quietly(stdout, _commit(ledger, [], [], True))
            return 0
        if not batch:
            if time.time() - ledger.last_checkpoint_ts >= ledger.checkpoint_interval_s:
                cp = ledger.last_checkpoint_ts
                ledger._maybe_timed_checkpoint()
                if ledger.last_checkpoint_ts != cp:
                    _write_all_quietly(stdout, _frame(b"A", orjson.dumps(_status(ledger))))
            continue
        if group_s:
            # Gather a group: one wake-up and one commit per group_s rather than per frame that arrives (a
            # wake-up of this process costs more than the commit). What the parent sent meanwhile waits in
            # the pipe, which outlives the parent.
            time.sleep(group_s)
            more = frames.read(0.0)
            batch += more or []
        if _apply(ledger, batch, stdout):
            return 0
        if frames.eof:
            _write_all_quietly(stdout, _commit(ledger, [], [], True))
            return 0


def _apply(ledger: _ChildLedger, batch: list[bytes], stdout: int) -> bool:
    """Commit the records and controls of ``batch`` in order; True after a ``stop``."""
    records: list[tuple[int, _Pending]] = []
    for frame in batch:
        kind, payload = frame[:1], frame[1:]
        if kind in (b"R", b"J"):
            ident, ts, entry_kind, identity, body = orjson.loads(payload) if kind == b"R" else json.loads(payload)
            # An R frame's record passed _orjson_exact in the parent: orjson writes its canonical text.
            records.append((int(ident), _Pending(float(ts), str(entry_kind), identity, body, None, exact=kind == b"R")))
            if len(records) >= ledger.max_batch:
                _write_all_quietly(stdout, _commit(ledger, records, [], False))
                records = []
        elif kind == b"C":
            ident, action = orjson.loads(payload)
            _write_all_quietly(stdout, _commit(ledger, records, [int(ident)], action in ("checkpoint", "stop")))
            records = []
            if action == "stop":
                return True
    if records:
        _write_all_quietly(stdout, _commit(ledger, records, [], False))
    return False


def _status(ledger: Ledger) -> dict[str, Any]:
    return {
        "total": ledger.appended,
        "done": [],
        "failed": [],
        "failed_n": 0,
        "error": None,
        "controls": [],
        "cp": ledger.last_checkpoint_ts,
    }


def _write_all_quietly(fd: int, data: bytes) -> None:
    """Answer the parent; a parent that is gone no longer listens, and the commit has happened anyway."""
    if data:
        with contextlib.suppress(OSError):
            _write_all(fd, data)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s hoplon-ledger-writer: %(message)s")
    sys.exit(_child(sys.stdin.fileno(), sys.stdout.fileno()))
