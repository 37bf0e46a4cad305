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


def test_auto_rollback_retires_the_bad_digest_and_serves_the_last_good_one(tmp_path: Path, ledger: Ledger) -> None:
    reg = ModelRegistry(tmp_path / "reg", ledger=ledger)
    v1, v2, v3 = (reg.push(_model(tmp_path, f"{n}.json", n.encode()), name="m").digest for n in ("a", "b", "c"))
    for d in (v1, v2, v3):
        reg.promote("m", d)  # prod v3, previous v2
    reg.blob(v2).write_bytes(b"tampered")  # previous is corrupt too: the newest earlier good version is v1
    assert reg.auto_rollback("m", v3, reason="blob corrupt") == v1
    assert reg.resolve("m") == v1 and reg.aliases("m")["previous"] is None
    assert {v.digest for v in reg.versions() if v.retired} == {v3}
    assert reg.state().resolve("m", exclude=frozenset()) == v1
    with pytest.raises(PolicyViolation):
        reg.state().resolve("m", exclude=frozenset({v1}))
    # nothing good left: no version is served (the gateway answers 503), and that too is an event
    assert reg.auto_rollback("m", v1, reason="blob corrupt") is None
    with pytest.raises(PolicyViolation):
        reg.resolve("m")
    ledger.flush()
    events = [e.body for e in ledger.entries() if e.kind == "registry.auto_rollback"]
    assert [(e["from"], e["digest"]) for e in events] == [(v3, v1), (v1, None)]


def test_a_canary_that_fails_integrity_is_dropped_and_prod_stays(tmp_path: Path, ledger: Ledger) -> None:
    reg = ModelRegistry(tmp_path / "reg", ledger=ledger)
    v1, v2 = (reg.push(_model(tmp_path, f"{n}.json", n.encode()), name="m").digest for n in ("a", "b"))
    reg.promote("m", v1)
    reg.promote("m", v2, alias="canary", percent=100)
    assert reg.resolve("m", request_key="anyone") == v2
    assert reg.auto_rollback("m", v2, reason="blob corrupt") == v1
    assert reg.resolve("m", request_key="anyone") == v1 and "canary" not in reg.aliases("m")


def test_cli_kill_and_revive(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    assert main(["registry", "push", str(_model(tmp_path, "a.json", b"one")), "--name", "m", "--root", str(root)]) == 0
    assert main(["registry", "kill", "m", "--mode", "fallback", "--answer", '{"label": 3}', "--root", str(root)]) == 0
    kill = ModelRegistry(root).kill_switch("m")
    assert kill is not None and kill.answer == {"label": 3}
    assert main(["registry", "kill", "m", "--mode", "fallback", "--root", str(root)]) == 2
    assert main(["registry", "kill", "m", "--mode", "fallback", "--answer", "{no", "--root", str(root)]) == 2
    assert main(["registry", "revive", "m", "--root", str(root)]) == 0
    assert ModelRegistry(root).kill_switch("m") is None


def test_a_kill_switch_answer_is_bounded(tmp_path: Path, ledger: Ledger) -> None:
    from hoplon.core.errors import InputError

    reg = ModelRegistry(tmp_path / "reg", ledger=ledger)
    with pytest.raises(InputError, match="at most"):
        reg.kill("m", mode="fallback", answer="x" * 70_000)
    with pytest.raises(InputError, match="deny or fallback"):
        reg.kill("m", mode="off")  # type: ignore[arg-type]
    assert reg.kill_switch("m") is None


def test_concurrent_changes_are_never_lost(tmp_path: Path, ledger: Ledger) -> None:
    import threading

    reg = ModelRegistry(tmp_path / "reg", ledger=ledger)
    digest = reg.push(_model(tmp_path, "a.json", b"one"), name="m").digest

    def change(prefix: str) -> None:
        other = ModelRegistry(tmp_path / "reg", ledger=ledger)  # its own handle, as another process would have
        for i in range(15):
            other.kill(f"{prefix}{i}", mode="deny")

    threads = [threading.Thread(target=change, args=(p,)) for p in ("a", "b", "c")]
    for t in threads:
        t.start()
    reg.promote("m", digest)
    for t in threads:
        t.join()
    assert all(reg.kill_switch(f"{p}{i}") is not None for p in "abc" for i in range(15))
    assert reg.resolve("m") == digest
