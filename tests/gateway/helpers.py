"""Helpers for the gateway tests: YAML configs, direct ASGI calls, uvicorn servers, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hoplon.gateway.firewall import ASGIApp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, raw: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, **raw}))
    return path


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def acall(
    app: ASGIApp,
    method: str,
    path: str,
    *,
    body: bytes | Mapping[str, Any] = b"",
    headers: Mapping[str, str] | None = None,
    client: str = "127.0.0.1",
) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    hdrs.append((b"content-length", str(len(raw)).encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": hdrs,
        "client": (client, 50000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "http_version": "1.1",
    }
    sent = False
    out: dict[str, Any] = {"chunks": []}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        else:
            out["chunks"].append(message.get("body", b""))

    await app(scope, receive, send)
    return Reply(out["status"], out["headers"], b"".join(out["chunks"]))


def call(app: ASGIApp, method: str, path: str, **kwargs: Any) -> Reply:
    return asyncio.run(acall(app, method, path, **kwargs))


def v2(rows: Any) -> dict[str, Any]:
    import numpy as np

    array = np.asarray(rows, dtype=np.float32)
    return {
        "inputs": [{"name": "input", "shape": list(array.shape), "datatype": "FP32", "data": array.ravel().tolist()}]
    }


@contextlib.contextmanager
def uvicorn_server(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 in a thread; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def require_binary(name: str, *candidates: str) -> str:
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI (apt-get install it; .ci/run does).")
    pytest.skip(f"{name} is not installed (outside CI this test skips; apt-get install it to run it)")


def wait_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    binary = require_binary("redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@contextlib.contextmanager
def postgres_server(tmp: Path | None = None) -> Iterator[str]:
    """initdb + pg_ctl in a fresh folder (as the postgres user when run as root); yield the URL."""
    import tempfile

    initdb = require_binary("initdb", str(PG_BIN / "initdb"))
    pg_ctl = str(Path(initdb).resolve().with_name("pg_ctl"))
    as_postgres: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # pytest's tmp folders are private to root; the server's folder must belong to its own user.
    root = Path(tempfile.mkdtemp(prefix="hoplon-pg-"))
    root.chmod(0o755)
    data = root / "data"
    if as_postgres:
        shutil.chown(root, "postgres")
    port = free_port()
    try:
        subprocess.run(
            [*as_postgres, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_postgres,
                pg_ctl,
                "-D",
                str(data),
                "-o",
                f"-p {port} -k {root} -c fsync=off -c listen_addresses=127.0.0.1",
                "-l",
                str(root / "pg.log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')[-500:]}") from None
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


_SHARED: dict[str, Any] = {}


def _stop_shared() -> None:
    for name in ("pg", "redis"):
        ctx = _SHARED.pop(name, None)
        if ctx is not None:
            with contextlib.suppress(Exception):
                ctx.__exit__(None, None, None)


def shared_postgres() -> str:
    """One PostgreSQL server per test process (started on first use, stopped at exit)."""
    import atexit

    if "pg_url" not in _SHARED:
        ctx = postgres_server()
        _SHARED["pg_url"] = ctx.__enter__()
        _SHARED["pg"] = ctx
        atexit.register(_stop_shared)
    return str(_SHARED["pg_url"])


def shared_redis() -> str:
    import atexit

    if "redis_url" not in _SHARED:
        ctx = redis_server()
        _SHARED["redis_url"], _ = ctx.__enter__()
        _SHARED["redis"] = ctx
        atexit.register(_stop_shared)
    return str(_SHARED["redis_url"])


def fresh_database(base_url: str) -> str:
    """A new empty database on the shared server; its URL."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + "/" + name
