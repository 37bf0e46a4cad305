"""The CLI: audit poisoning, data check, harden sanitize, data fingerprint/verify, and bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hoplon.attacks.poisoning import LabelFlip
from hoplon.cli.main import main
from hoplon.data import Dataset, save_npz


def test_audit_poisoning_reports_rate_curve(files: dict[str, Path], tmp_path: Path) -> None:
    code = main(
        [
            "audit",
            "poisoning",
            "--recipe",
            str(files["recipe"]),
            "--data",
            str(files["train"]),
            "--test",
            str(files["test"]),
            "--attack",
            "badnets",
            "--rate",
            "0.05",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    (row,) = report["results"]["poisoning"]
    assert row["rate"] == 0.05 and row["n_poison"] == 67
    assert row["attack_success_rate"] >= 0.5


def test_data_check_lists_every_record_most_suspicious_first(train_set: Dataset, tmp_path: Path) -> None:
    poisoned = LabelFlip(rate=0.1).run(train_set, seed=0)
    save_npz(poisoned.data, tmp_path / "p.npz")
    np.savez(tmp_path / "truth.npz", poison_index=poisoned.poison_index.numpy())
    code = main(
        ["data", "check", str(tmp_path / "p.npz"), "--truth", str(tmp_path / "truth.npz"), "--out", str(tmp_path / "r")]
    )
    assert code == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    records = report["results"]["records"]
    assert len(records) == train_set.n and set(records[0]) == {"index", "score", "reasons"}
    assert report["results"]["detection"]["recall"] >= 0.8
    assert report["results"]["detection"]["precision"] >= 0.8

    code = main(
        [
            "harden",
            "sanitize",
            "--data",
            str(tmp_path / "p.npz"),
            "--remove",
            "top:10%",
            "--out",
            str(tmp_path / "clean.npz"),
        ]
    )
    assert code == 0
    with np.load(tmp_path / "clean.npz") as clean:
        assert len(clean["y"]) == train_set.n - 135


def test_fingerprint_ledger_and_verify(files: dict[str, Path], tmp_path: Path, test_set: Dataset) -> None:
    fp = tmp_path / "fp.json"
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert main(["data", "fingerprint", str(files["train"]), "--order-independent", "-o", str(fp), "--ledger", db]) == 0
    save_npz(test_set.subset(slice(0, 1)), tmp_path / "r.npz")
    assert (
        main(
            [
                "data",
                "verify",
                "-f",
                str(fp),
                "--data",
                str(files["train"]),
                "--record",
                str(tmp_path / "r.npz"),
                "-o",
                str(tmp_path / "proof.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "proof.json").read_text())["member"] is False
    assert main(["data", "verify", "-f", str(fp), "--data", str(files["test"])]) == 1
    from hoplon.ledger import Ledger

    with Ledger.open(db) as book:
        (entry,) = book.entries()
        assert entry.body["root"] == json.loads(fp.read_text())["root"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "poisoning", "--rate", "0"], "(0, 1)"),
        (["audit", "poisoning", "--rate", "1"], "(0, 1)"),
        (["harden", "sanitize", "--remove", "top:150%"], "--remove must be"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    args: list[str], message: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    common = {
        "audit": ["--recipe", str(files["recipe"]), "--data", str(files["train"]), "--test", str(files["test"])],
        "harden": ["--data", str(files["train"])],
    }[args[0]]
    assert main([*args, *common]) == 2
    assert message in capsys.readouterr().err


def test_dataset_without_labels_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "x.npz", x=np.zeros((30, 4), dtype=np.float32))
    assert main(["data", "check", str(tmp_path / "x.npz")]) == 2
    assert "missing: y" in capsys.readouterr().err
