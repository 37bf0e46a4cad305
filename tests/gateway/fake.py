"""A tiny model app (raw ASGI, plain JSON ``/predict`` and KServe v2) for the tests that need no real model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np

from hoplon.gateway.firewall import Receive, Scope, Send


def fake_scores(x: np.ndarray) -> np.ndarray:
    """Deterministic 3-class probabilities from the first feature of each row."""
    first = x.reshape(len(x), -1)[:, 0]
    logits = np.stack([first, 1 - first, 0.5 * np.ones_like(first)], axis=1)
    e = np.exp(logits)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


class FakeModel:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.delay_s = delay_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        doc: dict[str, Any] = json.loads(body) if body else {}
        if scope["path"].startswith("/v2/"):
            t = doc["inputs"][0]
            x = np.asarray(t["data"], dtype=np.float64).reshape(t["shape"])
            p = fake_scores(x)
            out: dict[str, Any] = {
                "model_name": "m",
                "outputs": [
                    {"name": "probabilities", "shape": list(p.shape), "datatype": "FP64", "data": p.ravel().tolist()},
                    {"name": "logits", "shape": list(p.shape), "datatype": "FP64", "data": p.ravel().tolist()},
                ],
                "debug": {"hidden": 1},
            }
        else:
            x = np.asarray(doc.get("instances", []), dtype=np.float64)
            out = {"predictions": fake_scores(x).tolist(), "embeddings": [[1, 2]], "model": "m"}
        raw = json.dumps(out).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": raw})
