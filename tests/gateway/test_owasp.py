"""OWASP API Top 10-style cases against the in-process gateway: each gets the right status and an audit record."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from hoplon.data import Dataset
from hoplon.gateway import Firewall, KeyStore, build_gateway
from hoplon.gateway.keys import RECHECK_S
from hoplon.ledger import verify_url

from .conftest import JwtIssuer
from .helpers import Reply, call, uvicorn_server, v2, write_config


def gateway_config(tmp_path: Path, digits_file: Path, profile: Path, issuer: JwtIssuer, **stages: Any) -> Path:
    base: dict[str, Any] = {
        "authentication": {
            "jwt": {"issuer": "https://idp.test", "audience": "hoplon-test", "jwks_file": str(issuer.jwks)}
        },
        "admission": {"max_body_bytes": 20_000, "max_batch": 16},
    }
    for name, values in stages.items():
        base.setdefault(name, {}).update(values)
    return write_config(
        tmp_path / "hoplon.yaml",
        {
            "models": {
                "digits": {"path": str(digits_file), "input_shape": [1, 8, 8], "profile": str(profile)},
                "other": {"path": str(digits_file), "input_shape": [1, 8, 8]},
            },
            "stages": base,
        },
    )


@pytest.fixture(params=["embedded", "redis+postgres"])
def gateway(
    request: pytest.FixtureRequest, tmp_path: Path, digits_file: Path, digits_profile: Path, issuer: JwtIssuer
) -> Iterator[Firewall]:
    stages: dict[str, Any] = {}
    if request.param == "redis+postgres":
        redis_url = request.getfixturevalue("redis_url")
        postgres = request.getfixturevalue("postgres_url")
        stages = {"rate_limits": {"storage": redis_url}, "audit": {"ledger": postgres}}
    config = gateway_config(tmp_path, digits_file, digits_profile, issuer, **stages)
    gw = build_gateway(config, state_dir=tmp_path / "state")
    yield gw
    gw.close()


@pytest.fixture()
def alice(gateway: Firewall) -> str:
    token, _ = KeyStore(gateway.config.state_dir).create("alice", scopes=("model:digits", "output:scores"))
    return token


def audit_of(gw: Firewall, reply: Reply) -> dict[str, Any]:
    assert gw.ledger is not None
    gw.ledger.flush()
    rid = reply.headers["x-request-id"]
    found = [e for e in gw.ledger.entries(kind="gateway.decision") if e.body["request_id"] == rid]
    assert len(found) == 1
    return {**found[0].body, "identity": found[0].identity}


def infer(gw: Firewall, body: Any, headers: dict[str, str] | None = None, model: str = "digits", **kw: Any) -> Reply:
    return call(gw, "POST", f"/v2/models/{model}/infer", body=body, headers=headers, **kw)


def test_valid_key_gets_rounded_probabilities_and_an_allow_record(
    gateway: Firewall, alice: str, digits_test: Dataset
) -> None:
    reply = infer(gateway, v2(digits_test.x[:3].numpy()), {"x-api-key": alice})
    assert reply.status == 200, reply.body
    out = reply.json()["outputs"][0]
    probs = np.asarray(out["data"]).reshape(out["shape"])
    assert probs.shape == (3, 10) and np.allclose(probs.sum(axis=1), 1, atol=0.01)
    assert np.all(np.round(probs, 3) == probs)
    assert list(probs.argmax(axis=1)) == digits_test.y[:3].tolist()
    record = audit_of(gateway, reply)
    assert record["decision"] == "allow" and record["identity"] == "alice"
    assert record["config_hash"] == gateway.config.hash and record["model_digest"].startswith("sha256:")
    assert record["input_hmac"].startswith("hmac-sha256:") and "data" not in str(record)
    assert set(record["stages"]) >= {
        "admission",
        "authentication",
        "authorisation",
        "rate_limits",
        "validation",
        "output",
    }
    assert record["output"]["labels"] == digits_test.y[:3].tolist()


CASES = [
    ("missing key", {}, None, 401, "missing"),
    ("invalid key", {"x-api-key": "hpl_000000000000_" + "a" * 64}, None, 401, "key_unknown"),
    ("garbage key", {"x-api-key": "letmein"}, None, 401, "key_malformed"),
]


@pytest.mark.parametrize(("name", "headers", "body", "status", "reason"), CASES, ids=[c[0] for c in CASES])
def test_authentication_failures(
    gateway: Firewall, digits_test: Dataset, name: str, headers: dict[str, str], body: Any, status: int, reason: str
) -> None:
    reply = infer(gateway, body or v2(digits_test.x[:1].numpy()), headers)
    assert reply.status == status and reply.json()["error"]["code"] == reason
    record = audit_of(gateway, reply)
    assert record["decision"] == "deny" and record["reason"] == reason and record["status"] == status


def test_revoked_key(gateway: Firewall, alice: str, digits_test: Dataset) -> None:
    store = KeyStore(gateway.config.state_dir)
    key_id = alice.split("_")[1]
    assert infer(gateway, v2(digits_test.x[:1].numpy()), {"x-api-key": alice}).status == 200
    store.revoke(key_id)
    # A running gateway looks at the keys file at most every RECHECK_S for a key it knows.
    time.sleep(RECHECK_S)
    reply = infer(gateway, v2(digits_test.x[:1].numpy()), {"x-api-key": alice})
    assert reply.status == 401 and audit_of(gateway, reply)["reason"] == "key_revoked"
    # a new key (an id the gateway has not seen) is looked up afresh: it works at once
    fresh, _ = store.create("alice")
    assert infer(gateway, v2(digits_test.x[:1].numpy()), {"x-api-key": fresh}).status == 200


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp_in": -120}, "jwt_expired"),
        ({"aud": "another-service"}, "jwt_audience"),
        ({"iss": "https://evil"}, "jwt_issuer"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer"],
)
def test_bad_jwts(
    gateway: Firewall, issuer: JwtIssuer, digits_test: Dataset, claims: dict[str, Any], reason: str
) -> None:
    token = issuer.token(scope="model:digits", **claims)
    reply = infer(gateway, v2(digits_test.x[:1].numpy()), {"authorization": f"Bearer {token}"})
    assert reply.status == 401 and reply.json()["error"]["code"] == reason
    assert audit_of(gateway, reply)["reason"] == reason


def test_good_jwt_without_output_scope_gets_labels_only(
    gateway: Firewall, issuer: JwtIssuer, digits_test: Dataset
) -> None:
    token = issuer.token(scope="model:digits")
    reply = infer(gateway, v2(digits_test.x[:2].numpy()), {"authorization": f"Bearer {token}"})
    assert reply.status == 200
    outputs = reply.json()["outputs"]
    assert outputs == [{"name": "label", "shape": [2], "datatype": "INT64", "data": digits_test.y[:2].tolist()}]
    assert audit_of(gateway, reply)["identity"] == "jwt:svc-1"


def test_scope_escalation_to_another_model(
    gateway: Firewall, alice: str, issuer: JwtIssuer, digits_test: Dataset
) -> None:
    reply = infer(gateway, v2(digits_test.x[:1].numpy()), {"x-api-key": alice}, model="other")
    assert reply.status == 403 and reply.json()["error"]["code"] == "scope"
    assert audit_of(gateway, reply)["stages"]["authorisation"] == "deny:scope"
    token = issuer.token(scope="model:digits")
    assert call(gateway, "GET", "/v2/models/other", headers={"authorization": f"Bearer {token}"}).status == 403


def test_oversized_body(gateway: Firewall, alice: str) -> None:
    reply = infer(gateway, b"{" + b" " * 30_000 + b"}", {"x-api-key": alice})
    assert reply.status == 413 and audit_of(gateway, reply)["reason"] == "body_too_large"


def test_batch_too_large(gateway: Firewall, alice: str) -> None:
    reply = infer(gateway, v2(np.zeros((17, 1, 8, 8))), {"x-api-key": alice})
    assert reply.status == 413 and reply.json()["error"]["code"] == "batch_too_large"


def test_wrong_shape(gateway: Firewall, alice: str) -> None:
    reply = infer(gateway, v2(np.zeros((2, 64))), {"x-api-key": alice})
    assert reply.status == 422 and audit_of(gateway, reply)["reason"] == "wrong_shape"


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        *((value, "non_finite") for value in (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"1" + b"0" * 400)),
        # written as strings they are not numbers at all (nor is "0.5")
        *((value, "bad_values") for value in (b'"nan"', b'"-inf"', b'"1e999"', b'"0.5"')),
    ],
)
def test_nan_and_inf(gateway: Firewall, alice: str, literal: bytes, reason: str) -> None:
    body = b'{"inputs":[{"name":"x","shape":[1,1,8,8],"datatype":"FP32","data":[' + b"0," * 63 + literal + b"]}]}"
    reply = infer(gateway, body, {"x-api-key": alice})
    assert reply.status == 400 and reply.json()["error"]["code"] == reason
    assert audit_of(gateway, reply)["reason"] == reason


def test_input_outside_the_profile(gateway: Firewall, alice: str, digits_test: Dataset) -> None:
    x = digits_test.x[:1].numpy().copy()
    x[0, 0, 3, 3] = 5.0  # pixels live in [0, 1]
    reply = infer(gateway, v2(x), {"x-api-key": alice})
    assert reply.status == 422 and reply.json()["error"]["code"] == "profile_out_of_range"
    assert audit_of(gateway, reply)["scores"]["ood"] > 0


def test_the_ledger_of_a_run_verifies(gateway: Firewall, alice: str, digits_test: Dataset) -> None:
    for _ in range(3):
        infer(gateway, v2(digits_test.x[:1].numpy()), {"x-api-key": alice})
    infer(gateway, v2(digits_test.x[:1].numpy()), {})
    gateway.close()
    assert verify_url(gateway.config.audit.ledger).ok


def test_real_uvicorn_server_with_metadata_health_and_metrics(
    gateway: Firewall, alice: str, digits_test: Dataset
) -> None:
    with uvicorn_server(gateway) as url, httpx.Client(base_url=url) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        meta = client.get("/v2/models/digits", headers={"x-api-key": alice})
        assert meta.status_code == 200 and meta.json()["inputs"][0]["shape"] == [-1, 1, 8, 8]
        ok = client.post("/v2/models/digits/infer", json=v2(digits_test.x[:4].numpy()), headers={"x-api-key": alice})
        assert ok.status_code == 200
        assert client.post("/v2/models/digits/infer", json=v2(digits_test.x[:1].numpy())).status_code == 401
        metrics = client.get("/metrics").text
    assert 'hoplon_gateway_requests_total{code="200",decision="allow",model="digits",version="1"} 2.0' in metrics
    assert 'hoplon_gateway_auth_failures_total{reason="missing"} 1.0' in metrics
    assert "hoplon_gateway_stage_seconds_bucket" in metrics
    assert "hoplon_gateway_ledger_checkpoint_age_seconds" in metrics
