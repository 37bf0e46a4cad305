"""Adversarial-query clients and key rotation under the rate limits, against a live gateway on 127.0.0.1 with
the shipped enforce.yaml detectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from hoplon.core.errors import InputError
from hoplon.data import Dataset
from hoplon.gateway import KeyStore, build_gateway, parse_config
from hoplon.redteam import BoundaryWalk, GatewayTarget, RateLimit, parse_rate, redteam_gateway
from hoplon.redteam.adversarial import run_adversarial
from hoplon.redteam.gateway import _policy
from hoplon.targets import TorchTarget

from ..gateway.conftest import digits_file as digits_file
from ..gateway.helpers import free_port, uvicorn_server


def _config(tmp_path: Path, digits_file: Path, enforce_spec: dict[str, Any], per_identity: str) -> Any:
    raw = {
        "version": 1,
        "models": {"digits": {"path": str(digits_file), "input_shape": [1, 8, 8]}},
        "stages": {
            "detect": {**enforce_spec, "inline": True},
            "audit": {"mode": "off"},
            "rate_limits": {
                "per_source": "10000/second",
                "per_identity": per_identity,
                "per_identity_model": per_identity,
            },
        },
    }
    return parse_config(yaml.safe_load(yaml.safe_dump(raw)), state_dir=tmp_path)


def test_adversarial_query_clients_are_caught_before_they_succeed(
    tmp_path: Path,
    digits_file: Path,
    digits_test: Dataset,
    digits_target: TorchTarget,
    enforce_spec: dict[str, Any],
) -> None:
    store = KeyStore(tmp_path)
    keys = {name: [store.create(name)[0]] for name in ("square", "hsja", "walk")}
    keys["walk-rotating"] = [store.create(f"walkrot{i}")[0] for i in range(4)]
    keys["benign"] = [store.create(f"benign{i}")[0] for i in range(3)]
    app = build_gateway(_config(tmp_path, digits_file, enforce_spec, "1000/second"), state_dir=tmp_path)
    with uvicorn_server(app) as url:
        results = redteam_gateway(
            url, "digits", keys, digits_test, budget=200, benign_queries=40, adversarial_inputs=5, victim=digits_target
        )
    app.close()
    by_client = {r.client: r for r in results}
    assert all(by_client[f"benign-{i}"].status is None for i in range(3))
    for client in ("square", "hsja", "walk"):
        r = by_client[client]
        # Queries near one input: the per-identity similarity detector quarantines within a few dozen queries.
        assert r.status == 403 and r.contained_at is not None and r.contained_at <= 40, r
        assert r.success_rate is not None and r.success_undetected is not None
        # What it had by then is less than the same budget buys against the undefended model.
        assert r.success_rate < r.success_undetected, r
    # Spread over 4 keys so that no key sees its own near-duplicates: every key is still refused.
    spread = by_client["walk-rotating"]
    assert spread.status == 403 and spread.contained_keys == 4 and spread.contained_at is not None, spread
    assert spread.contained_at <= 120 and spread.success_rate is not None and spread.success_undetected is not None
    assert spread.success_rate < spread.success_undetected, spread


def test_rotating_keys_stay_under_the_learned_limit_and_the_shared_fingerprints_catch_them(
    tmp_path: Path, digits_file: Path, digits_test: Dataset, enforce_spec: dict[str, Any]
) -> None:
    store = KeyStore(tmp_path)
    keys = {"rotating": [store.create(f"rot{i}")[0] for i in range(4)]}
    app = build_gateway(_config(tmp_path, digits_file, enforce_spec, "8/second"), state_dir=tmp_path)
    with uvicorn_server(app) as url:
        (r,) = redteam_gateway(url, "digits", keys, digits_test, budget=100)
    app.close()
    # The per-key limit is read from the one 429 it met; after that the client stays under it.
    assert r.per_key_rate == "8/1s" and r.rate_limited == 1, r
    # Per-key limits alone do not stop it; the detectors contain every key well inside the budget.
    assert r.first_contained_at is not None and r.first_contained_at <= 60, r
    assert r.contained_keys == 4 and r.status == 403, r
    assert r.accuracy_at_detection is not None


def test_a_score_client_on_a_labels_only_key_fails_closed(
    tmp_path: Path, digits_file: Path, digits_test: Dataset, enforce_spec: dict[str, Any]
) -> None:
    key, _ = KeyStore(tmp_path).create("labels", scopes=("model:*",))
    app = build_gateway(_config(tmp_path, digits_file, enforce_spec, "1000/second"), state_dir=tmp_path)
    with uvicorn_server(app) as url, pytest.raises(InputError, match="labels only"):
        run_adversarial("square", url, "digits", [key], digits_test, budget=50)
    app.close()


def test_boundary_walk_breaks_the_undefended_model(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y = digits_test.x[:3], digits_test.y[:3]
    rng = torch.Generator().manual_seed(0)
    x_adv = BoundaryWalk(max_queries=300).run(digits_target, x, y, bounds=digits_test.bounds, rng=rng).x_adv
    assert bool((digits_target.predict(x_adv).argmax(1) != y).all())
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) < 3.0
    assert bool(digits_test.bounds.contains(x_adv).all())


def test_rate_policies_and_bounds(digits_test: Dataset) -> None:
    assert _policy('"per_identity";q=50;w=1') == ("per_identity", RateLimit(50, 1.0))
    assert _policy("garbage") is None and _policy(None) is None and _policy('"x";q=0;w=1') is None
    assert parse_rate("20/second") == RateLimit(20, 1.0) and RateLimit(20, 1.0).under == 18
    assert RateLimit(1, 1.0).under == 1
    with pytest.raises(InputError):
        parse_rate("fast")
    with pytest.raises(InputError):
        GatewayTarget("http://127.0.0.1:1", "m", ["k"], n_classes=10, input_shape=(1, 8, 8), budget=0)
    with pytest.raises(InputError):
        redteam_gateway("http://127.0.0.1:1", "m", {"nosuch": ["k"]}, digits_test)
    nobody = GatewayTarget(f"http://127.0.0.1:{free_port()}", "m", ["k"], n_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(InputError, match="cannot be reached"):
        nobody.predict(digits_test.x[:1])
    assert nobody.log_x == [] and nobody.counter.queries == 0


def test_cli_runs_the_chosen_clients_and_writes_json(
    tmp_path: Path, digits_file: Path, enforce_spec: dict[str, Any]
) -> None:
    import json

    from hoplon.cli.main import main

    app = build_gateway(_config(tmp_path, digits_file, enforce_spec, "1000/second"), state_dir=tmp_path)
    out = tmp_path / "redteam.json"
    with uvicorn_server(app) as url:
        code = main(
            [
                "redteam", "gateway", "--url", url, "--state-dir", str(tmp_path), "--clients", "walk",
                "--benign", "2", "--budget", "100", "--inputs", "3", "--victim", str(digits_file), "--out", str(out),
            ]
        )  # fmt: skip
    app.close()
    assert code == 0
    results = {r["client"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"benign-0", "benign-1", "walk"}
    assert results["walk"]["status"] == 403 and results["walk"]["success_undetected"] is not None
    assert results["benign-0"]["status"] is None and results["benign-1"]["status"] is None
    assert main(["redteam", "gateway", "--url", url, "--state-dir", str(tmp_path), "--clients", "nosuch"]) != 0
