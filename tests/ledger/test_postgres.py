"""The same ledger on PostgreSQL (psycopg 3): chain, checkpoints, proofs, several writers, tamper detection."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from hoplon.cli.main import main
from hoplon.ledger import Ledger, verify_url


def _fill(url: str, key: Path, n: int = 25) -> None:
    with Ledger.open(url, signing_key=key, checkpoint_every=10) as ledger:
        futures = [ledger.submit({"i": i}, identity=f"c{i % 2}") for i in range(n)]
        assert [f.result().seq for f in futures] == list(range(1, n + 1))


def test_append_checkpoint_proofs_and_verify(postgres_url: str, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    with Ledger.open(postgres_url, signing_key=key, checkpoint_every=4, durable=True) as ledger:
        entries = [ledger.append({"n": i}, identity="alice") for i in range(9)]
        assert [e.seq for e in entries] == list(range(1, 10)) and entries[5].prev == entries[4].hash
        cp = ledger.checkpoint()
        assert cp is not None and cp.tree_size == 9
        assert [c.tree_size for c in ledger.checkpoints()] == [4, 8, 9]
        assert ledger.inclusion_proof(7).verify() and ledger.consistency_proof(4, 9).verify()
        assert [e.seq for e in ledger.entries(identity="alice")] == list(range(1, 10))
    assert verify_url(postgres_url).ok


def test_several_writers_keep_one_chain(postgres_url: str, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    ledgers = [Ledger.open(postgres_url, signing_key=key, checkpoint_every=7) for _ in range(3)]

    def work(ledger: Ledger, w: int) -> None:
        for i in range(15):
            ledger.append({"w": w, "i": i})

    threads = [threading.Thread(target=work, args=(ledger, w)) for w, ledger in enumerate(ledgers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ledger in ledgers:
        ledger.close()
    result = verify_url(postgres_url)
    assert result.ok and result.entries == 45


@pytest.mark.parametrize(
    ("statement", "first_bad"),
    [
        ("UPDATE ledger_entries SET data = replace(data, '\"i\":7', '\"i\":70') WHERE seq = 8", 8),
        ("DELETE FROM ledger_entries WHERE seq = 13", 13),
        ("DELETE FROM ledger_entries WHERE seq > 17", 18),
        (
            "UPDATE ledger_checkpoints SET root = (SELECT root FROM ledger_checkpoints WHERE tree_size = 10) "
            "WHERE tree_size = 20",
            11,
        ),
    ],
    ids=["edit", "delete", "truncate", "swapped-checkpoint"],
)
def test_tampering_is_found_and_named(postgres_url: str, tmp_path: Path, statement: str, first_bad: int) -> None:
    _fill(postgres_url, tmp_path / "k.pem")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(statement)
    result = verify_url(postgres_url)
    assert not result.ok and result.first_bad == first_bad


def test_cli_verify_on_postgres(postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(postgres_url, tmp_path / "k.pem")
    assert main(["ledger", "verify", postgres_url, "--public-key", str(tmp_path / "k.pem.pub")]) == 0
    assert "25 entries" in capsys.readouterr().out
