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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from hoplon.core.errors import InputError
from hoplon.gateway.config import GatewayConfig, ModelConfig, UpstreamTlsConfig, load_config
from hoplon.gateway.firewall import ASGIApp, Firewall, Receive, Scope, Send
from hoplon.gateway.protocol import BadRequest, ParsedInput, parse_inputs, read_body

if TYPE_CHECKING:
    from hoplon.gateway.routing import RegistryRouter

__all__ = ["build_gateway", "inprocess_app", "proxy_app", "registry_app", "serve"]

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
ENV_REGISTRY = "HOPLON_GATEWAY_REGISTRY"


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


# The model apps sit behind the firewall, whose admission applies the configured body limit; this bound keeps
# an app used on its own (``inprocess_app``/``proxy_app`` without ``Firewall``) from reading without end.
MAX_APP_BODY = 64 << 20


async def _read_body(receive: Receive) -> bytes:
    return await read_body(receive, MAX_APP_BODY)


def inprocess_app(targets: Mapping[str, Any], *, versions: Mapping[str, str] | None = None) -> ASGIApp:
    """A KServe v2 app over hoplon targets (``predict(x) -> scores``); logits are turned into probabilities."""
    versions = dict(versions or {})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        name = await _v2_route(scope, send, lambda n: n in targets)
        if name is None:
            return
        target, version = targets[name], versions.get(name, "1")
        if scope["method"] == "GET":
            await _respond(send, 200, _metadata(name, version, target))
            return
        await _infer(scope, receive, send, name, version, target)

    return app


def registry_app(router: RegistryRouter) -> ASGIApp:
    """A KServe v2 app over a model registry: each request served by the digest its model's alias resolves to.

    The caller's identity (``hoplon.identity`` in the scope, set by the firewall) keys the canary share; the
    digest actually served goes back to the firewall's audit record through ``hoplon.served``.
    """
    from hoplon.gateway.routing import RouteError

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            router.start()  # poll the index and the served blobs from start-up, not from the first request
            await _lifespan(receive, send)
            router.stop()
            return
        router.start()
        name = await _v2_route(scope, send, lambda n: n in router.state.data["aliases"])
        if name is None:
            return
        try:
            route = await router.resolve(name, str(scope.get("hoplon.identity") or ""))
        except RouteError as exc:
            await _respond(send, exc.status, {"error": {"code": exc.code, "message": str(exc)}})
            return
        served = scope.get("hoplon.served")
        if isinstance(served, dict):
            served["model_digest"] = route.digest or f"kill:{route.kill.mode if route.kill else '-'}"
        if route.kill is not None:
            if route.kill.mode == "deny":
                message = f"Model {name!r} is switched off."
                await _respond(send, 503, {"error": {"code": "model_killed", "message": message}})
                return
            try:
                await _read_body(receive)
            except BadRequest as exc:
                await _respond(send, exc.status, {"error": {"code": exc.reason, "message": str(exc)}})
                return
            doc = {"model_name": name, "model_version": "fallback", "kill_switch": "fallback"}
            await _respond(send, 200, {**doc, "answer": route.kill.answer})
            return
        assert route.digest is not None
        if scope["method"] == "GET":
            await _respond(send, 200, _metadata(name, route.digest, route.target))
            return
        await _infer(scope, receive, send, name, route.digest, route.target)

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def _v2_route(scope: Scope, send: Send, known: Callable[[str], bool]) -> str | None:
    """The model name of a v2 model request, or ``None`` once an answer (server metadata, 404, 405) is sent."""
    path: str = scope["path"].rstrip("/")
    method: str = scope["method"]
    parts = path.split("/")
    if path == "/v2":
        await _respond(send, 200, {"name": "hoplon", "version": "1", "extensions": []})
        return None
    if len(parts) < 4 or parts[:3] != ["", "v2", "models"] or not known(parts[3]):
        await _respond(send, 404, {"error": "No such model."})
        return None
    if method == "GET" and len(parts) == 4:
        return parts[3]
    if method != "POST" or parts[-1] != "infer":
        await _respond(send, 405, {"error": "Use POST /v2/models/{name}/infer."})
        return None
    return parts[3]


def _metadata(name: str, version: str, target: Any) -> dict[str, Any]:
    return {
        "name": name,
        "versions": [version],
        "platform": "hoplon",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *target.input_spec.shape]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, target.n_classes]}],
    }


async def _infer(scope: Scope, receive: Receive, send: Send, name: str, version: str, target: Any) -> None:
    import torch

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
            "model_version": version,
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


def proxy_app(
    url: str,
    *,
    timeout_s: float = 10.0,
    paths: Mapping[str, str] | None = None,
    tls: UpstreamTlsConfig | None = None,
) -> ASGIApp:
    """Forward requests to the upstream model server at ``url`` (credentials are never forwarded)."""
    from hoplon.gateway._upstream import UpstreamError, UpstreamPool

    paths = dict(paths or {})
    pool = UpstreamPool(url, timeout_s=timeout_s, tls=tls)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        try:
            body = await _read_body(receive)
        except BadRequest as exc:
            await _respond(send, exc.status, {"error": {"code": exc.reason, "message": str(exc)}})
            return
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
    registry: str | Path | None = None,
) -> Firewall:
    """The in-process gateway (``model``, models with paths, or a ``registry``) or the sidecar (``upstream.url``)."""
    state = Path(state_dir) if state_dir is not None else None
    cfg = config if isinstance(config, GatewayConfig) else load_config(config, state_dir=state)
    adjust = None
    router = None
    if registry is not None or cfg.raw.get("registry"):
        if model is not None:
            raise InputError("--model and --registry are exclusive: a registry gateway serves the registry's models.")
        router = _registry_router(cfg, Path(registry) if registry is not None else None, input_shape)
        shapes = {n: list(router.shape(n) or ()) for n in router.names()}

        def adjust(c: GatewayConfig) -> GatewayConfig:
            """Every registry model is a served model (its sample shape for validation), also after a reload."""
            missing = {n: {"input_shape": shape} for n, shape in shapes.items() if n not in c.models}
            if not missing:
                return c
            from hoplon.gateway.config import parse_config

            raw = {k: v for k, v in c.raw.items() if k != "server"}
            raw["models"] = {**dict(c.raw.get("models") or {}), **missing}
            base = Path(c.source).resolve().parent if Path(c.source).is_file() else None
            return parse_config(raw, source=c.source, base=base, state_dir=c.state_dir)

        cfg = adjust(cfg)
        inner: ASGIApp = registry_app(router)
        digests: dict[str, str] = {}
    elif model is not None or any(m.path for m in cfg.models.values()):
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
        inner = proxy_app(cfg.upstream_url, timeout_s=cfg.upstream_timeout_s, paths=paths, tls=cfg.upstream_tls)
        digests = {}
    else:
        raise InputError("Nothing to serve: pass --model, give models a path, or set upstream.url in the config.")
    source: str | Path | GatewayConfig = config if isinstance(config, (str, Path)) else cfg
    firewall = Firewall(inner, source, model_digests=digests, state_dir=state, adjust=adjust)
    firewall.admin.router = router
    return firewall


def _registry_router(cfg: GatewayConfig, root: Path | None, input_shape: tuple[int, ...] | None) -> RegistryRouter:
    """The registry router from ``--registry`` (which wins) or the config's ``registry`` section."""
    from hoplon.gateway.profile import Profile
    from hoplon.gateway.routing import RegistryRouter

    spec: dict[str, Any] = dict(cfg.raw.get("registry") or {})
    base = Path(cfg.source).resolve().parent if Path(cfg.source).is_file() else Path.cwd()
    if root is None:
        root = Path(spec["root"])
        root = root if root.is_absolute() else base / root
    public_key = spec.get("public_key")
    if public_key is not None and not Path(public_key).is_absolute():
        public_key = str(base / public_key)
    shapes: dict[str, tuple[int, ...]] = {}
    for name, m in cfg.models.items():
        shape = m.input_shape or (Profile.from_file(m.profile).shape if m.profile else None)
        if shape is not None:
            shapes[name] = tuple(shape)
    return RegistryRouter(
        root,
        shapes=shapes,
        default_shape=input_shape,
        require_signature=bool(spec.get("require_signature", False)),
        public_key=public_key,
        poll_s=float(spec.get("poll_s", 1.0)),
        verify_s=float(spec.get("verify_s", 60.0)),
        max_cached=int(spec.get("max_cached", 8)),
    )


def app_from_env() -> Firewall:
    """The uvicorn factory each worker calls (``--workers N``): config, model and state from the environment."""
    shape = os.environ.get(ENV_SHAPE)
    return build_gateway(
        os.environ.get(ENV_CONFIG) or None,
        model=os.environ.get(ENV_MODEL) or None,
        input_shape=tuple(int(s) for s in shape.split(",")) if shape else None,
        state_dir=os.environ.get(ENV_STATE) or None,
        registry=os.environ.get(ENV_REGISTRY) or None,
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
    registry: Path | None = None,
) -> None:
    """Run the gateway under uvicorn (one process, or ``workers`` processes through the env factory)."""
    import uvicorn

    cfg = load_config(config_path, state_dir=state_dir)
    n = workers or cfg.workers
    check_workers(cfg, n)
    host, port = host or cfg.host, port if port is not None else cfg.port
    if n == 1:
        app = build_gateway(
            config_path if config_path else cfg,
            model=model,
            input_shape=input_shape,
            state_dir=state_dir,
            registry=registry,
        )
        try:
            uvicorn.run(
                app, host=host, port=port, log_level="warning", access_log=False, lifespan="auto", proxy_headers=False
            )
        finally:
            app.close()
        return
    os.environ[ENV_CONFIG] = str(config_path or "")
    os.environ[ENV_MODEL] = str(model or "")
    os.environ[ENV_STATE] = str(state_dir or "")
    os.environ[ENV_SHAPE] = ",".join(str(d) for d in input_shape) if input_shape else ""
    os.environ[ENV_REGISTRY] = str(registry or "")
    from hoplon.gateway.workers import prepare_metrics_dir, prepare_state, run_workers

    prepare_state(cfg)
    prepare_metrics_dir(cfg.state_dir)  # before the workers start: they aggregate their metrics there
    run_workers(
        uvicorn.Config(
            "hoplon.gateway.workers:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=n,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # X-Forwarded-For is the firewall's (server.trusted_proxies), never uvicorn's
        )
    )
