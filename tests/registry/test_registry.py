"""The registry: digests, scan and signature at push, aliases, rollback, retire, kill switch, ledger events."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoplon.cli.main import main
from hoplon.core.errors import PolicyViolation, UnsafeArtifactError
from hoplon.ledger import Ledger
from hoplon.registry import IntegrityError, ModelRegistry


@pytest.fixture()
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(f"sqlite:///{tmp_path / 'reg.db'}", signing_key=str(tmp_path / "k"))
    yield led
    led.close()


def _model(tmp_path: Path, name: str, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(b'{"weights": "' + payload + b'"}')
    return path


def test_push_promote_rollback_retire_are_ledger_events(tmp_path: Path, ledger: Ledger) -> None:
    reg = ModelRegistry(tmp_path / "reg", ledger=ledger)
    v1 = reg.push(_model(tmp_path, "a.json", b"one"), name="digits")
    v2 = reg.push(_model(tmp_path, "b.json", b"two"), name="digits")
    assert v1.digest.startswith("sha256:") and v1.digest != v2.digest and v1.scanned
    reg.promote("digits", v1.digest)
    reg.promote("digits", v2.digest)
    assert reg.resolve("digits") == v2.digest and reg.aliases("digits")["previous"] == v1.digest
    reg.promote("digits", v1.digest, alias="canary", percent=50)
    served = {reg.resolve("digits", request_key=f"r{i}") for i in range(200)}
    assert served == {v1.digest, v2.digest}
    assert reg.rollback("digits") == v1.digest and reg.resolve("digits") == v1.digest
    reg.retire(v2.digest)
    with pytest.raises(PolicyViolation):
        reg.promote("digits", v2.digest)
    reg.kill("digits", mode="fallback", answer={"label": 0})
    kill = reg.kill_switch("digits")
    assert kill is not None and kill.mode == "fallback"
    ledger.flush()
    kinds = [e.kind for e in ledger.entries()]
    assert kinds == ["registry.push"] * 2 + ["registry.promote"] * 3 + [
        "registry.rollback",
        "registry.retire",
        "registry.kill",
    ]


def test_a_corrupt_blob_is_refused_at_load(tmp_path: Path, ledger: Ledger) -> None:
    reg = ModelRegistry(tmp_path / "reg", ledger=ledger)
    version = reg.push(_model(tmp_path, "a.json", b"one"), name="m")
    assert reg.load_path(version.digest).is_file()
    reg.blob(version.digest).write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        reg.load_path(version.digest)


def test_a_missing_signature_or_an_unsafe_file_is_never_pushed(tmp_path: Path, ledger: Ledger) -> None:
    strict = ModelRegistry(tmp_path / "reg", ledger=ledger, require_signature=True)
    with pytest.raises(UnsafeArtifactError, match="signature"):
        strict.push(_model(tmp_path, "a.json", b"one"), name="m")

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("true",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UnsafeArtifactError):
        ModelRegistry(tmp_path / "reg2", ledger=ledger).push(bad, name="m")
    assert strict.versions() == []


def test_cli_push_list_promote_rollback(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    a, b = _model(tmp_path, "a.json", b"one"), _model(tmp_path, "b.json", b"two")
    assert main(["registry", "push", str(a), "--name", "m", "--root", str(root)]) == 0
    assert main(["registry", "push", str(b), "--name", "m", "--root", str(root)]) == 0
    digests = [v.digest for v in ModelRegistry(root).versions()]
    for d in digests:
        assert main(["registry", "promote", "m", d, "--root", str(root)]) == 0
    assert main(["registry", "rollback", "m", "--root", str(root)]) == 0
    assert main(["registry", "list", "--root", str(root)]) == 0
    assert ModelRegistry(root).resolve("m") == digests[0]
    assert main(["registry", "push", str(a), "--name", "m", "--require-signature", "--root", str(root)]) == 1
