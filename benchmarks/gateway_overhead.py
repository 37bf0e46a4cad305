"""What hoplon's model firewall costs: interleaved A/B on loopback, bare model server vs the same through hoplon.

Three pairs, each server its own process (one uvicorn worker), the load generator in this process:

* middleware: a Starlette KServe-v2 app (a 64→10 linear softmax model in numpy) vs ``Firewall(app)``;
* in-process: hoplon's v2 app over a TorchScript digits CNN vs the same wrapped by the firewall
  (what ``hoplon serve --model`` runs);
* sidecar: the Starlette app called directly vs through ``hoplon serve --config`` forwarding to it;
* floor (a reference, not hoplon): the Starlette app vs the same behind a pass-through middleware that only
  buffers the request and parses it and the answer with orjson — the least any inspecting middleware
  does, and so a bound on what the throughput target can ask of one written in Python.

The firewall runs its full default chain: API key, rate limits (memory, set high enough not to refuse),
validation against a profile, output rounding, an audit record per request (SQLite, group commit) and
metrics. Rounds alternate bare/firewall (ABBA) at 1 and 32 connections; per run: throughput, p50/p99 latency
and the server's CPU time per request (``/proc/PID/stat`` utime+stime delta over the requests answered).

Then the audit checks: 60 s (``--soak-s``) at 32 connections through the middleware form, counting every
response against the ledger's entries after a clean shutdown; and a ``kill -9`` in the middle of load with
``durable: true`` and ``durable: false``, counting responses the clients received against the records that
survived.

The load generator is a minimal HTTP/1.1 keep-alive client on raw asyncio sockets (tens of µs per request),
so the client does not hide the server's cost. On a shared 2-core machine, numbers move with the
neighbours' load; the interleaving keeps the A/B ratios fair.

Run from the repository root:  .venv/bin/python benchmarks/gateway_overhead.py [--quick]
Writes ``benchmarks/results/gateway_overhead.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- servers


def starlette_app(weights: Path) -> Any:
    """The bare model server: KServe v2 infer for a linear softmax model, as a plain Starlette app."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    w = np.load(weights)
    coef, bias = w["coef"], w["bias"]

    async def infer(request: Request) -> JSONResponse:
        doc = await request.json()
        t = doc["inputs"][0]
        x = np.asarray(t["data"], dtype=np.float64).reshape(t["shape"]).reshape(t["shape"][0], -1)
        z = x @ coef + bias
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out = {"name": "probabilities", "shape": list(p.shape), "datatype": "FP64", "data": p.ravel().tolist()}
        return JSONResponse({"model_name": "m", "outputs": [out]})

    return Starlette(routes=[Route("/v2/models/m/infer", infer, methods=["POST"])])


def floor_middleware(app: Any) -> Any:
    """The least any inspecting middleware does: buffer the request, parse it and the model's answer (orjson)
    and write the answer back. No checks, no record: the reference that bounds the throughput target."""
    import orjson

    async def floor(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        orjson.loads(body)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            message: dict[str, Any] = await receive()
            return message

        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                parts.append(message.get("body", b""))

        await app(scope, replay, capture)
        answer = orjson.dumps(orjson.loads(b"".join(parts)))
        headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(answer)).encode()))
        await send({"type": "http.response.start", "status": start.get("status", 500), "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return floor


def serve(kind: str, port: int, work: Path) -> None:
    """Child process: run one server variant."""
    import uvicorn

    from hoplon.gateway import Firewall, build_gateway, inprocess_app
    from hoplon.targets import load_target

    config = work / f"{kind}.yaml"
    if kind == "bare-starlette":
        app: Any = starlette_app(work / "linear.npz")
    elif kind == "floor":
        app = floor_middleware(starlette_app(work / "linear.npz"))
    elif kind == "middleware":
        app = Firewall(starlette_app(work / "linear.npz"), config, state_dir=work / "state-middleware")
    elif kind == "bare-inprocess":
        app = inprocess_app({"m": load_target(work / "digits.pt", input_shape=(1, 8, 8))})
    elif kind in ("inprocess", "sidecar") or kind.startswith("durable"):
        app = build_gateway(config, state_dir=work / f"state-{kind}")
    else:
        raise SystemExit(f"unknown server {kind}")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="on")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it has exited meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/<pid>/task/<tid>/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


class Server:
    def __init__(self, kind: str, work: Path) -> None:
        self.kind = kind
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--port", str(self.port), "--work", str(work)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
            time.sleep(0.05)
        raise RuntimeError(f"{kind} did not start")

    def cpu_s(self) -> float:
        """CPU seconds of the server and every process under it (the ledger's writer process among them)."""
        return sum(_cpu_s(pid) for pid in _process_tree(self.proc.pid))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)


# ---------------------------------------------------------------------------------------------- load


def _request(body: bytes, key: str | None) -> bytes:
    head = (
        "POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + (f"X-API-Key: {key}\r\n" if key else "") + "\r\n"
    )
    return head.encode() + body


async def _connection(port: int, payload: bytes, stop_at: float, latencies: list[float], codes: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            writer.write(payload)
            status_line = await reader.readline()
            if not status_line:
                return
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t)
            codes.append(int(status_line.split()[1]))
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


def load(port: int, payload: bytes, *, connections: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    codes: list[int] = []

    async def run() -> float:
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(_connection(port, payload, stop_at, latencies, codes) for _ in range(connections)))
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    lat = np.asarray(latencies) * 1e6
    return {
        "requests": len(latencies),
        "ok": sum(1 for c in codes if c == 200),
        "codes": {str(c): codes.count(c) for c in sorted(set(codes))},
        "rps": len(latencies) / elapsed,
        "p50_us": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_us": float(np.percentile(lat, 99)) if len(lat) else None,
    }


def measured(server: Server, payload: bytes, connections: int, seconds: float) -> dict[str, Any]:
    load(server.port, payload, connections=connections, seconds=0.5)  # warm-up
    before = server.cpu_s()
    result = load(server.port, payload, connections=connections, seconds=seconds)
    result["cpu_us_per_request"] = (server.cpu_s() - before) / max(result["requests"], 1) * 1e6
    return result


# ---------------------------------------------------------------------------------------------- setup


def prepare(work: Path) -> tuple[bytes, str]:
    """Models, profile, configs and an API key in ``work``; return the request body and the key."""
    import torch

    from hoplon.data import demo
    from hoplon.gateway import KeyStore, build_profile
    from hoplon.models import digits_cnn, train_classifier
    from hoplon.targets.torch_target import quiet_torchscript

    train = demo("digits", split="train")
    x = train.x.numpy().reshape(len(train.x), -1)
    y = train.y.numpy()
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=300).fit(x, y)
    np.savez(work / "linear.npz", coef=clf.coef_.T, bias=clf.intercept_)
    torch.manual_seed(0)
    cnn = digits_cnn()
    train_classifier(cnn, train.x, train.y, epochs=3, seed=0)
    cnn.eval()
    with quiet_torchscript(), torch.no_grad():
        torch.jit.save(torch.jit.trace(cnn, train.x[:1]), str(work / "digits.pt"))
    (work / "profile.json").write_text(json.dumps(build_profile(train.x.numpy(), max_categories=0)))
    high = {
        "per_identity": "1000000/second",
        "per_identity_model": "1000000/second",
        "per_source": "1000000/second",
        "daily_quota": 10**12,
    }
    stages: dict[str, Any] = {"rate_limits": high, "admission": {"max_batch": 64}, "audit": {"writer": WRITER[0]}}
    model = {"input_shape": [1, 8, 8], "profile": str(work / "profile.json")}

    def write(name: str, raw: dict[str, Any]) -> None:
        import yaml

        (work / f"{name}.yaml").write_text(yaml.safe_dump({"version": 1, **raw}))

    write("middleware", {"models": {"m": model}, "stages": stages})
    write("inprocess", {"models": {"m": {**model, "path": str(work / "digits.pt")}}, "stages": stages})
    for durable in (True, False):
        audit = {"durable": durable, "writer": WRITER[0]}
        write(f"durable-{str(durable).lower()}", {"models": {"m": model}, "stages": {**stages, "audit": audit}})
    key = ""
    for state in ("middleware", "inprocess", "sidecar", "durable-true", "durable-false"):
        store = KeyStore(work / f"state-{state}")
        if not key:
            key, _ = store.create("bench")
        else:  # the same key in every state folder
            (work / f"state-{state}").mkdir(parents=True, exist_ok=True)
            (work / f"state-{state}" / "keys.json").write_text((work / "state-middleware" / "keys.json").read_text())
    sample = train.x[:1].numpy()
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": list(sample.shape), "datatype": "FP32", "data": sample.ravel().tolist()}]}
    ).encode()
    return body, key


def sidecar_config(work: Path, upstream_port: int) -> None:
    import yaml

    raw = yaml.safe_load((work / "middleware.yaml").read_text())
    raw["upstream"] = {"url": f"http://127.0.0.1:{upstream_port}"}
    (work / "sidecar.yaml").write_text(yaml.safe_dump(raw))


def durable_config(work: Path, name: str, upstream_port: int) -> None:
    import yaml

    raw = yaml.safe_load((work / f"{name}.yaml").read_text())
    raw["upstream"] = {"url": f"http://127.0.0.1:{upstream_port}"}
    (work / f"{name}.yaml").write_text(yaml.safe_dump(raw))


def ledger_entries(db: Path) -> int:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0])
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------- main


FORMS = ("middleware", "floor", "sidecar", "in-process")
WRITER = ["process"]  # the audit writer the guarded servers use (``--audit-writer``)


def ab(
    work: Path, body: bytes, key: str, *, rounds: int, seconds: float, forms: tuple[str, ...] = FORMS
) -> dict[str, Any]:
    bare_upstream = Server("bare-starlette", work)
    sidecar_config(work, bare_upstream.port)
    pairs = {}
    if "middleware" in forms:
        pairs["middleware"] = (bare_upstream, Server("middleware", work))
    if "floor" in forms:
        pairs["floor"] = (bare_upstream, Server("floor", work))
    if "sidecar" in forms:
        pairs["sidecar"] = (bare_upstream, Server("sidecar", work))
    if "in-process" in forms:
        pairs["in-process"] = (Server("bare-inprocess", work), Server("inprocess", work))
    out: dict[str, Any] = {}
    try:
        for form, (bare, guarded) in pairs.items():
            for connections in (1, 32):
                runs: dict[str, list[dict[str, Any]]] = {"bare": [], "hoplon": []}
                for r in range(rounds):
                    order = [("bare", bare, None), ("hoplon", guarded, key)]
                    for name, server, k in order if r % 2 == 0 else reversed(order):
                        runs[name].append(measured(server, _request(body, k), connections, seconds))
                out[f"{form}@{connections}"] = {name: _summary(values) for name, values in runs.items()}
                print(_row(form, connections, out[f"{form}@{connections}"]), flush=True)
    finally:
        for bare, guarded in pairs.values():
            guarded.stop()
            bare.stop()
    return out


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in runs if r[key] is not None))

    return {
        "rps": med("rps"),
        "p50_us": med("p50_us"),
        "p99_us": med("p99_us"),
        "cpu_us_per_request": med("cpu_us_per_request"),
        "non_200": sum(r["requests"] - r["ok"] for r in runs),
        "runs": len(runs),
    }


def _row(form: str, connections: int, pair: dict[str, Any]) -> str:
    b, h = pair["bare"], pair["hoplon"]
    return (
        f"| {form} | {connections} | {b['rps']:.0f} | {h['rps']:.0f} | {h['rps'] / b['rps']:.1%} | "
        f"{b['p50_us']:.0f} / {b['p99_us']:.0f} | {h['p50_us']:.0f} / {h['p99_us']:.0f} | "
        f"{b['cpu_us_per_request']:.0f} | {h['cpu_us_per_request']:.0f} | "
        f"{h['cpu_us_per_request'] - b['cpu_us_per_request']:+.0f} |"
    )


def soak(work: Path, body: bytes, key: str, seconds: float) -> dict[str, Any]:
    """``seconds`` at 32 connections through the middleware form; every response must have its record."""
    import shutil

    shutil.rmtree(work / "state-middleware" / "audit.db", ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        (work / "state-middleware" / f"audit.db{suffix}").unlink(missing_ok=True)
    server = Server("middleware", work)
    result = load(server.port, _request(body, key), connections=32, seconds=seconds)
    server.stop()  # clean shutdown: lifespan flushes the ledger and signs the last checkpoint
    entries = ledger_entries(work / "state-middleware" / "audit.db")
    from hoplon.ledger import verify_url

    verified = verify_url(f"sqlite:///{work / 'state-middleware' / 'audit.db'}")
    return {
        "seconds": seconds,
        "responses": result["requests"],
        "records": entries,
        "lost": result["requests"] - entries,
        "rps": result["rps"],
        "verify_ok": verified.ok,
    }


def crash(work: Path, body: bytes, key: str, upstream_port: int) -> dict[str, Any]:
    """kill -9 a sidecar gateway in the middle of load; count responses received vs records that survived."""
    out = {}
    for name in ("durable-true", "durable-false"):
        durable_config(work, name, upstream_port)
        server = Server(name, work)
        latencies: list[float] = []
        codes: list[int] = []

        async def run(server: Server, latencies: list[float], codes: list[int], tree: list[int]) -> None:
            stop_at = time.perf_counter() + 30
            payload = _request(body, key)
            tasks = [
                asyncio.create_task(_connection(server.port, payload, stop_at, latencies, codes)) for _ in range(32)
            ]
            await asyncio.sleep(2.0)
            tree.extend(_process_tree(server.proc.pid))
            os.kill(server.proc.pid, signal.SIGKILL)
            await asyncio.gather(*tasks)

        tree: list[int] = []
        started = time.perf_counter()
        asyncio.run(run(server, latencies, codes, tree))
        server.proc.wait()
        # The ledger's writer process outlives the server: it commits what it received, then ends.
        deadline = time.time() + 60
        while any(Path(f"/proc/{pid}").exists() for pid in tree[1:]) and time.time() < deadline:
            time.sleep(0.05)
        answered = sum(1 for c in codes if c == 200)
        records = ledger_entries(work / f"state-{name}" / "audit.db")
        rps = answered / max(time.perf_counter() - started, 1e-9)
        out[name] = {
            "responses_received": answered,
            "records": records,
            "missing_records": max(0, answered - records),
            "missing_window_ms": max(0, answered - records) / max(rps, 1e-9) * 1000,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve")
    parser.add_argument("--port", type=int)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s, 15 s soak")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--soak-s", type=float, default=60.0)
    parser.add_argument("--forms", default=",".join(FORMS), help=f"A/B only these forms (default: {','.join(FORMS)})")
    parser.add_argument("--ab-only", action="store_true", help="skip the soak and the kill -9 checks")
    parser.add_argument(
        "--audit-writer", choices=("process", "thread"), default="process", help="the ledger writer (default process)"
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.work)
        return
    if args.quick:
        args.rounds, args.seconds, args.soak_s = 2, 2.0, 15.0
    WRITER[0] = args.audit_writer
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hoplon-bench-") as tmp:
        work = Path(tmp)
        body, key = prepare(work)
        print(
            "| form | conns | bare req/s | hoplon req/s | kept | bare p50/p99 µs | hoplon p50/p99 µs | "
            "bare CPU µs/req | hoplon CPU µs/req | added CPU µs |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
        forms = tuple(f for f in args.forms.split(",") if f)
        results: dict[str, Any] = {}
        if forms:  # --forms "": the audit checks alone
            results["ab"] = ab(work, body, key, rounds=args.rounds, seconds=args.seconds, forms=forms)
        if args.ab_only:
            return
        results["soak"] = soak(work, body, key, args.soak_s)
        print(f"soak: {results['soak']}", flush=True)
        upstream = Server("bare-starlette", work)
        try:
            results["crash"] = crash(work, body, key, upstream.port)
        finally:
            upstream.stop()
        print(f"crash: {results['crash']}", flush=True)
    results["settings"] = {
        "rounds": args.rounds,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
    }
    (RESULTS / "gateway_overhead.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
