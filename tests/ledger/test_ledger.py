"""The ledger end to end on SQLite: append, checkpoints, proofs, export, and every kind of tamper."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoplon.cli.main import main
from hoplon.core.errors import InputError
from hoplon.ledger import Checkpoint, Ledger, load_public_key, verify_url
from hoplon.ledger.signing import public_pem


def _fill(url: str, n: int, *, checkpoint_every: int = 10) -> None:
    with Ledger.open(url, checkpoint_every=checkpoint_every) as ledger:
        futures = [
            ledger.submit({"i": i, "decision": "allow"}, kind="test", identity=f"client-{i % 3}") for i in range(n)
        ]
        assert [f.result().seq for f in futures] == list(range(1, n + 1))


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture()
def filled(url: str) -> Iterator[tuple[str, Path]]:
    _fill(url, 35)
    yield url, Path(url[len("sqlite:///") :])


def _sql(db: Path, *statements: str) -> None:
    con = sqlite3.connect(db)
    for statement in statements:
        con.execute(statement)
    con.commit()
    con.close()


def test_append_returns_chained_entries_and_checkpoints(url: str) -> None:
    with Ledger.open(url, checkpoint_every=4) as ledger:
        first = ledger.append({"a": 1}, identity="alice")
        second = ledger.append({"a": 2})
        assert (first.seq, second.seq) == (1, 2)
        assert second.prev == first.hash
        assert first.body == {"a": 1}
        for i in range(5):
            ledger.append({"i": i})
        cps = ledger.checkpoints()
        assert [cp.tree_size for cp in cps] == [4]
        cp = ledger.checkpoint()
        assert cp is not None and cp.tree_size == 7
        proof = ledger.inclusion_proof(3)
        assert proof.verify() and proof.root == cp.root
        consistency = ledger.consistency_proof(4, 7)
        assert consistency.verify() and consistency.old_root == cps[0].root
        assert ledger.verify().ok


def test_close_signs_a_final_checkpoint_and_reopen_continues_the_chain(filled: tuple[str, Path]) -> None:
    url, _ = filled
    with Ledger.open(url, checkpoint_every=1000) as ledger:
        assert ledger.latest_checkpoint() is not None
        assert ledger.latest_checkpoint().tree_size == 35  # type: ignore[union-attr]
        entry = ledger.append({"more": True})
        assert entry.seq == 36
    result = verify_url(url)
    assert result.ok and result.entries == 36 and result.checkpoints == 5
    assert any("pin" in w for w in result.warnings)


def test_export_filters_by_identity_and_time(filled: tuple[str, Path]) -> None:
    url, _ = filled
    with Ledger.open(url) as ledger:
        mine = list(ledger.entries(identity="client-1"))
        assert [e.body["i"] for e in mine] == list(range(1, 35, 3))
        assert list(ledger.entries(since=mine[-1].ts + 10)) == []


def test_two_ledger_objects_on_one_file_keep_one_chain(url: str) -> None:
    with Ledger.open(url, checkpoint_every=5) as a, Ledger.open(url, checkpoint_every=5) as b:
        fa = [a.submit({"w": "a", "i": i}) for i in range(20)]
        fb = [b.submit({"w": "b", "i": i}) for i in range(20)]
        seqs = sorted(f.result().seq for f in fa + fb)
    assert seqs == list(range(1, 41))
    assert verify_url(url).ok


def test_records_that_are_not_json_fail_their_future_only(url: str) -> None:
    with Ledger.open(url) as ledger:
        bad = ledger.submit({"x": float("nan")})
        with pytest.raises(Exception, match="commit failed"):
            bad.result(timeout=10)
        assert ledger.append({"ok": 1}).seq == 1
        assert ledger.write_errors == 1


def test_postgres_needs_an_explicit_signing_key() -> None:
    with pytest.raises(InputError, match="signing_key"):
        Ledger.open("postgresql://nobody@127.0.0.1:1/none")


def test_bad_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="sqlite:///"):
        Ledger.open("mysql://x", signing_key=tmp_path / "k")


# ---------------------------------------------------------------------------------------------- tampering


def test_edit_of_content_names_the_entry(filled: tuple[str, Path]) -> None:
    url, db = filled
    _sql(
        db,
        'UPDATE ledger_entries SET data = replace(data, \'"decision":"allow"\', \'"decision":"deny"\') WHERE seq = 17',
    )
    result = verify_url(url)
    assert not result.ok and result.first_bad == 17 and result.problems[0].kind == "edited"


def test_edit_of_a_column_names_the_entry(filled: tuple[str, Path]) -> None:
    url, db = filled
    _sql(db, "UPDATE ledger_entries SET identity = 'mallory' WHERE seq = 9")
    assert verify_url(url).first_bad == 9


def test_edit_with_recomputed_hash_names_the_entry(filled: tuple[str, Path]) -> None:
    from hoplon.core.merkle import leaf_hash

    url, db = filled
    con = sqlite3.connect(db)
    (data,) = con.execute("SELECT data FROM ledger_entries WHERE seq = 12").fetchone()
    forged = data.replace('"allow"', '"deny"')
    con.execute(
        "UPDATE ledger_entries SET data = ?, hash = ? WHERE seq = 12", (forged, leaf_hash(forged.encode()).hex())
    )
    con.commit()
    con.close()
    result = verify_url(url)
    assert result.first_bad == 12 and result.problems[0].kind == "link"


def test_rewriting_the_whole_chain_after_an_entry_is_caught_by_the_checkpoints(filled: tuple[str, Path]) -> None:
    from hoplon.core.merkle import leaf_hash

    url, db = filled
    con = sqlite3.connect(db)
    rows = con.execute("SELECT seq, data FROM ledger_entries WHERE seq >= 23 ORDER BY seq").fetchall()
    (prev,) = con.execute("SELECT hash FROM ledger_entries WHERE seq = 22").fetchone()
    for seq, data in rows:
        content = json.loads(data)
        content["prev"] = prev
        if seq == 23:
            content["body"]["decision"] = "deny"
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        prev = leaf_hash(text.encode()).hex()
        con.execute(
            "UPDATE ledger_entries SET data = ?, hash = ?, prev = ? WHERE seq = ?", (text, prev, content["prev"], seq)
        )
    con.commit()
    con.close()
    result = verify_url(url)
    # The chain itself is consistent now; the checkpoint at 30 (covering 21..30) no longer matches.
    assert not result.ok and result.first_bad == 21
    assert "21..30" in result.problems[0].message


def test_delete_names_the_missing_entry(filled: tuple[str, Path]) -> None:
    url, db = filled
    _sql(db, "DELETE FROM ledger_entries WHERE seq = 5")
    result = verify_url(url)
    assert result.first_bad == 5 and result.problems[0].kind == "missing"


def test_reorder_names_the_first_swapped_entry(filled: tuple[str, Path]) -> None:
    url, db = filled
    _sql(
        db,
        "UPDATE ledger_entries SET seq = -1 WHERE seq = 14",
        "UPDATE ledger_entries SET seq = 14 WHERE seq = 15",
        "UPDATE ledger_entries SET seq = 15 WHERE seq = -1",
    )
    result = verify_url(url)
    assert result.first_bad == 14


def test_truncation_names_the_first_missing_entry(filled: tuple[str, Path]) -> None:
    url, db = filled
    _sql(db, "DELETE FROM ledger_entries WHERE seq > 28")
    result = verify_url(url)
    assert result.first_bad == 29 and result.problems[0].kind == "truncated"


def test_truncation_past_the_last_checkpoint_is_caught_by_a_witnessed_checkpoint(filled: tuple[str, Path]) -> None:
    url, db = filled
    witness = verify_url(url)
    assert witness.ok
    with Ledger.open(url) as ledger:
        kept = ledger.latest_checkpoint()
    assert kept is not None
    _sql(db, "DELETE FROM ledger_entries WHERE seq > 30", "DELETE FROM ledger_checkpoints WHERE tree_size > 30")
    result = verify_url(url, trusted=[kept])
    assert result.first_bad == 31 and result.problems[0].kind == "truncated"


def test_swapped_checkpoint_roots_name_the_covered_entries(filled: tuple[str, Path]) -> None:
    url, db = filled
    con = sqlite3.connect(db)
    (r10,) = con.execute("SELECT root FROM ledger_checkpoints WHERE tree_size = 10").fetchone()
    (r20,) = con.execute("SELECT root FROM ledger_checkpoints WHERE tree_size = 20").fetchone()
    con.execute("UPDATE ledger_checkpoints SET root = ? WHERE tree_size = 10", (r20,))
    con.execute("UPDATE ledger_checkpoints SET root = ? WHERE tree_size = 20", (r10,))
    con.commit()
    con.close()
    result = verify_url(url)
    assert result.first_bad == 1 and "signature" in result.problems[0].message


def test_checkpoint_signed_by_another_key_is_refused_when_the_key_is_pinned(filled: tuple[str, Path]) -> None:
    url, db = filled
    with Ledger.open(url) as ledger:
        pinned = ledger.public_key
    other = f"sqlite:///{db.parent / 'other.db'}"
    with Ledger.open(other, signing_key=Ed25519PrivateKey.generate(), checkpoint_every=1) as forger:
        forger.append({"x": 1})
    # The attacker brings their own key and re-signs the checkpoint at 20 over a forged root.
    forged_key = Ed25519PrivateKey.generate()
    from hoplon.ledger.signing import key_id, sign
    from hoplon.ledger.types import checkpoint_text

    kid = key_id(forged_key.public_key())
    con = sqlite3.connect(db)
    con.execute(
        "UPDATE ledger_checkpoints SET key_id = ?, signature = ?, root = ? WHERE tree_size = 20",
        (kid, sign(forged_key, checkpoint_text(20, "ab" * 32, 1.0, kid)), "ab" * 32),
    )
    con.execute("UPDATE ledger_checkpoints SET ts = 1.0 WHERE tree_size = 20")
    con.execute("INSERT INTO ledger_meta VALUES (?, ?)", (f"key:{kid}", public_pem(forged_key.public_key())))
    con.commit()
    con.close()
    pinned_result = verify_url(url, public_keys=[pinned])
    assert pinned_result.first_bad == 11 and "unknown key" in pinned_result.problems[0].message


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_verify_export_and_checkpoint(
    filled: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, db = filled
    pub = db.with_name(db.name + ".key.pub")
    assert load_public_key(pub.read_bytes())
    assert main(["ledger", "verify", url, "--public-key", str(pub)]) == 0
    assert "35 entries" in capsys.readouterr().out
    assert main(["ledger", "checkpoint", str(db)]) == 0
    saved = tmp_path / "cp.json"
    saved.write_text(capsys.readouterr().out)
    assert Checkpoint.from_dict(json.loads(saved.read_text())).tree_size == 35
    out = tmp_path / "x.jsonl"
    assert main(["ledger", "export", url, "--identity", "client-2", "--proofs", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["body"]["i"] for r in rows] == list(range(2, 35, 3))
    from hoplon.ledger import verify_inclusion

    row = rows[0]
    assert verify_inclusion(
        bytes.fromhex(row["hash"]),
        row["seq"] - 1,
        row["inclusion"]["checkpoint"]["tree_size"],
        [bytes.fromhex(p) for p in row["inclusion"]["path"]],
        bytes.fromhex(row["inclusion"]["checkpoint"]["root"]),
    )
    _sql(db, "DELETE FROM ledger_entries WHERE seq = 8")
    capsys.readouterr()
    assert main(["ledger", "verify", url, "--checkpoint", str(saved), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["first_bad"] == 8 and not report["ok"]
    assert main(["ledger", "export", url, "--since", "yesterday"]) == 2
