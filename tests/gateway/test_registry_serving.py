"""A live gateway serving from the model registry: promote and rollback under load, canary split, kill switch,
fail-closed routing, automatic rollback on a tampered blob, and the admin API / ``hoplon incident`` commands."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from hoplon.cli.main import main
from hoplon.gateway import KeyStore
from hoplon.gateway.firewall import Firewall
from hoplon.gateway.routing import RegistryRouter
from hoplon.gateway.server import build_gateway
from hoplon.ledger import Ledger
from hoplon.registry import ModelRegistry, open_registry

from .helpers import uvicorn_server, v2, write_config

N_FEATURES = 4


class _Constant(torch.nn.Module):
    """A linear model whose answer is always class ``label`` (so each version is recognisable)."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(N_FEATURES, 3)
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.bias.copy_(torch.eye(3)[label] * 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lin(x)
        return out


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three TorchScript files answering class 0, 1 and 2."""
    from hoplon.targets.torch_target import quiet_torchscript

    folder = tmp_path_factory.mktemp("versions")
    paths = []
    for label in range(3):
        path = folder / f"v{label}.pt"
        with quiet_torchscript(), torch.no_grad():
            torch.jit.save(torch.jit.trace(_Constant(label).eval(), torch.zeros(1, N_FEATURES)), str(path))
        paths.append(path)
    return paths


@dataclass
class Live:
    url: str
    fw: Firewall
    root: Path
    state: Path
    digests: list[str]
    keys: dict[str, str]

    def infer(self, key: str = "alice", client: httpx.Client | None = None) -> httpx.Response:
        body = v2(np.zeros((1, N_FEATURES)))
        headers = {"X-API-Key": self.keys[key]}
        if client is not None:
            return client.post(f"{self.url}/v2/models/clf/infer", json=body, headers=headers)
        return httpx.post(f"{self.url}/v2/models/clf/infer", json=body, headers=headers, timeout=30)

    def label(self, key: str = "alice") -> int:
        reply = self.infer(key)
        assert reply.status_code == 200, reply.text
        return int(np.argmax(reply.json()["outputs"][0]["data"]))

    def change(self, action: str, *args: Any, **kwargs: Any) -> Any:
        reg = open_registry(self.root)
        try:
            return getattr(reg, action)(*args, **kwargs)
        finally:
            assert reg.ledger is not None
            reg.ledger.close()

    def registry_events(self) -> list[tuple[str, dict[str, Any]]]:
        with Ledger.open(f"sqlite:///{self.root / 'registry.db'}", signing_key=str(self.root / "ledger.key")) as led:
            return [(e.kind, e.body) for e in led.entries()]

    def audit(self) -> list[tuple[str, dict[str, Any]]]:
        assert self.fw.ledger is not None
        self.fw.ledger.flush()
        return [(e.kind, e.body) for e in self.fw.ledger.entries()]


def _wait(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(0.05)


def _setup(
    tmp_path: Path, versions: list[Path], *, signed: bool = False, **registry: Any
) -> tuple[Path, Path, list[str], dict[str, str], Path]:
    root, state = tmp_path / "registry", tmp_path / "state"
    reg = open_registry(root, require_signature=signed)
    digests = []
    for path in versions:
        if signed:
            from hoplon.scan.signing import sign_model

            sig = sign_model(path, private_key=tmp_path / "k.pem", signature=tmp_path / f"{path.name}.sig")
            digests.append(reg.push(path, name="clf", public_key=tmp_path / "k.pub", signature=sig).digest)
        else:
            digests.append(reg.push(path, name="clf").digest)
    reg.promote("clf", digests[0])
    reg.promote("clf", digests[1])  # prod = v1, previous = v0
    assert reg.ledger is not None
    reg.ledger.close()
    store = KeyStore(state)
    keys = {name: store.create(name)[0] for name in ("alice", "bob")}
    keys["ops"] = store.create("ops", scopes=("admin:*",))[0]
    config = write_config(
        tmp_path / "hoplon.yaml",
        {
            "server": {"state_dir": str(state)},
            "registry": {"root": str(root), "poll_s": 0.1, "verify_s": 0.5, **registry},
            "models": {"clf": {"input_shape": [N_FEATURES]}},
            "stages": {"rate_limits": {"mode": "off"}},
        },
    )
    return root, state, digests, keys, config


@pytest.fixture()
def live(tmp_path: Path, versions: list[Path]) -> Iterator[Live]:
    root, state, digests, keys, config = _setup(tmp_path, versions)
    fw = build_gateway(config)
    with uvicorn_server(fw) as url:
        yield Live(url, fw, root, state, digests, keys)


def test_promote_and_rollback_under_load_fail_no_request(live: Live) -> None:
    statuses: list[int] = []
    labels: set[int] = set()
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                reply = live.infer("alice", client)
                statuses.append(reply.status_code)
                if reply.status_code == 200:
                    labels.add(int(np.argmax(reply.json()["outputs"][0]["data"])))

    threads = [threading.Thread(target=client_loop) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        live.change("promote", "clf", live.digests[2])
        _wait(lambda: 2 in labels)
        assert live.change("rollback", "clf") == live.digests[1]
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(statuses) > 20 and set(statuses) == {200}
    assert labels == {1, 2}
    assert live.label() == 1
    # the audit record names the digest that actually answered each request
    served = {r["model_digest"] for kind, r in live.audit() if kind == "gateway.decision" and r["status"] == 200}
    assert served == {live.digests[1], live.digests[2]}


def test_canary_split_follows_the_percentage_per_identity(live: Live) -> None:
    live.change("promote", "clf", live.digests[2], alias="canary", percent=30)
    router = live.fw.admin.router
    assert router is not None
    router.refresh()
    picks = [router.route("clf", f"client-{i}").digest for i in range(4000)]
    share = picks.count(live.digests[2]) / len(picks)
    assert 0.27 < share < 0.33
    # live: each identity always lands on the same version, and both versions answer
    store = KeyStore(live.state)
    seen = {}
    for i in range(16):
        live.keys[f"c{i}"] = store.create(f"c{i}")[0]
    _wait(lambda: live.fw.admin.router is not None and live.fw.admin.router.state.data["aliases"]["clf"].get("canary"))
    for i in range(16):
        first, second = live.label(f"c{i}"), live.label(f"c{i}")
        assert first == second
        seen[i] = first
    assert set(seen.values()) == {1, 2}
    expected = {i: 2 if router.route("clf", f"c{i}").digest == live.digests[2] else 1 for i in range(16)}
    assert seen == expected


def test_kill_switch_deny_and_fallback_apply_live(live: Live) -> None:
    assert live.label() == 1
    live.change("kill", "clf", mode="deny")
    _wait(lambda: live.infer().status_code == 503)
    assert live.infer().json()["error"]["code"] == "model_killed"
    live.change("kill", "clf", mode="fallback", answer={"label": 7})
    _wait(lambda: live.infer().status_code == 200)
    assert live.infer().json()["answer"] == {"label": 7}
    live.change("revive", "clf")
    _wait(lambda: "outputs" in live.infer().json())
    assert live.label() == 1
    kinds = [kind for kind, _ in live.registry_events()]
    assert kinds.count("registry.kill") == 2 and "registry.revive" in kinds


def test_a_retired_or_unsigned_digest_is_never_routed(tmp_path: Path, versions: list[Path]) -> None:
    root, state, digests, keys, config = _setup(tmp_path, versions, require_signature=True)
    fw = build_gateway(config)
    with uvicorn_server(fw) as url:
        lv = Live(url, fw, root, state, digests, keys)
        reply = lv.infer()
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "model_unavailable"
    root, state, digests, keys, config = _setup(tmp_path / "b", versions)
    index = json.loads((root / "index.json").read_text())
    index["versions"][digests[1]]["retired"] = True  # an index edited behind the registry's back
    (root / "index.json").write_text(json.dumps(index))
    fw = build_gateway(config)
    with uvicorn_server(fw) as url:
        reply = Live(url, fw, root, state, digests, keys).infer()
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "model_unavailable"


def test_a_tampered_blob_rolls_back_to_the_last_good_version(live: Live, versions: list[Path]) -> None:
    assert live.label() == 1
    blob = ModelRegistry(live.root).blob(live.digests[1])
    blob.write_bytes(versions[2].read_bytes())  # a valid model, but not the one that was pushed and signed off
    _wait(lambda: live.label() == 0)
    assert {live.label() for _ in range(5)} == {0}
    events = live.registry_events()
    kind, record = events[-1]
    assert kind == "registry.auto_rollback"
    assert record["from"] == live.digests[1] and record["digest"] == live.digests[0]
    assert "corrupt" in record["reason"]
    retired = {v.digest for v in ModelRegistry(live.root).versions() if v.retired}
    assert retired == {live.digests[1]}


def test_a_blob_tampered_before_its_first_load_is_never_served(tmp_path: Path, versions: list[Path]) -> None:
    root, state, digests, keys, config = _setup(tmp_path, versions)
    ModelRegistry(root).blob(digests[1]).write_bytes(versions[2].read_bytes())
    fw = build_gateway(config)
    with uvicorn_server(fw) as url:
        lv = Live(url, fw, root, state, digests, keys)
        assert lv.label() == 0  # the very first request is answered by the previous version
        assert lv.registry_events()[-1][0] == "registry.auto_rollback"


def test_a_signature_that_stops_verifying_rolls_back(tmp_path: Path, versions: list[Path]) -> None:
    from hoplon.scan.signing import generate_keypair

    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    root, state, digests, keys, config = _setup(
        tmp_path, versions[:2], signed=True, require_signature=True, public_key=str(tmp_path / "k.pub")
    )
    fw = build_gateway(config)
    with uvicorn_server(fw) as url:
        lv = Live(url, fw, root, state, digests, keys)
        assert lv.label() == 1
        reg = ModelRegistry(root)
        # the stored signature of v1 replaced by v0's: the blob is intact but no longer what was signed
        reg.signature_path(digests[1]).write_bytes(reg.signature_path(digests[0]).read_bytes())
        _wait(lambda: lv.label() == 0)
        kind, record = lv.registry_events()[-1]
        assert kind == "registry.auto_rollback" and "signature" in record["reason"]


def _admin(live: Live, method: str, path: str, key: str = "ops", **kwargs: Any) -> httpx.Response:
    headers = {"X-API-Key": live.keys[key]} if key else {}
    return httpx.request(method, f"{live.url}{path}", headers=headers, timeout=30, **kwargs)


def test_admin_quarantine_block_throttle_release_and_rollback(live: Live) -> None:
    assert live.infer("alice").status_code == 200
    reply = _admin(live, "POST", "/admin/quarantine", json={"identity": "alice"})
    assert reply.status_code == 200 and reply.json()["action"] == "block"
    denied = live.infer("alice")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "quarantined"
    assert live.infer("bob").status_code == 200
    assert _admin(live, "GET", "/admin/quarantine").json()["quarantined"]["alice"]["action"] == "block"
    reply = _admin(live, "POST", "/admin/quarantine", json={"identity": "alice", "action": "throttle"})
    assert reply.status_code == 200
    statuses = [live.infer("alice").status_code for _ in range(3)]
    assert statuses[0] == 200 and 429 in statuses
    assert _admin(live, "DELETE", "/admin/quarantine/alice").json() == {"identity": "alice", "released": True}
    assert live.infer("alice").status_code == 200
    reply = _admin(live, "POST", "/admin/rollback", json={"model": "clf"})
    assert reply.status_code == 200 and reply.json()["digest"] == live.digests[0]
    assert live.label() == 0  # applied at once, not at the next poll
    audit = live.audit()
    kinds = [kind for kind, _ in audit]
    assert {"admin.quarantine", "admin.release", "admin.rollback"} <= set(kinds)
    quarantined = [r for kind, r in audit if kind == "gateway.decision" and r["reason"] == "quarantined"]
    assert quarantined and quarantined[0]["stages"]["quarantine"] == "deny:quarantined"
    assert "registry.rollback" in [kind for kind, _ in live.registry_events()]


def test_admin_endpoints_refuse_non_admin_and_bad_input(live: Live) -> None:
    assert _admin(live, "POST", "/admin/quarantine", key="bob", json={"identity": "alice"}).status_code == 403
    assert _admin(live, "POST", "/admin/rollback", key="bob", json={"model": "clf"}).status_code == 403
    assert _admin(live, "GET", "/admin/quarantine", key="").status_code == 401
    assert _admin(live, "POST", "/admin/quarantine", json={"identity": "a b"}).status_code == 400
    assert _admin(live, "POST", "/admin/quarantine", json={"identity": "x", "action": "nuke"}).status_code == 400
    assert _admin(live, "POST", "/admin/quarantine", content=b"{" * 70_000).status_code == 413
    assert _admin(live, "POST", "/admin/rollback", json={"model": "nope"}).status_code == 409
    assert _admin(live, "POST", "/admin/nothing").status_code == 404
    assert live.infer("alice").status_code == 200


def test_incident_cli_quarantine_and_rollback(live: Live) -> None:
    gateway = ["--gateway", live.url, "--admin-key", live.keys["ops"]]
    assert main(["incident", "quarantine", "alice", *gateway]) == 0
    assert live.infer("alice").status_code == 403
    assert main(["incident", "quarantine", "alice", "--release", *gateway]) == 0
    assert live.infer("alice").status_code == 200
    # without the API: the state folder the gateway watches; --revoke also kills the identity's keys
    assert main(["incident", "quarantine", "bob", "--state-dir", str(live.state)]) == 0
    _wait(lambda: live.infer("bob").status_code == 403)
    assert main(["incident", "quarantine", "bob", "--release", "--state-dir", str(live.state)]) == 0
    _wait(lambda: live.infer("bob").status_code == 200)
    assert main(["incident", "quarantine", "bob", "--revoke", "--state-dir", str(live.state)]) == 0
    _wait(lambda: live.infer("bob").status_code == 401)
    assert main(["incident", "rollback", "clf", *gateway]) == 0
    assert live.label() == 0
    assert main(["incident", "rollback", "clf", "--registry", str(live.root)]) == 0
    _wait(lambda: live.label() == 1)
    assert main(["incident", "quarantine", "alice", "--gateway", live.url, "--admin-key", live.keys["bob"]]) == 2
    assert main(["incident", "quarantine", "alice"]) == 2
    kinds = [kind for kind, _ in live.audit()]
    assert kinds.count("admin.quarantine") == 3 and kinds.count("admin.release") == 2


def test_registry_option_without_a_config_and_its_refusals(tmp_path: Path, versions: list[Path]) -> None:
    from hoplon.core.errors import InputError

    from .helpers import call

    root, state, digests, keys, _ = _setup(tmp_path, versions)
    fw = build_gateway(None, registry=root, input_shape=(N_FEATURES,), state_dir=state)
    reply = call(
        fw, "POST", "/v2/models/clf/infer", body=v2(np.zeros((1, N_FEATURES))), headers={"X-API-Key": keys["bob"]}
    )
    assert reply.status == 200 and reply.json()["model_version"] == digests[1]
    assert call(fw, "GET", "/v2/models/nope", headers={"X-API-Key": keys["bob"]}).status == 404
    fw.close()
    with pytest.raises(InputError, match="sample shape"):
        build_gateway(None, registry=root, state_dir=state)
    with pytest.raises(InputError, match="exclusive"):
        build_gateway(None, registry=root, model=versions[0], state_dir=state)
    with pytest.raises(InputError, match="not a model registry"):
        RegistryRouter(tmp_path)


def test_quarantine_list_survives_a_broken_file_and_bounds_its_input(tmp_path: Path) -> None:
    from hoplon.core.errors import InputError
    from hoplon.gateway.admin import QuarantineList

    qlist = QuarantineList(tmp_path, max_age_s=0.0)
    qlist.add("mallory", "block", by="test")
    assert qlist.refusal("mallory") is not None and qlist.refusal("alice") is None
    (tmp_path / "quarantine.json").write_text("{broken")
    refusal = qlist.refusal("mallory")  # a file that cannot be read never releases anyone
    assert refusal is not None and refusal[0] == 403
    qlist.add("eve", "throttle", rate_per_s=0.5)  # rewritten from the last good list
    assert set(QuarantineList(tmp_path).entries()) == {"mallory", "eve"}
    throttled = [qlist.refusal("eve") for _ in range(2)]
    assert throttled[0] is None and throttled[1] is not None and throttled[1][0] == 429
    for bad in ("", "a b", "x" * 300, "../etc"):
        with pytest.raises(InputError):
            qlist.add(bad)
    with pytest.raises(InputError):
        qlist.add("ok", "nuke")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        qlist.add("ok", "throttle", rate_per_s=0)
    assert qlist.remove("mallory") and not qlist.remove("mallory")
