"""Several gateway workers under one parent (``hoplon serve --workers N``): metrics folder, SIGHUP, supervisor.

uvicorn's own supervisor answers ``SIGHUP`` by replacing every worker, which loses each worker's state (the
detectors' history, in-memory caches) and reloads the models. Here the parent forwards ``SIGHUP`` to every live
worker instead; each one re-reads the config in place through :meth:`Firewall.reload`, which keeps the old
config when the new one is invalid. Workers install their ``SIGHUP`` handler before they serve; the parent
signals only workers that have finished starting (one still starting has just read the file, and its file
watch sees later changes), so the signal never kills a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from hoplon.gateway.metrics import MULTIPROC_ENV

if TYPE_CHECKING:
    import uvicorn

    from hoplon.gateway.config import GatewayConfig
    from hoplon.gateway.firewall import Firewall

__all__ = ["prepare_metrics_dir", "prepare_state", "run_workers", "worker_app"]

log = logging.getLogger("hoplon.gateway")
METRICS_DIR = "prometheus-multiproc"


def prepare_metrics_dir(state_dir: Path) -> Path:
    """Create (or empty) the shared metrics folder and point ``PROMETHEUS_MULTIPROC_DIR`` at it."""
    folder = state_dir / METRICS_DIR
    if folder.exists():
        shutil.rmtree(folder)  # values of a previous run's workers must not add to this run's totals
    folder.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def prepare_state(config: GatewayConfig) -> None:
    """Create the state folder's keys once, in the parent: workers starting together would race to create them."""
    from hoplon.gateway.config import state_secret
    from hoplon.ledger.signing import load_or_create_key

    if config.audit.mode != "off":
        load_or_create_key(config.audit.signing_key)
    if config.audit.hmac_key is None:
        state_secret(config.state_dir, "audit-hmac.key")
    if config.output.noise_key is None:
        state_secret(config.state_dir, "noise.key")


def worker_app() -> Firewall:
    """The uvicorn factory of each worker: the gateway from the environment, with its SIGHUP handler set."""
    from hoplon.gateway.server import app_from_env

    app = app_from_env()
    with contextlib.suppress(RuntimeError, NotImplementedError, ValueError):  # no running loop: set on first request
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, app.reload)
    return app


def run_workers(config: uvicorn.Config) -> None:
    """Run ``config.workers`` processes under a supervisor that forwards SIGHUP to them."""
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:
            ready = [p.pid for p in self.processes if p.pid is not None and p.is_ready(timeout=2)]
            log.warning("SIGHUP: asking %d of %d workers to reload the config", len(ready), len(self.processes))
            for pid in ready:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)

    sock = config.bind_socket()
    try:
        Supervisor(config, sockets=[sock]).run()
    finally:
        sock.close()
