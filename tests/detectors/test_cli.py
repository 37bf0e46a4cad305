"""``hoplon calibrate`` end to end on a small benign reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from hoplon.cli.main import main
from hoplon.gateway import load_config

ENFORCE = Path(__file__).resolve().parents[2] / "examples" / "firewall" / "enforce.yaml"


def test_calibrate_writes_a_valid_config_with_new_thresholds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    benign = tmp_path / "reference.npz"
    np.savez(benign, x=rng.random((200, 1, 8, 8)).astype(np.float32), scores=rng.dirichlet(np.ones(10), 200))
    out = tmp_path / "calibrated.yaml"
    code = main(
        [
            "calibrate", "--config", str(ENFORCE), "--benign", str(benign), "--fpr", "0.05",
            "--identities", "16", "--queries", "30", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    detect = yaml.safe_load(out.read_text())["stages"]["detect"]
    assert detect["mode"] == "enforce" and 0 < detect["prada"]["delta"] < 1
    assert load_config(out).detect.mode == "enforce"
    assert main(["calibrate", "--config", str(ENFORCE), "--benign", str(tmp_path / "missing.npz")]) == 2


def test_incident_history_exports_entries_with_inclusion_proofs(tmp_path: Path) -> None:
    import json

    from hoplon.ledger import Ledger

    url, key = f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "ledger.key"
    with Ledger.open(url, signing_key=str(key)) as led:
        led.append({"detector": "prada"}, kind="gateway.alarm", identity="mallory")
        led.append({"status": 200}, kind="gateway.decision", identity="alice")
        led.append({"status": 403}, kind="gateway.decision", identity="mallory")
    out = tmp_path / "evidence.json"
    code = main(["incident", "history", "mallory", "--ledger", url, "--signing-key", str(key), "--out", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    assert [e["kind"] for e in doc["entries"]] == ["gateway.alarm", "gateway.decision"]
    assert all(e["verified"] for e in doc["entries"])
