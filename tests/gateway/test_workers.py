"""`hoplon serve --workers 2` as a real process tree: aggregated metrics, and SIGHUP reaching every worker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hoplon.gateway import KeyStore, load_config
from hoplon.ledger import Ledger

from .fake import FakeModel
from .helpers import free_port, uvicorn_server, wait_port, write_config


@contextlib.contextmanager
def two_workers(config: Path, state: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    args = ["serve", "--config", str(config), "--workers", "2", "--state-dir", str(state), "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hoplon.cli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_port(port, timeout_s=90)
        # Both workers are up once each has written its metric files (named by pid) to the shared folder.
        deadline = time.monotonic() + 90
        while len({f.stem.rsplit("_", 1)[-1] for f in (state / "prometheus-multiproc").glob("*.db")}) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "the two workers did not start"
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        sys.stderr.write(err[-4000:])  # shown by pytest when the test fails


def _config(tmp_path: Path, upstream: str, redis_url: str, per_identity: str) -> dict[str, Any]:
    return {
        "upstream": {"url": upstream},
        "models": {"m": {"routes": ["/predict"]}},
        "stages": {"rate_limits": {"storage": redis_url, "per_identity": per_identity, "per_source": "10000/minute"}},
    }


def _send(url: str, key: str, n: int) -> list[int]:
    def one(_: int) -> int:
        with httpx.Client(base_url=url, timeout=30) as client:  # a new connection each: spread over workers
            return client.post("/predict", json={"instances": [[0.1]]}, headers={"x-api-key": key}).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _warm_both(url: str, key: str, state: Path) -> int:
    """Send requests until both workers have served one (each then has a histogram file); return how many."""
    sent = 0
    while len(list((state / "prometheus-multiproc").glob("histogram_*.db"))) < 2:
        assert sent < 400, "the requests never reached the second worker"
        assert _send(url, key, 8) == [200] * 8
        sent += 8
    return sent


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def _workers_and_hashes(state: Path) -> list[tuple[int, str]]:
    with Ledger.open(f"sqlite:///{state / 'audit.db'}", signing_key=state / "ledger.key") as reader:
        return [(e.body["worker"], e.body["config_hash"]) for e in reader.entries(kind="gateway.decision")]


def test_metrics_of_two_workers_are_aggregated(tmp_path: Path, redis_url: str) -> None:
    state = tmp_path / "state"
    with uvicorn_server(FakeModel()) as upstream:
        config = write_config(tmp_path / "hoplon.yaml", _config(tmp_path, upstream, redis_url, "10000/minute"))
        key = KeyStore(state).create("load")[0]
        (state / "prometheus-multiproc").mkdir()
        (state / "prometheus-multiproc" / "counter_1.db").write_bytes(b"stale")  # a previous run's: cleaned
        with two_workers(config, state) as (url, _):
            sent = _warm_both(url, key, state) + 40
            statuses = _send(url, key, 40)
            scrapes = [_scrape(url) for _ in range(6)]  # whichever worker answers, it reports the totals
    assert statuses == [200] * 40
    for samples in scrapes:
        assert _total(samples, "hoplon_gateway_requests_total") == sent
        assert _total(samples, "hoplon_gateway_requests_total", model="m", decision="allow", code="200") == sent
        assert _total(samples, "hoplon_gateway_stage_seconds_count", stage="authentication") == sent
        assert ("hoplon_gateway_ledger_checkpoint_age_seconds", ()) in samples  # livemax: one value, no pid
    assert len({worker for worker, _ in _workers_and_hashes(state)}) == 2  # both workers served


def _replace_keeping_mtime(path: Path, raw: dict[str, Any] | str) -> None:
    """Change the file without changing its mtime, so only SIGHUP (not the workers' file watch) reloads it."""
    before = path.stat()
    tmp = path.with_suffix(".new")
    if isinstance(raw, str):
        tmp.write_text(raw)
    else:
        write_config(tmp, raw)
    os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
    tmp.replace(path)


def test_sighup_to_the_parent_reloads_every_worker_and_an_invalid_config_keeps_the_old_one(
    tmp_path: Path, redis_url: str
) -> None:
    state = tmp_path / "state"
    with uvicorn_server(FakeModel()) as upstream:
        config = write_config(tmp_path / "hoplon.yaml", _config(tmp_path, upstream, redis_url, "10000/minute"))
        first = load_config(config, state_dir=state).hash
        key = KeyStore(state).create("load")[0]
        with two_workers(config, state) as (url, proc):
            warm = _warm_both(url, key, state)
            _replace_keeping_mtime(config, _config(tmp_path, upstream, redis_url, "5/minute"))
            second = load_config(config, state_dir=state).hash
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while _total(_scrape(url), "hoplon_gateway_config_reloads_total", result="applied") < 2:
                assert time.monotonic() < deadline, "the workers did not reload"
                time.sleep(0.2)
            after = _send(url, key, 16)
            _replace_keeping_mtime(config, "version: 1\nstages: {rate_limits: {per_identity: lots}}\n")
            proc.send_signal(signal.SIGHUP)
            while _total(_scrape(url), "hoplon_gateway_config_reloads_total", result="rejected") < 2:
                assert time.monotonic() < deadline, "the workers did not see the invalid config"
                time.sleep(0.2)
            kept = _send(url, key, 4)
            samples = _scrape(url)
            assert proc.poll() is None  # nobody died of the signal
    assert sorted(after) == [200] * 5 + [429] * 11  # the new limit, counted across both workers in Redis
    assert kept == [429] * 4  # the invalid config was refused: the 5/minute limit still holds
    assert _total(samples, "hoplon_gateway_config_reloads_total", result="applied") == 2
    assert _total(samples, "hoplon_gateway_config_reloads_total", result="rejected") == 2
    records = _workers_and_hashes(state)
    assert [h for _, h in records] == [first] * warm + [second] * 20
    assert len({w for w, h in records if h == second}) == 2  # both workers decided under the new config
