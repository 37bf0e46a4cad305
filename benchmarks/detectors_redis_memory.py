"""Redis memory of the detect stage's shared state (``detect.storage: redis://…``), per 10,000 identities.

Starts a private ``redis-server`` (no persistence), runs the shipped ``examples/firewall/enforce.yaml``
detector settings over ``--real`` identities × ``--queries`` queries each (8×8 inputs, all five detectors,
every ring filled: the worst case per identity), then copies those identities' state hashes to
``--identities`` keys (with their TTL and index entries, as the gateway writes them) and reads
``INFO memory``'s ``used_memory`` before and after. The shared fingerprint stream (``capacity`` entries)
is measured apart: it does not grow with identities.

Queries are uniform random 8×8 rows in [0, 1] with random class probabilities; PRADA's growing set grows
on every query whose distance exceeds the running threshold, so 250 such queries fill it (128 rows).

Run from the repository root:  .venv/bin/python benchmarks/detectors_redis_memory.py
Writes ``benchmarks/results/detectors_redis_memory.json`` and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis
import yaml

from hoplon.gateway.detectors import DetectStage

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _used(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--real", type=int, default=20, help="identities actually run through the detectors")
    parser.add_argument("--queries", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client: Any = redis.Redis.from_url(url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        spec = yaml.safe_load((ROOT / "examples/firewall/enforce.yaml").read_text())["stages"]["detect"]
        spec = {**spec, "inline": True, "storage": url, "max_identities": args.identities + args.real}
        stage = DetectStage(spec)
        rng = np.random.default_rng(args.seed)
        t = time.perf_counter()
        for _ in range(args.queries):
            for i in range(args.real):
                probs = rng.dirichlet(np.ones(10), 1)
                body = json.dumps({"predictions": probs.tolist()}).encode()
                stage.record(f"real-{i:03d}", rng.random((1, 64)).astype(np.float32), body)
        observe_ms = (time.perf_counter() - t) * 1000 / (args.queries * args.real)
        stage.close()
        if stage.shared is None:
            raise SystemExit("the detect stage did not use Redis")
        prefix = stage.shared.prefix
        stream_bytes = int(client.memory_usage(f"{prefix}fp") or 0)
        real_keys = sorted(client.keys(f"{prefix}s:*"))
        states = [client.hgetall(k) for k in real_keys]
        blob_bytes = {name.decode(): len(value) for name, value in states[0].items()}
        before = _used(client)
        pipe = client.pipeline(transaction=False)
        for n in range(args.identities):
            key = f"{n:032x}"
            pipe.hset(f"{prefix}s:{key}", mapping=states[n % len(states)])
            pipe.pexpire(f"{prefix}s:{key}", int(float(spec.get("state_ttl_s", 86_400)) * 1000))
            pipe.zadd(f"{prefix}ids", {key: time.time()})
            if n % 500 == 499:
                pipe.execute()
        pipe.execute()
        after = _used(client)
        per_identity = (after - before) / args.identities
        result = {
            "identities": args.identities,
            "queries_per_identity": args.queries,
            "used_memory_before": before,
            "used_memory_after": after,
            "bytes_per_identity": round(per_identity),
            "mib_per_10k_identities": round(per_identity * 10_000 / 2**20, 1),
            "state_blob_bytes": blob_bytes,
            "fingerprint_stream_bytes": stream_bytes,
            "observe_ms_per_query": round(observe_ms, 2),
        }
        client.close()
    finally:
        server.kill()
        server.wait()
    out = ROOT / "benchmarks/results/detectors_redis_memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
