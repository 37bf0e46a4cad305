"""The ledger's writer in a child process: the same entries as the thread writer, and what happens when
either side dies."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from hoplon.core.errors import InputError
from hoplon.ledger import Ledger, LedgerError, verify_url
from hoplon.ledger._process import ProcessLedger
from hoplon.ledger.types import canonical_json


def test_process_writer_writes_what_the_thread_writer_writes(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        {"i": 1, "x": 0.25},
        {"tiny": 1e-7, "big": 2**70, "nested": {"b": [1, 2, None]}},
        {"s": "é"},
    ]
    texts = {}
    for writer in ("thread", "process"):
        url = f"sqlite:///{tmp_path / writer}.db"
        with Ledger.open(url, writer=writer, signing_key=tmp_path / "k.pem", checkpoint_every=2) as ledger:
            assert isinstance(ledger, ProcessLedger) == (writer == "process")
            entries = [ledger.append(r, kind="test", identity="alice") for r in records]
            assert [e.seq for e in entries] == [1, 2, 3] and entries[1].prev == entries[0].hash
            ledger.post({"posted": True})
            ledger.flush()
            assert ledger.size == 4
        result = verify_url(url)
        assert result.ok and result.entries == 4 and result.checkpoints >= 2
        entries = list(Ledger.open(url).entries())
        assert all(e.data == canonical_json(json.loads(e.data)) for e in entries)  # the canonical text
        texts[writer] = [(e.seq, e.kind, e.identity, canonical_json(e.body)) for e in entries]
    assert texts["thread"] == texts["process"]


def test_a_record_that_is_not_json_is_refused_at_once(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'a.db'}", writer="process") as ledger:
        for bad in ({"x": math.nan}, {"x": {1, 2}}):
            with pytest.raises(LedgerError, match="cannot be written as JSON"):
                ledger.post(bad)
        assert ledger.append({"fine": 1}).seq == 1


_SERVER = textwrap.dedent(
    """
    import sys, time
    from hoplon.ledger import Ledger
    ledger = Ledger.open(sys.argv[1], writer="process")
    for i in range(200):
        ledger.post({"i": i})
    ledger.flush()  # 200 committed for sure; the rest may sit in this process's buffer when it is killed
    print(ledger._proc.pid, flush=True)
    i = 200
    while True:
        ledger.post({"i": i})
        i += 1
        if i % 50 == 0:
            time.sleep(0.001)
    """
)


def test_kill_9_of_the_serving_process_loses_at_most_its_unsent_buffer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    server = subprocess.Popen([sys.executable, "-c", _SERVER, url], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    child = int(server.stdout.readline())
    time.sleep(0.3)
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    server.stdout.close()
    deadline = time.time() + 30
    while Path(f"/proc/{child}").exists() and time.time() < deadline:  # the writer commits, signs, ends
        time.sleep(0.02)
    assert not Path(f"/proc/{child}").exists()
    result = verify_url(url)
    assert result.ok and result.entries > 200
    # every record it received was committed: the entries are exactly 0..n-1, and the last checkpoint covers them
    bodies = [e.body["i"] for e in Ledger.open(url).entries()]
    assert bodies == list(range(len(bodies)))
    cp = Ledger.open(url).latest_checkpoint()
    assert cp is not None and cp.tree_size == len(bodies)


def test_a_dead_writer_process_fails_closed_and_says_so(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'd.db'}", writer="process", on_error=errors.append)
    assert isinstance(ledger, ProcessLedger) and ledger.healthy
    pending = ledger.submit({"a": 1})
    pending.result(timeout=10)
    ledger._proc.kill()
    deadline = time.time() + 10
    while ledger.healthy and time.time() < deadline:
        time.sleep(0.01)
    assert not ledger.healthy and errors and "exited" in str(errors[-1])
    with pytest.raises(LedgerError, match="exited"):
        ledger.post({"a": 2})
    ledger.close()


def test_an_unknown_writer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'thread' or 'process'"):
        Ledger.open(f"sqlite:///{tmp_path / 'u.db'}", writer="fork")


def test_a_burst_larger_than_a_pipe_is_written_whole_and_in_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with Ledger.open(url, writer="process") as ledger:
        for i in range(5000):  # ~1.5 MB of frames: more than a pipe holds between the writer's wake-ups
            ledger.post({"i": i, "pad": "x" * 256})
        ledger.flush()
        assert ledger.size == 5000
    assert [e.body["i"] for e in Ledger.open(url).entries()] == list(range(5000))
    assert verify_url(url).ok


def test_records_posted_on_event_loops_are_sent_by_the_loop_and_never_stranded(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite:///{tmp_path / 'loop.db'}"
    with Ledger.open(url, writer="process") as ledger:
        assert isinstance(ledger, ProcessLedger)

        async def post(first: int, wait_s: float) -> None:
            for i in range(first, first + 50):
                ledger.post({"i": i})
            await asyncio.sleep(wait_s)

        asyncio.run(post(0, 0.1))  # the loop's own timer sends these
        deadline = time.time() + 10
        while ledger.size < 50 and time.time() < deadline:
            time.sleep(0.02)
        assert ledger.size == 50
        asyncio.run(post(50, 0.0))  # this loop ends before its send is due: a flush still sends them
        asyncio.run(post(100, 0.0))  # and a new loop schedules its own send
        ledger.flush()
        assert ledger.size == 150
    assert [e.body["i"] for e in Ledger.open(url).entries()] == list(range(150))
