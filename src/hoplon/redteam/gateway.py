"""``hoplon redteam gateway``: the extraction attackers against a live gateway, measuring queries to detection.

Each client is an attack from :mod:`hoplon.attacks.extraction` whose target is the gateway over HTTP
(:class:`GatewayTarget`, one row per request, Open Inference Protocol). A ``403`` or ``429`` answer means the
gateway contained the client: the run stops there and records how many queries it had spent and how good a
surrogate the answers it got would train. Benign identities replay natural data; their containments are false
alarms. Loopback only: a non-loopback URL is refused.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from hoplon.core.errors import HoplonError, InputError
from hoplon.targets.types import Capability, InputSpec, QueryCounter, ScoreKind

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.extraction import ExtractionAttack
    from hoplon.data import Dataset

__all__ = ["Contained", "GatewayTarget", "RedteamResult", "redteam_gateway"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Contained(HoplonError):
    """The gateway refused the client (403 quarantined, 429 throttled)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"contained with {status} ({reason})")
        self.status = status
        self.reason = reason


class GatewayTarget:
    """A gateway model as a label-only :class:`~hoplon.targets.Target`; keys rotate per query (Sybil) when
    several are given. Every answered row is logged (``log_x``, ``log_y``)."""

    def __init__(
        self, url: str, model: str, keys: list[str], *, n_classes: int, input_shape: tuple[int, ...], seed: int = 0
    ) -> None:
        host = urlparse(url).hostname
        if host not in _LOOPBACK:
            raise InputError(f"hoplon redteam gateway attacks loopback gateways only. Got {host!r}.")
        if not keys:
            raise InputError("A gateway client needs at least one API key.")
        self.url = f"{url.rstrip('/')}/v2/models/{model}/infer"
        self.keys = keys
        self.name = f"gateway:{model}"
        self.n_classes = n_classes
        self.input_spec = InputSpec(input_shape)
        self.capabilities = frozenset({Capability.LABELS})
        self.score_kind: ScoreKind = "probabilities"
        self.counter = QueryCounter()
        self._rng = np.random.default_rng(seed)
        self.log_x: list[np.ndarray] = []
        self.log_y: list[int] = []

    def _post(self, row: np.ndarray, key: str) -> int:
        body = {"inputs": [{"name": "x", "shape": [1, *row.shape], "datatype": "FP32", "data": row.ravel().tolist()}]}
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers={"x-api-key": key, "content-type": "application/json"}
        )
        for attempt in range(3):
            try:
                with urllib.request.urlopen(request, timeout=10) as reply:
                    doc: dict[str, Any] = json.loads(reply.read())
                break
            except urllib.error.HTTPError as exc:
                reason = str(json.loads(exc.read() or b"{}").get("error", {}).get("code", ""))
                if exc.code == 403 or (exc.code == 429 and reason == "throttled"):
                    raise Contained(exc.code, reason) from None
                if exc.code == 429 and attempt < 2:  # a rate limit, not a detector: stay just under it
                    time.sleep(float(exc.headers.get("retry-after", "1") or 1))
                    continue
                raise InputError(f"The gateway answered {exc.code} ({reason}).") from None
        else:
            raise InputError("The gateway kept rate-limiting the client.")
        out = doc["outputs"][0]
        data = np.asarray(out["data"], dtype=np.float64)
        return int(data[0]) if out["name"] == "label" else int(data.reshape(1, -1).argmax(1)[0])

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        labels = []
        for row in x.detach().cpu().numpy().astype(np.float32):
            key = self.keys[int(self._rng.integers(len(self.keys)))]
            label = self._post(row, key)
            self.counter.spend(1)
            self.log_x.append(row)
            self.log_y.append(label)
            labels.append(label)
        return torch.nn.functional.one_hot(torch.tensor(labels, dtype=torch.int64), self.n_classes).float()


@dataclass(frozen=True, slots=True)
class RedteamResult:
    """One client's outcome: queries answered before containment (``None``: never contained) and the accuracy
    a surrogate trained on what it got reaches on the held-out data."""

    client: str
    keys: int
    queries: int
    contained_at: int | None
    status: int | None
    surrogate_accuracy: float | None


def _surrogate_accuracy(target: GatewayTarget, data: Dataset, seed: int) -> float | None:
    import torch

    from hoplon.attacks.extraction._private import default_surrogate, train_surrogate
    from hoplon.attacks.extraction.metrics import agreement

    if not target.log_x:
        return None
    x = torch.from_numpy(np.stack(target.log_x))
    y = torch.nn.functional.one_hot(torch.tensor(target.log_y), target.n_classes).float()
    module = default_surrogate(target.input_spec.shape, target.n_classes)
    train_surrogate(module, x, y, steps=200, seed=seed)
    half = len(data.x) // 2
    return round(agreement(module, data.x[half:], data.y[half:]), 4)


def redteam_gateway(
    url: str,
    model: str,
    keys: dict[str, list[str]],
    data: Dataset,
    *,
    budget: int = 500,
    benign_queries: int = 50,
    seed: int = 0,
) -> list[RedteamResult]:
    """Run the clients named in ``keys`` (``benign``: one identity per key; ``jbda``, ``sybil``, ``blinded``,
    ``knockoff``: one client over its keys) and report each."""
    from hoplon.attacks.extraction import JacobianAugmentation, KnockoffNets, transformed_digits

    shape = tuple(int(s) for s in data.x.shape[1:])
    n_classes = int(data.y.max()) + 1
    half = len(data.x) // 2
    results = []
    rng = np.random.default_rng(seed)
    for i, key in enumerate(keys.get("benign", [])):
        target = GatewayTarget(url, model, [key], n_classes=n_classes, input_shape=shape, seed=seed + i)
        idx = rng.choice(len(data.x), size=min(benign_queries, len(data.x)), replace=False)
        status = None
        try:
            target.predict(data.x[idx])
        except Contained as exc:
            status = exc.status
        done = target.counter.queries
        results.append(RedteamResult(f"benign-{i}", 1, done, done + 1 if status else None, status, None))
    attacks: dict[str, Callable[[], ExtractionAttack]] = {
        "jbda": lambda: JacobianAugmentation(budget=budget, n_seed=5, train_steps=100),
        "sybil": lambda: JacobianAugmentation(budget=budget, n_seed=10, train_steps=100),
        "blinded": lambda: JacobianAugmentation(budget=budget, n_seed=10, blinding=0.1, train_steps=100),
        "knockoff": lambda: KnockoffNets(budget=budget, train_steps=100),
    }
    for client, factory in attacks.items():
        client_keys = keys.get(client, [])
        if not client_keys:
            continue
        target = GatewayTarget(url, model, client_keys, n_classes=n_classes, input_shape=shape, seed=seed)
        pool = transformed_digits(budget, seed=seed) if client == "knockoff" else data.x[:half]
        status = None
        try:
            factory().run(target, pool, seed=seed)
        except Contained as exc:
            status = exc.status
        done = target.counter.queries
        results.append(
            RedteamResult(
                client, len(client_keys), done, done + 1 if status else None, status,
                _surrogate_accuracy(target, data, seed),
            )
        )  # fmt: skip
    return results
