"""Config validation, secrets by reference, the config hash, hot reload, keys and the CLI commands."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from hoplon.cli.main import main
from hoplon.core.errors import InputError
from hoplon.gateway import CONFIG_SCHEMA, Firewall, KeyStore, load_config, parse_config

from .fake import FakeModel
from .helpers import call, write_config


def test_defaults_are_safe(tmp_path: Path) -> None:
    cfg = parse_config(None, state_dir=tmp_path)
    modes = {stage: (mode, on_error) for stage, mode, on_error in cfg.effective_modes()}
    assert all(mode == "enforce" for mode, _ in modes.values())
    assert cfg.authentication.api_keys and cfg.audit.mode == "enforce"
    assert cfg.rate_limits.per_identity and cfg.host == "127.0.0.1"
    assert cfg.audit.ledger == f"sqlite:///{tmp_path / 'audit.db'}"


def test_schema_errors_name_the_field(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.yaml", {"stages": {"admission": {"mode": "enforced", "max_batch": 0}}})
    with pytest.raises(InputError) as info:
        load_config(bad)
    text = str(info.value)
    assert "stages.admission.mode" in text and "stages.admission.max_batch" in text


def test_secrets_only_by_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    literal = write_config(tmp_path / "a.yaml", {"stages": {"audit": {"hmac_key": "s3cret-value"}}})
    with pytest.raises(InputError, match="env:NAME") as info:
        load_config(literal)
    assert "s3cret" not in str(info.value)
    monkeypatch.setenv("HOPLON_TEST_HMAC", "from-env")
    (tmp_path / "noise.key").write_text("from-file\n")
    ok = write_config(
        tmp_path / "b.yaml",
        {"stages": {"audit": {"hmac_key": "env:HOPLON_TEST_HMAC"}, "output": {"noise_key": "file:noise.key"}}},
    )
    cfg = load_config(ok)
    assert cfg.audit.hmac_key == b"from-env" and cfg.output.noise_key == b"from-file"
    assert "from-env" not in json.dumps(cfg.raw) and "from-env" not in repr(cfg.audit)
    monkeypatch.delenv("HOPLON_TEST_HMAC")
    with pytest.raises(InputError, match="not set"):
        load_config(ok)


def test_hash_is_stable_and_tracks_changes(tmp_path: Path) -> None:
    a = parse_config({"version": 1}, state_dir=tmp_path)
    b = parse_config({"version": 1}, state_dir=tmp_path)
    c = parse_config({"version": 1, "stages": {"rate_limits": {"per_identity": "1/second"}}}, state_dir=tmp_path)
    assert a.hash == b.hash != c.hash and a.hash.startswith("sha256:")


def test_shipped_schema_is_a_valid_draft_2020_12_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(CONFIG_SCHEMA)


def test_example_config_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parents[2] / "examples" / "gateway" / "hoplon.yaml"
    monkeypatch.setenv("HOPLON_AUDIT_HMAC_KEY", "x" * 32)
    monkeypatch.setenv("HOPLON_NOISE_KEY", "y" * 32)
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check", str(example)]) == 0


def test_reload_swaps_atomically_and_keeps_the_old_config_when_invalid(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "h.yaml",
        {"models": {"m": {"routes": ["/predict"]}}, "stages": {"rate_limits": {"per_identity": "2/minute"}}},
    )
    fw = Firewall(FakeModel(), path, state_dir=tmp_path / "s")
    key = KeyStore(tmp_path / "s").create("a")[0]
    old_hash = fw.config.hash
    path.write_text("version: 1\nstages: {rate_limits: {per_identity: lots}}\n")
    assert not fw.reload()
    assert fw.config.hash == old_hash and "per_identity" in (fw.last_reload_error or "")
    write_config(
        path, {"models": {"m": {"routes": ["/predict"]}}, "stages": {"rate_limits": {"per_identity": "1/minute"}}}
    )
    assert fw.reload() and fw.config.hash != old_hash
    statuses = [
        call(fw, "POST", "/predict", body={"instances": [[0]]}, headers={"x-api-key": key}).status for _ in range(2)
    ]
    assert statuses == [200, 429]
    assert fw.ledger is not None
    fw.ledger.flush()
    assert {e.body["config_hash"] for e in fw.ledger.entries()} == {fw.config.hash}
    fw.close()


def test_sighup_and_file_change_reload_a_running_gateway(tmp_path: Path) -> None:
    import asyncio

    path = write_config(tmp_path / "h.yaml", {"models": {"m": {"routes": ["/predict"]}}})
    fw = Firewall(FakeModel(), path, state_dir=tmp_path / "s")
    first = fw.config.hash

    async def run() -> tuple[str, str]:
        await _healthz(fw)  # starts the watcher and the SIGHUP handler
        write_config(path, {"models": {"m": {"routes": ["/predict"]}}, "stages": {"output": {"round_digits": 1}}})
        os.utime(path, (time.time() + 5, time.time() + 5))
        for _ in range(40):
            await asyncio.sleep(0.1)
            if fw.config.hash != first:
                break
        after_watch = fw.config.hash
        write_config(path, {"models": {"m": {"routes": ["/predict"]}}, "stages": {"output": {"round_digits": 2}}})
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)
        return after_watch, fw.config.hash

    after_watch, after_hup = asyncio.run(run())
    assert first != after_watch != after_hup
    assert fw.config.output.round_digits == 2
    fw.close()


async def _healthz(fw: Firewall) -> None:
    from .helpers import acall

    assert (await acall(fw, "GET", "/healthz")).status == 200


def test_keys_store_hashes_rotates_and_revokes(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    k1, r1 = store.create("svc")
    k2, _ = store.create("svc")
    with pytest.raises(InputError, match="2 live keys"):
        store.create("svc")
    text = (tmp_path / "keys.json").read_text()
    assert k1 not in text and k1.split("_")[2] not in text and r1.key_id in text
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    assert len(k1.split("_")[2]) == 64  # 256 bits
    assert store.check(k1)[1] == "ok"
    store.revoke(r1.key_id)
    assert store.check(k1) == (None, "revoked") and store.check(k2)[1] == "ok"
    store.create("svc")  # rotation: a slot is free again
    assert store.check(k1[:-1] + ("a" if k1[-1] != "a" else "b"))[1] == "unknown"
    with pytest.raises(InputError, match="client name"):
        store.create("bad name!")


def test_keys_and_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "st")
    assert main(["keys", "create", "--name", "alice", "--scope", "model:digits", "--state-dir", state]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("hpl_")
    assert main(["keys", "list", "--state-dir", state]) == 0
    listed = capsys.readouterr().out
    assert "alice" in listed and token not in listed and "live" in listed
    assert main(["keys", "revoke", token.split("_")[1], "--state-dir", state]) == 0
    assert main(["keys", "list", "--state-dir", state]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "hoplon gateway configuration"
    bad = write_config(tmp_path / "bad.yaml", {"stages": {"nonsense": {}}})
    assert main(["config", "check", str(bad)]) == 2


def test_serve_refuses_several_workers_with_memory_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "4", "--state-dir", str(tmp_path)]) == 2
    assert "redis://" in capsys.readouterr().err


def test_profile_cli(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    assert main(["profile", "--data", "demo:breast-cancer:train", "--out", str(out)]) == 0
    profile = json.loads(out.read_text())
    assert profile["schema"] == "hoplon.profile/v1" and profile["shape"] == [30]
    assert all(lo <= mn for lo, mn in zip(profile["lower"], profile["min"], strict=True))


@pytest.mark.parametrize(
    "doc",
    [
        {"version": 1},
        {"version": 2},
        {},
        {"version": 1, "stages": {"admission": {"mode": "enforced", "max_batch": 0}}},
        {"version": 1, "stages": {"rate_limits": {"per_identity": "lots", "storage": "mysql://x"}}},
        {"version": 1, "models": {}},
        {"version": 1, "models": {"m": {"input_shape": [0, "a"], "routes": ["x"]}}},
        {"version": 1, "upstream": {"timeout_s": 0}},
        {"version": 1, "stages": {"model": {"timeout_s": -1, "max_concurrency": True}}, "extra": 1},
        {"version": 1, "stages": {"audit": {"hmac_key": "literal", "ledger": "sqlite:///a.db", "durable": "yes"}}},
        {"version": 1, "stages": {"authentication": {"jwt": {"issuer": "i"}}}},
    ],
)
def test_the_built_in_validator_agrees_with_jsonschema(doc: dict[str, object]) -> None:
    import jsonschema

    from hoplon.gateway.schema import validate

    oracle = jsonschema.Draft202012Validator(CONFIG_SCHEMA)
    expected = sorted(".".join(str(p) for p in e.absolute_path) or "(top)" for e in oracle.iter_errors(doc))
    got = sorted(where for where, _, _ in validate(doc))
    assert got == expected
