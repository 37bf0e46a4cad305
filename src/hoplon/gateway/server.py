"""The three forms' model apps and ``serve``: in-process (Open Inference Protocol v2) and sidecar proxy.

``inprocess_app(targets)`` serves hoplon targets as KServe v2 (``POST /v2/models/{name}/infer``,
``GET /v2/models/{name}``); ``proxy_app(url)`` forwards to an upstream model server on loopback. Both are
raw ASGI apps that :class:`~hoplon.gateway.Firewall` wraps; ``build_gateway`` puts the pieces together from a
config, and ``serve`` runs it under uvicorn.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from hoplon.core.errors import InputError
from hoplon.gateway.config import GatewayConfig, ModelConfig, load_config
from hoplon.gateway.firewall import ASGIApp, Firewall, Message, Receive, Scope, Send
from hoplon.gateway.protocol import BadRequest, ParsedInput, parse_inputs

__all__ = ["build_gateway", "inprocess_app", "proxy_app", "serve"]

log = logging.getLogger("hoplon.gateway")
_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"upgrade",
    b"te",
    b"trailer",
    b"proxy-authorization",
    b"proxy-authenticate",
    b"host",
    b"content-length",
    b"x-api-key",
    b"authorization",
}
ENV_CONFIG, ENV_MODEL, ENV_STATE = "HOPLON_GATEWAY_CONFIG", "HOPLON_GATEWAY_MODEL", "HOPLON_GATEWAY_STATE_DIR"
ENV_SHAPE = "HOPLON_GATEWAY_INPUT_SHAPE"


async def _respond(send: Send, status: int, doc: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(doc, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message: Message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def inprocess_app(targets: Mapping[str, Any], *, versions: Mapping[str, str] | None = None) -> ASGIApp:
    """A KServe v2 app over hoplon targets (``predict(x) -> scores``); logits are turned into probabilities."""
    import torch

    versions = dict(versions or {})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"].rstrip("/"), scope["method"]
        parts = path.split("/")
        if path == "/v2":
            await _respond(send, 200, {"name": "hoplon", "version": "1", "extensions": []})
            return
        if len(parts) < 4 or parts[:3] != ["", "v2", "models"] or parts[3] not in targets:
            await _respond(send, 404, {"error": "No such model."})
            return
        name, target = parts[3], targets[parts[3]]
        if method == "GET" and len(parts) == 4:
            await _respond(
                send,
                200,
                {
                    "name": name,
                    "versions": [versions.get(name, "1")],
                    "platform": "hoplon",
                    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *target.input_spec.shape]}],
                    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, target.n_classes]}],
                },
            )
            return
        if method != "POST" or parts[-1] != "infer":
            await _respond(send, 405, {"error": "Use POST /v2/models/{name}/infer."})
            return
        parsed: ParsedInput | None = scope.get("hoplon.input")
        if parsed is None:
            try:
                parsed = parse_inputs(await _read_body(receive), max_elements=1 << 24)
            except BadRequest as exc:
                await _respond(send, exc.status, {"error": str(exc)})
                return
        x = torch.as_tensor(np.ascontiguousarray(parsed.array, dtype=np.float32))
        if tuple(x.shape[1:]) != tuple(target.input_spec.shape):
            await _respond(send, 400, {"error": f"Samples must have shape {list(target.input_spec.shape)}."})
            return
        scores = await asyncio.to_thread(_predict, target, x)
        await _respond(
            send,
            200,
            {
                "model_name": name,
                "model_version": versions.get(name, "1"),
                "id": uuid.uuid4().hex,
                "outputs": [
                    {
                        "name": "probabilities",
                        "datatype": "FP32",
                        "shape": list(scores.shape),
                        "data": scores.ravel().tolist(),
                    }
                ],
            },
        )

    return app


def _predict(target: Any, x: Any) -> np.ndarray:
    import torch

    with torch.no_grad():
        scores = target.predict(x)
        if getattr(target, "score_kind", "logits") == "logits":
            scores = torch.softmax(scores, dim=1)
    out: np.ndarray = scores.detach().cpu().numpy().astype(np.float64)
    return out


def _require_loopback(url: str, allow_remote: bool) -> None:
    host = urlparse(url).hostname or ""
    if allow_remote or host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise InputError(
        f"The upstream {url} is not on loopback; a sidecar talks to its model on 127.0.0.1. "
        "Set upstream.allow_remote: true if the network between them is trusted."
    )


def proxy_app(url: str, *, timeout_s: float = 10.0, paths: Mapping[str, str] | None = None) -> ASGIApp:
    """Forward requests to the upstream model server at ``url`` (credentials are never forwarded)."""
    from hoplon.gateway._upstream import UpstreamError, UpstreamPool

    paths = dict(paths or {})
    pool = UpstreamPool(url, timeout_s=timeout_s)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = await _read_body(receive)
        headers = [(k.lower(), v) for k, v in scope.get("headers", []) if k.lower() not in _HOP_BY_HOP]
        target: str = paths.get(scope["path"]) or scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            status, out, content = await pool.request(
                scope["method"], target + (f"?{query}" if query else ""), headers, body
            )
        except UpstreamError as exc:
            log.error("upstream %s failed: %s", url, exc)
            await _respond(send, 502, {"error": "The upstream model server failed."})
            return
        out = [(k, v) for k, v in out if k not in _HOP_BY_HOP]
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": content})

    return app


def _load_models(
    config: GatewayConfig, model_path: Path | None, input_shape: tuple[int, ...] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    from hoplon.gateway.profile import Profile
    from hoplon.targets import file_digest, load_target

    specs = dict(config.models)
    if model_path is not None:
        if len(specs) > 1:
            raise InputError("--model serves one model; the config lists several (give each a path instead).")
        name, spec = next(iter(specs.items())) if specs else (model_path.stem, ModelConfig(model_path.stem))
        specs = {name: ModelConfig(name, str(model_path), input_shape or spec.input_shape, spec.version, spec.profile)}
    targets, digests = {}, {}
    for name, spec in specs.items():
        if spec.path is None:
            raise InputError(f"Model {name!r} has no path; the in-process form needs the model file.")
        shape = spec.input_shape or (Profile.from_file(spec.profile).shape if spec.profile else None)
        if shape is None:
            raise InputError(
                f"Model {name!r} needs its sample shape: --input-shape 1,8,8, or input_shape in the config."
            )
        targets[name] = load_target(spec.path, input_shape=tuple(shape))
        digests[name] = file_digest(spec.path)
    return targets, digests


def build_gateway(
    config: str | Path | GatewayConfig | None = None,
    *,
    model: str | Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    state_dir: str | Path | None = None,
) -> Firewall:
    """The in-process gateway (``model`` or models with paths) or the sidecar (``upstream.url``)."""
    state = Path(state_dir) if state_dir is not None else None
    cfg = config if isinstance(config, GatewayConfig) else load_config(config, state_dir=state)
    adjust = None
    if model is not None or any(m.path for m in cfg.models.values()):
        targets, digests = _load_models(cfg, Path(model) if model is not None else None, input_shape)
        if model is not None:
            name = next(iter(targets))
            shape = list(targets[name].input_spec.shape)

            def adjust(c: GatewayConfig) -> GatewayConfig:
                """``--model`` names the served model when the config lists none (also after a reload)."""
                if c.models:
                    return c
                from hoplon.gateway.config import parse_config

                raw = {k: v for k, v in c.raw.items() if k != "server"}
                raw["models"] = {name: {"input_shape": shape}}
                return parse_config(raw, source=c.source, state_dir=c.state_dir)

            cfg = adjust(cfg)
        inner = inprocess_app(targets, versions={n: m.version for n, m in cfg.models.items()})
    elif cfg.upstream_url:
        _require_loopback(cfg.upstream_url, cfg.upstream_allow_remote)
        paths = {f"/v2/models/{n}/infer": m.upstream_path for n, m in cfg.models.items() if m.upstream_path}
        inner, digests = proxy_app(cfg.upstream_url, timeout_s=cfg.upstream_timeout_s, paths=paths), {}
    else:
        raise InputError("Nothing to serve: pass --model, give models a path, or set upstream.url in the config.")
    source: str | Path | GatewayConfig = config if isinstance(config, (str, Path)) else cfg
    return Firewall(inner, source, model_digests=digests, state_dir=state, adjust=adjust)


def app_from_env() -> Firewall:
    """The uvicorn factory each worker calls (``--workers N``): config, model and state from the environment."""
    shape = os.environ.get(ENV_SHAPE)
    return build_gateway(
        os.environ.get(ENV_CONFIG) or None,
        model=os.environ.get(ENV_MODEL) or None,
        input_shape=tuple(int(s) for s in shape.split(",")) if shape else None,
        state_dir=os.environ.get(ENV_STATE) or None,
    )


def check_workers(config: GatewayConfig, workers: int) -> None:
    """Refuse several workers with in-memory limits: each worker would count alone, multiplying every limit."""
    if workers > 1 and config.rate_limits.mode != "off" and config.rate_limits.storage.startswith("memory"):
        raise InputError(
            f"{workers} workers with memory:// rate-limit storage would each count alone, so every limit would "
            f"be {workers}x too high. Set stages.rate_limits.storage to redis://… (or run one worker)."
        )


def serve(
    config_path: Path | None,
    *,
    model: Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    state_dir: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> None:
    """Run the gateway under uvicorn (one process, or ``workers`` processes through the env factory)."""
    import uvicorn

    cfg = load_config(config_path, state_dir=state_dir)
    n = workers or cfg.workers
    check_workers(cfg, n)
    host, port = host or cfg.host, port if port is not None else cfg.port
    if n == 1:
        app = build_gateway(
            config_path if config_path else cfg, model=model, input_shape=input_shape, state_dir=state_dir
        )
        try:
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="auto")
        finally:
            app.close()
        return
    os.environ[ENV_CONFIG] = str(config_path or "")
    os.environ[ENV_MODEL] = str(model or "")
    os.environ[ENV_STATE] = str(state_dir or "")
    os.environ[ENV_SHAPE] = ",".join(str(d) for d in input_shape) if input_shape else ""
    uvicorn.run(
        "hoplon.gateway.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=n,
        log_level="warning",
        access_log=False,
    )
