"""`HttpTarget`: a model behind a REST endpoint, described by a small TOML config, as a black-box target.

The config says how to send a batch and where the answer sits::

    [endpoint]
    url = "http://127.0.0.1:8000/predict"   # may also come from --model
    method = "POST"                          # POST (JSON body) or PUT
    input_field = "inputs"                   # body key that receives the batch (nested lists)
    output_path = "scores"                   # where the answer sits: dotted keys and [i], e.g. "data.scores"
    output = "probabilities"                 # probabilities, logits, or label (labels only)
    n_classes = 10                           # needed when output = "label"
    batch_size = 64
    timeout_s = 10.0
    retries = 3                              # extra attempts after a 429, a 5xx, a timeout or a refused connection
    backoff_s = 0.5                          # first wait; doubles each retry; a Retry-After header is honoured
    api_key_env = "MODEL_API_KEY"            # the key is read from this environment variable, never from the file
    api_key_header = "Authorization"
    api_key_prefix = "Bearer "

    [endpoint.headers]
    "X-Client" = "hoplon"

Every row sent is counted (and budgeted) before the request leaves. A 429 or 5xx is retried politely; when the
retries are spent the target raises :class:`EndpointUnavailable`, a :class:`BudgetExceeded`, so an attack
in progress stops and what it found so far is reported as partial. A malformed answer raises
:class:`EndpointError` at once (retrying would not fix it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
import tomllib
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hoplon.core.errors import BudgetExceeded, InputError
from hoplon.targets.types import Bounds, Budget, Capability, InputSpec, QueryCounter, ScoreKind, batches

if TYPE_CHECKING:
    import httpx
    import torch

__all__ = ["EndpointConfig", "EndpointError", "EndpointUnavailable", "HttpTarget", "load_endpoint_config"]

log = logging.getLogger(__name__)

OutputKind = Literal["probabilities", "logits", "label"]
_KEYS = frozenset(
    {
        "url",
        "method",
        "input_field",
        "output_path",
        "output",
        "n_classes",
        "batch_size",
        "timeout_s",
        "retries",
        "backoff_s",
        "max_backoff_s",
        "api_key_env",
        "api_key_header",
        "api_key_prefix",
        "headers",
        "input_shape",
    }
)
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class EndpointError(InputError):
    """The endpoint answered something hoplon cannot read (not JSON, no scores at the configured path, wrong shape)."""


class EndpointUnavailable(BudgetExceeded):
    """The endpoint kept failing (429, 5xx, timeouts, refused connections) after every polite retry."""


@dataclass(frozen=True, kw_only=True)
class EndpointConfig:
    """How to query a model over HTTP (see the module docstring for the TOML layout).

    Args:
        url: ``http://`` or ``https://`` address of the prediction route.
        method: ``POST`` (default) or ``PUT``; the batch goes in a JSON body.
        input_field: body key for the batch (default ``inputs``).
        output_path: where the scores or labels sit in the JSON answer (default ``scores``).
        output: ``probabilities`` (default), ``logits`` or ``label``.
        n_classes: number of classes; required for ``label`` outputs, else read from the first answer.
        batch_size: samples per request, ≥ 1 (default 64).
        timeout_s: per-request timeout, > 0 (default 10).
        retries: extra attempts after a retryable failure, ≥ 0 (default 3).
        backoff_s: first wait between attempts, ≥ 0 (default 0.5), doubled each time.
        max_backoff_s: longest single wait, including a server's ``Retry-After`` (default 30).
        api_key_env: environment variable holding the API key (never the key itself).
        api_key_header: header that carries the key (default ``Authorization``).
        api_key_prefix: text before the key (default ``Bearer ``).
        headers: extra headers.
        input_shape: one sample's shape, when the data does not say.
    """

    url: str
    method: str = "POST"
    input_field: str = "inputs"
    output_path: str = "scores"
    output: OutputKind = "probabilities"
    n_classes: int | None = None
    batch_size: int = 64
    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    api_key_env: str | None = None
    api_key_header: str = "Authorization"
    api_key_prefix: str = "Bearer "
    headers: Mapping[str, str] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise InputError(f"The endpoint 'url' must start with http:// or https://. Got {self.url!r}.")
        if self.method.upper() not in ("POST", "PUT"):
            raise InputError(f"The endpoint 'method' must be POST or PUT. Got {self.method!r}.")
        if self.output not in ("probabilities", "logits", "label"):
            raise InputError(f"The endpoint 'output' must be probabilities, logits or label. Got {self.output!r}.")
        if self.output == "label" and not self.n_classes:
            raise InputError("An endpoint that answers labels needs 'n_classes' in its config.")
        if self.n_classes is not None and self.n_classes < 2:
            raise InputError(f"The endpoint 'n_classes' must be >= 2. Got {self.n_classes}.")
        if self.batch_size < 1:
            raise InputError(f"The endpoint 'batch_size' must be >= 1. Got {self.batch_size}.")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise InputError(f"The endpoint 'timeout_s' must be a number > 0. Got {self.timeout_s}.")
        if self.retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise InputError("The endpoint 'retries', 'backoff_s' and 'max_backoff_s' must be >= 0.")
        _parse_path(self.output_path)

    def request_headers(self) -> dict[str, str]:
        """The headers to send, with the API key read from the environment now (a missing key is an error)."""
        out = {"Content-Type": "application/json", **{str(k): str(v) for k, v in self.headers.items()}}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise InputError(
                    f"The endpoint config reads its API key from ${self.api_key_env}, which is not set or empty."
                )
            out[self.api_key_header] = f"{self.api_key_prefix}{key}"
        return out


def load_endpoint_config(path: str | Path | None, *, url: str | None = None) -> EndpointConfig:
    """Read an :class:`EndpointConfig` from TOML (its ``[endpoint]`` table, or the top level); ``url`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"Cannot read the endpoint config {path}: {exc.strerror or exc}.") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"The endpoint config {path} is not valid TOML: {exc}.") from None
        raw = dict(data.get("endpoint", data))
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InputError(
            f"Unknown key(s) in the endpoint config: {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}."
        )
    if url is not None:
        raw["url"] = url
    if "url" not in raw:
        raise InputError("The endpoint config needs a 'url' (or pass the URL as --model).")
    if "input_shape" in raw:
        raw["input_shape"] = tuple(int(s) for s in raw["input_shape"])
    try:
        return EndpointConfig(**raw)
    except TypeError as exc:
        raise InputError(f"Invalid endpoint config: {exc}.") from None


def _parse_path(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    pos = 0
    text = path.strip()
    while pos < len(text):
        if text[pos] == ".":
            pos += 1
            continue
        match = _PATH_TOKEN.match(text, pos)
        if match is None:
            raise InputError(f"The endpoint 'output_path' {path!r} is not a dotted path like data.scores or out[0].")
        tokens.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    return tokens


def _extract(document: Any, path: str) -> Any:
    node = document
    for token in _parse_path(path):
        try:
            node = node[token]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"The endpoint's answer has nothing at {path!r} (stopped at {token!r}).") from None
    return node


class HttpTarget:
    """A classifier behind a REST endpoint: scores (or labels only), counted and budgeted per row.

    Args:
        config: the :class:`EndpointConfig`.
        input_shape: one sample's shape (from the data, or the config's ``input_shape``).
        bounds: the input box (from the data).
        budget: optional query budget (rows).
        name: how reports refer to the model (default: the URL).
        client: an ``httpx.Client`` to reuse (tests); one is made otherwise.
        sleep: the wait function between retries (tests pass a fake).
    """

    def __init__(
        self,
        config: EndpointConfig,
        *,
        input_shape: tuple[int, ...] | None = None,
        bounds: Bounds | None = None,
        budget: Budget | None = None,
        name: str | None = None,
        client: httpx.Client | None = None,
        sleep: Any = time.sleep,
    ) -> None:
        import httpx

        shape = input_shape or config.input_shape
        if shape is None:
            raise InputError("HttpTarget needs the input shape: from the data, or 'input_shape' in the config.")
        self.config = config
        self.name = name or config.url
        self.input_spec = InputSpec(tuple(int(s) for s in shape), "float32", bounds)
        self.counter = QueryCounter(budget)
        self.score_kind: ScoreKind = "logits" if config.output == "logits" else "probabilities"
        labels_only = config.output == "label"
        self.capabilities = frozenset({Capability.LABELS} if labels_only else {Capability.SCORES, Capability.LABELS})
        self._headers = config.request_headers()
        self._client = client or httpx.Client(timeout=config.timeout_s)
        if client is None:  # an owned client closes with the target, so no socket outlives it
            weakref.finalize(self, self._client.close)
        self._sleep = sleep
        self.n_classes = config.n_classes or 0
        if not self.n_classes:
            import torch

            self.counter.spend(1)  # the probe that reads the number of classes is a query like any other
            probe = self._request(torch.zeros((1, *self.input_spec.shape)))
            self.n_classes = int(probe.shape[1])
            if self.n_classes < 2:
                raise EndpointError(
                    f"The endpoint {config.url} answers {self.n_classes} score(s); a classifier has >= 2."
                )

    def close(self) -> None:
        self._client.close()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Scores for ``x`` (one-hot rows for a labels-only endpoint), ``batch_size`` samples per request."""
        import torch

        self.input_spec.check(x)
        parts = []
        for s in batches(int(x.shape[0]), self.config.batch_size):
            chunk = x[s]
            self.counter.spend(int(chunk.shape[0]))
            parts.append(self._request(chunk))
        return torch.cat(parts) if parts else torch.empty((0, self.n_classes))

    def _request(self, chunk: torch.Tensor) -> torch.Tensor:
        import httpx

        body = {self.config.input_field: chunk.detach().cpu().tolist()}
        attempts = self.config.retries + 1
        last = ""
        for attempt in range(attempts):
            try:
                response = self._client.request(
                    self.config.method.upper(), self.config.url, json=body, headers=self._headers
                )
            except httpx.TimeoutException:
                last = f"no answer within {self.config.timeout_s:g} s"
                wait = self._backoff(attempt, None)
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
                wait = self._backoff(attempt, None)
            else:
                status = response.status_code
                if status == 429 or status >= 500:
                    last = f"HTTP {status}"
                    wait = self._backoff(attempt, response.headers.get("Retry-After"))
                elif status >= 400:
                    raise EndpointError(
                        f"The endpoint {self.config.url} refused the request with HTTP {status}: "
                        f"{response.text[:200]!r}. Check the URL, the method, the input field and the API key."
                    )
                else:
                    return self._parse(response, len(chunk))
            if attempt + 1 < attempts:
                log.warning("endpoint %s: %s; retrying in %.2f s", self.config.url, last, wait)
                self._sleep(wait)
        raise EndpointUnavailable(
            f"The endpoint {self.config.url} is unavailable: {last} after {attempts} attempt(s); "
            "results gathered so far are kept (marked partial).",
            used=self.counter.queries,
            limit=self.counter.budget.max_queries if self.counter.budget else 0,
        )

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        wait = float(self.config.backoff_s * 2**attempt)
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                wait = max(wait, float(retry_after))
        return float(min(wait, self.config.max_backoff_s))

    def _parse(self, response: httpx.Response, rows: int) -> torch.Tensor:
        import torch

        try:
            document = response.json()
        except ValueError:
            raise EndpointError(
                f"The endpoint {self.config.url} did not answer JSON (content-type "
                f"{response.headers.get('content-type', '?')!r}): {response.text[:120]!r}."
            ) from None
        value = _extract(document, self.config.output_path)
        try:
            tensor = torch.as_tensor(value, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise EndpointError(
                f"The value at {self.config.output_path!r} is not numeric: {str(value)[:120]!r}."
            ) from None
        if self.config.output == "label":
            if tensor.shape != (rows,) or bool((tensor != tensor.round()).any()):
                raise EndpointError(
                    f"Expected {rows} integer labels at {self.config.output_path!r}; got {tuple(tensor.shape)}."
                )
            labels = tensor.long()
            if bool(((labels < 0) | (labels >= self.n_classes)).any()):
                raise EndpointError(f"The endpoint answered a label outside 0 .. {self.n_classes - 1}.")
            return torch.nn.functional.one_hot(labels, self.n_classes).float()
        if tensor.ndim != 2 or tensor.shape[0] != rows or (self.n_classes and tensor.shape[1] != self.n_classes):
            raise EndpointError(
                f"Expected a ({rows}, {self.n_classes or 'n_classes'}) array of scores at {self.config.output_path!r}; "
                f"got shape {tuple(tensor.shape)}."
            )
        if not bool(torch.isfinite(tensor).all()):
            raise EndpointError("The endpoint answered NaN or infinite scores.")
        return tensor
