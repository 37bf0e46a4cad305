"""`HttpTarget` against a real local HTTP server (uvicorn on 127.0.0.1) serving the demo model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hoplon.attacks import HopSkipJump, SquareAttack, evaluate
from hoplon.audit import robustness
from hoplon.cli.main import main
from hoplon.core import BudgetExceeded, InputError
from hoplon.data import Dataset, save_npz
from hoplon.targets import (
    Budget,
    Capability,
    EndpointConfig,
    EndpointError,
    EndpointUnavailable,
    HttpTarget,
    load_endpoint_config,
    load_target,
)


def _app(model: torch.nn.Module) -> Starlette:
    lock = threading.Lock()
    state = {"flaky": 0, "dies": 0}

    async def scores(request: Request) -> Response:
        body = await request.json()
        with lock, torch.no_grad():
            probs = torch.softmax(model(torch.tensor(body["inputs"], dtype=torch.float32)), dim=1)
        return JSONResponse({"scores": probs.tolist()})

    async def labels(request: Request) -> Response:
        body = await request.json()
        with lock, torch.no_grad():
            out = model(torch.tensor(body["x"], dtype=torch.float32)).argmax(1)
        return JSONResponse({"data": {"labels": out.tolist()}})

    async def secure(request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer s3cret":
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        return await scores(request)

    async def flaky(request: Request) -> Response:
        state["flaky"] += 1
        if state["flaky"] % 3 != 0:
            return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "0"})
        return await scores(request)

    async def dies(request: Request) -> Response:
        state["dies"] += 1
        if state["dies"] > 40:
            return JSONResponse({"error": "gone"}, status_code=503)
        return await scores(request)

    async def down(request: Request) -> Response:
        return JSONResponse({"error": "maintenance"}, status_code=503)

    async def malformed(request: Request) -> Response:
        return PlainTextResponse("<html>oops</html>")

    async def wrong_shape(request: Request) -> Response:
        return JSONResponse({"scores": [[0.5, 0.5]]})

    async def slow(request: Request) -> Response:
        time.sleep(0.4)
        return await scores(request)

    routes = [
        Route("/predict", scores, methods=["POST"]),
        Route("/labels", labels, methods=["POST"]),
        Route("/secure", secure, methods=["POST"]),
        Route("/flaky", flaky, methods=["POST"]),
        Route("/down", down, methods=["POST"]),
        Route("/dies", dies, methods=["POST"]),
        Route("/malformed", malformed, methods=["POST"]),
        Route("/wrong-shape", wrong_shape, methods=["POST"]),
        Route("/slow", slow, methods=["POST"]),
    ]
    return Starlette(routes=routes)


@pytest.fixture(scope="module")
def server(digits_model: torch.nn.Module) -> Iterator[str]:
    config = uvicorn.Config(_app(digits_model), host="127.0.0.1", port=0, log_level="error", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the local uvicorn server did not start")
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def _target(url: str, digits_test: Dataset, **config: object) -> HttpTarget:
    cfg = EndpointConfig(url=url, **config)  # type: ignore[arg-type]
    return HttpTarget(cfg, input_shape=(1, 8, 8), bounds=digits_test.bounds, sleep=lambda s: None)


def test_scores_match_the_model_and_queries_are_counted(
    server: str, digits_model: torch.nn.Module, digits_test: Dataset
) -> None:
    target = _target(f"{server}/predict", digits_test, batch_size=16)
    assert target.n_classes == 10 and Capability.SCORES in target.capabilities
    assert Capability.GRADIENTS not in target.capabilities
    before = target.counter.queries
    scores = target.predict(digits_test.x[:40])
    expected = torch.softmax(digits_model(digits_test.x[:40]), dim=1)
    assert torch.allclose(scores, expected, atol=1e-5)
    assert target.counter.queries - before == 40 and target.counter.calls >= 3


def test_square_fools_the_model_over_http(server: str, digits_test: Dataset) -> None:
    target = _target(f"{server}/predict", digits_test)
    x, y = digits_test.x[:12], digits_test.y[:12]
    ev = evaluate(SquareAttack(max_queries=150), target, x, y, eps=[0.25])
    assert int(ev.outcomes[0].is_adv.sum()) >= 0.7 * int(ev.clean_correct.sum())


def test_a_labels_only_endpoint_runs_hsja(server: str, digits_test: Dataset) -> None:
    target = _target(
        f"{server}/labels", digits_test, input_field="x", output_path="data.labels", output="label", n_classes=10
    )
    assert target.capabilities == frozenset({Capability.LABELS})
    x, y = digits_test.x[:4], digits_test.y[:4]
    ev = evaluate(HopSkipJump(steps=2, init_evals=20), target, x, y, eps=[4.0])
    assert int(ev.outcomes[0].is_adv.sum()) == int(ev.clean_correct.sum())
    with pytest.raises(InputError, match="needs a target with 'scores'"):
        evaluate(SquareAttack(max_queries=10), target, x, y, eps=[0.1])


def test_api_key_comes_from_the_environment(server: str, digits_test: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOPLON_TEST_KEY", raising=False)
    with pytest.raises(InputError, match=r"\$HOPLON_TEST_KEY, which is not set"):
        _target(f"{server}/secure", digits_test, api_key_env="HOPLON_TEST_KEY")
    monkeypatch.setenv("HOPLON_TEST_KEY", "wrong")
    with pytest.raises(EndpointError, match="HTTP 401"):
        _target(f"{server}/secure", digits_test, api_key_env="HOPLON_TEST_KEY")
    monkeypatch.setenv("HOPLON_TEST_KEY", "s3cret")
    assert _target(f"{server}/secure", digits_test, api_key_env="HOPLON_TEST_KEY").n_classes == 10


def test_429_is_retried_politely(server: str, digits_test: Dataset) -> None:
    waits: list[float] = []
    cfg = EndpointConfig(url=f"{server}/flaky", retries=3, backoff_s=0.01, n_classes=10)
    target = HttpTarget(cfg, input_shape=(1, 8, 8), sleep=waits.append)
    assert target.predict(digits_test.x[:3]).shape == (3, 10)
    assert waits == [0.01, 0.02]  # two 429s, waits doubling


def test_dead_slow_and_malformed_endpoints_fail_clearly(server: str, digits_test: Dataset) -> None:
    with pytest.raises(EndpointUnavailable, match="HTTP 503 after 3 attempt"):
        _target(f"{server}/down", digits_test, retries=2, backoff_s=0.0)
    with pytest.raises(EndpointUnavailable, match=r"no answer within 0\.1 s"):
        _target(f"{server}/slow", digits_test, retries=0, timeout_s=0.1)
    with pytest.raises(EndpointUnavailable, match="connection failed"):
        _target("http://127.0.0.1:9/predict", digits_test, retries=1, backoff_s=0.0)
    with pytest.raises(EndpointError, match="did not answer JSON"):
        _target(f"{server}/malformed", digits_test)
    with pytest.raises(EndpointError, match=r"Expected a \(3, 10\) array"):
        _target(f"{server}/wrong-shape", digits_test, n_classes=10).predict(digits_test.x[:3])
    with pytest.raises(EndpointError, match=r"nothing at 'out\.scores'"):
        _target(f"{server}/predict", digits_test, output_path="out.scores")
    assert issubclass(EndpointUnavailable, BudgetExceeded)  # an attack in progress keeps its partial results


def test_an_endpoint_dying_mid_audit_keeps_the_results_so_far(server: str, digits_test: Dataset) -> None:
    target = _target(f"{server}/dies", digits_test, retries=1, backoff_s=0.0)
    data = digits_test.subset(slice(0, 10))
    report = robustness(target, data, eps=[0.05, 0.3], attacks=["square"], command="test")
    rows = report.results["robustness"]
    assert rows and all(row["partial"] for row in rows)
    assert rows[0]["eps"] == 0.05  # what was found up to the failure is kept, labelled partial


def test_the_budget_applies_before_a_request_leaves(server: str, digits_test: Dataset) -> None:
    cfg = EndpointConfig(url=f"{server}/predict", n_classes=10)
    target = HttpTarget(cfg, input_shape=(1, 8, 8), budget=Budget(50))
    target.predict(digits_test.x[:40])
    with pytest.raises(BudgetExceeded):
        target.predict(digits_test.x[:20])
    assert target.counter.queries == 40


def test_config_from_toml_and_routing(server: str, digits_test: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "ep.toml"
    path.write_text('[endpoint]\nmethod = "POST"\ninput_field = "inputs"\noutput_path = "scores"\nbatch_size = 8\n')
    config = load_endpoint_config(path, url=f"{server}/predict")
    assert config.batch_size == 8 and config.url.endswith("/predict")
    target = load_target(f"{server}/predict", input_shape=(1, 8, 8), endpoint_config=path)
    assert isinstance(target, HttpTarget)
    path.write_text('[endpoint]\nurl = "ftp://x"\n')
    with pytest.raises(InputError, match="must start with http"):
        load_endpoint_config(path)
    path.write_text("[endpoint]\nbatchsize = 3\n")
    with pytest.raises(InputError, match="Unknown key"):
        load_endpoint_config(path, url=f"{server}/predict")


def test_cli_audit_over_http_end_to_end(
    server: str, digits_test: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_npz(digits_test.subset(slice(0, 10)), tmp_path / "d.npz")
    (tmp_path / "ep.toml").write_text('[endpoint]\noutput_path = "scores"\nbatch_size = 256\n')
    base = [
        "audit",
        "robustness",
        "--model",
        f"{server}/predict",
        "--endpoint-config",
        str(tmp_path / "ep.toml"),
        "--data",
        str(tmp_path / "d.npz"),
        "--eps",
        "0.2",
        "--attacks",
        "square,hsja",
    ]
    square_only = [*base[:-1], "square"]
    code = main([*square_only, "--max-queries", "200000", "--out", str(tmp_path / "ok")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((tmp_path / "ok" / "report.json").read_text())
    rows = report["results"]["robustness"]
    assert [row["attack"] for row in rows] == ["square"] and rows[0]["attack_success_rate"] >= 0.5
    assert report["assets"][0]["details"]["capabilities"] == ["labels_only", "scores"]
    # A budget reached mid-attack: the results so far are written, labelled partial, and the exit code is 2.
    code = main([*base, "--max-queries", "1500", "--out", str(tmp_path / "partial")])
    captured = capsys.readouterr()
    assert code == 2 and "partial" in captured.err
    rows = json.loads((tmp_path / "partial" / "report.json").read_text())["results"]["robustness"]
    assert {row["attack"] for row in rows} == {"square", "hsja", "worst-case"}
    assert all(row["partial"] for row in rows)
    # A dead endpoint: one clear line, exit code 2.
    code = main([*base[:3], "http://127.0.0.1:9/predict", *base[4:], "--out", str(tmp_path / "dead")])
    assert code == 2 and "unavailable" in capsys.readouterr().err
