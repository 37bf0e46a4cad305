"""``redteam_gateway`` against a live gateway on 127.0.0.1 with the shipped enforce.yaml detectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hoplon.core.errors import InputError
from hoplon.data import Dataset
from hoplon.gateway import KeyStore, build_gateway, parse_config
from hoplon.redteam import GatewayTarget, redteam_gateway

from ..gateway.conftest import digits_file as digits_file
from ..gateway.helpers import uvicorn_server


def test_jbda_is_contained_and_benign_identities_are_not(
    tmp_path: Path, digits_file: Path, digits_test: Dataset, enforce_spec: dict[str, Any]
) -> None:
    raw = {
        "version": 1,
        "models": {"digits": {"path": str(digits_file), "input_shape": [1, 8, 8]}},
        "stages": {
            "detect": {**enforce_spec, "inline": True},
            "audit": {"mode": "off"},
            "rate_limits": {"per_source": "10000/second", "per_identity": "1000/second"},
        },
    }
    cfg = parse_config(yaml.safe_load(yaml.safe_dump(raw)), state_dir=tmp_path)
    store = KeyStore(tmp_path)
    keys = {
        "benign": [store.create(f"benign{i}")[0] for i in range(3)],
        "jbda": [store.create("jbda")[0]],
    }
    app = build_gateway(cfg, state_dir=tmp_path)
    with uvicorn_server(app) as url:
        results = {
            r.client: r for r in redteam_gateway(url, "digits", keys, digits_test, budget=120, benign_queries=40)
        }
    app.close()
    assert results["jbda"].status == 403 and results["jbda"].contained_at is not None
    assert results["jbda"].contained_at <= 120
    assert all(results[f"benign-{i}"].status is None for i in range(3))


def test_only_loopback_gateways_are_attacked() -> None:
    with pytest.raises(InputError):
        GatewayTarget("http://example.com:8000", "m", ["k"], n_classes=10, input_shape=(1, 8, 8))
