"""The three forms on real uvicorn servers: middleware around a Starlette app, sidecar, and `hoplon serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from hoplon.data import Dataset
from hoplon.gateway import Firewall, KeyStore, build_gateway, parse_config
from hoplon.ledger import verify_url

from .fake import FakeModel
from .helpers import free_port, uvicorn_server, v2, wait_port, write_config


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request: Request) -> JSONResponse:
        doc = await request.json()
        x = np.asarray(doc["instances"], dtype=np.float64)
        p = np.exp(x[:, :3]) / np.exp(x[:, :3]).sum(axis=1, keepdims=True)
        return JSONResponse({"predictions": p.tolist(), "debug": "internal"})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


def test_middleware_form_wraps_a_starlette_app(tmp_path: Path) -> None:
    cfg = parse_config(
        {"version": 1, "models": {"tab": {"routes": ["/predict"], "input_shape": [4]}}}, state_dir=tmp_path
    )
    app = Firewall(starlette_app(), cfg)
    key = KeyStore(tmp_path).create("alice")[0]
    with uvicorn_server(app) as url, httpx.Client(base_url=url) as client:
        ok = client.post("/predict", json={"instances": [[1, 2, 3, 4]]}, headers={"x-api-key": key})
        assert ok.status_code == 200 and "debug" not in ok.json()
        assert np.allclose(np.sum(ok.json()["predictions"]), 1.0, atol=1e-3)
        assert client.post("/predict", json={"instances": [[1, 2, 3, 4]]}).status_code == 401
        assert client.post("/predict", json={"instances": [[1, 2, 3]]}, headers={"x-api-key": key}).status_code == 422
    app.close()
    assert verify_url(cfg.audit.ledger).entries == 3


def test_sidecar_form_forwards_to_a_loopback_upstream_without_credentials(tmp_path: Path) -> None:
    seen: list[dict[bytes, bytes]] = []
    upstream = FakeModel()

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]))
        await upstream(scope, receive, send)

    with uvicorn_server(spy) as upstream_url:
        config = write_config(
            tmp_path / "hoplon.yaml",
            {
                "upstream": {"url": upstream_url},
                "models": {"m": {"routes": ["/predict"], "upstream_path": "/v2/models/m/infer"}},
            },
        )
        gateway = build_gateway(config, state_dir=tmp_path / "state")
        key = KeyStore(tmp_path / "state").create("bob", scopes=("model:m",))[0]
        with uvicorn_server(gateway) as url, httpx.Client(base_url=url) as client:
            plain = client.post("/predict", json={"instances": [[0.9, 0.1]]}, headers={"x-api-key": key})
            assert plain.status_code == 200
            assert "embeddings" not in plain.json() and "predictions" not in plain.json()
            assert plain.json().get("labels") == [0]  # no output:scores scope → labels only
            v2reply = client.post("/v2/models/m/infer", json=v2([[0.9, 0.1]]), headers={"x-api-key": key})
            assert v2reply.status_code == 200
            assert [o["name"] for o in v2reply.json()["outputs"]] == ["label"]  # logits stripped, labels only
            assert client.post("/v2/models/m/infer", json=v2([[0.9, 0.1]])).status_code == 401
        gateway.close()
    assert upstream.calls == 2
    assert all(b"x-api-key" not in h and b"authorization" not in h for h in seen)


def test_sidecar_refuses_a_remote_upstream(tmp_path: Path) -> None:
    from hoplon.core.errors import InputError

    config = write_config(tmp_path / "h.yaml", {"upstream": {"url": "http://10.1.2.3:8080"}, "models": {"m": {}}})
    with pytest.raises(InputError, match="loopback"):
        build_gateway(config, state_dir=tmp_path)


def test_hoplon_serve_in_process_with_safe_defaults(tmp_path: Path, digits_file: Path, digits_test: Dataset) -> None:
    state = tmp_path / "state"
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    made = subprocess.run(
        [sys.executable, "-m", "hoplon.cli.main", "keys", "create", "--name", "ci", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    key = made.stdout.strip()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hoplon.cli.main",
            "serve",
            "--model",
            str(digits_file),
            "--state-dir",
            str(state),
            "--port",
            str(port),
            "--input-shape",
            "1,8,8",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_port(port, timeout_s=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            reply = client.post(
                "/v2/models/digits/infer", json=v2(digits_test.x[:2].numpy()), headers={"x-api-key": key}
            )
            assert reply.status_code == 200, reply.text
            assert (
                np.asarray(reply.json()["outputs"][0]["data"]).reshape(2, 10).argmax(1).tolist()
                == digits_test.y[:2].tolist()
            )
            assert client.post("/v2/models/digits/infer", json=v2(digits_test.x[:2].numpy())).status_code == 401
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    for stage in ("admission", "authentication", "rate_limits", "audit"):
        assert stage in err
    assert "enforce" in err and "fail_closed" in err
    time.sleep(0.1)
    result = verify_url(f"sqlite:///{state / 'audit.db'}")
    assert result.ok and result.entries == 2


def test_sidecar_answers_502_when_the_upstream_is_down(tmp_path: Path) -> None:
    from .helpers import call

    config = write_config(
        tmp_path / "h.yaml", {"upstream": {"url": f"http://127.0.0.1:{free_port()}"}, "models": {"m": {}}}
    )
    gateway = build_gateway(config, state_dir=tmp_path / "s")
    key = KeyStore(tmp_path / "s").create("c")[0]
    reply = call(gateway, "POST", "/v2/models/m/infer", body=v2([[0.5]]), headers={"x-api-key": key})
    assert reply.status == 502
    gateway.close()


def test_serve_model_with_a_config_keeps_its_model_across_reloads(tmp_path: Path, digits_file: Path) -> None:
    config = write_config(tmp_path / "h.yaml", {"stages": {"output": {"round_digits": 2}}})
    gateway = build_gateway(config, model=digits_file, input_shape=(1, 8, 8), state_dir=tmp_path / "s")
    assert list(gateway.config.models) == ["digits"] and gateway.config_path == config
    write_config(config, {"stages": {"output": {"round_digits": 4}}})
    assert gateway.reload()
    assert list(gateway.config.models) == ["digits"] and gateway.config.output.round_digits == 4
    gateway.close()
