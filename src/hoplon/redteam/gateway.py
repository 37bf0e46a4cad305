"""``hoplon redteam gateway``: attackers against a live gateway, measuring queries to detection.

Each client is an attack whose target is the gateway over HTTP (:class:`GatewayTarget`, one row per request,
Open Inference Protocol): the extraction attacks of :mod:`hoplon.attacks.extraction` (JbDA, a Sybil JbDA, a
blinded JbDA, Knockoff, and a JbDA rotating its keys just under the rate limits) and the adversarial-query
clients of :mod:`hoplon.redteam.adversarial` (Square, HopSkipJump, a boundary walk). A ``403`` or a
``throttled`` ``429`` means the gateway contained the client: the run stops there (a rotating client drops the
key and goes on with the others) and records how many queries it had spent, and what they had bought: the
accuracy of a surrogate trained on the answers, or the share of inputs already turned adversarial. Benign
identities replay natural data; their containments are false alarms. Loopback only: a non-loopback URL is
refused.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import numpy as np

from hoplon.core.errors import HoplonError, InputError
from hoplon.targets.types import Budget, Capability, InputSpec, QueryCounter, ScoreKind

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.extraction import ExtractionAttack
    from hoplon.data import Dataset
    from hoplon.targets.types import Target

__all__ = [
    "ADVERSARIAL_CLIENTS",
    "CLIENTS",
    "EXTRACTION_CLIENTS",
    "Contained",
    "GatewayTarget",
    "RateLimit",
    "RedteamResult",
    "parse_rate",
    "redteam_gateway",
]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
EXTRACTION_CLIENTS = ("jbda", "sybil", "blinded", "knockoff", "rotating")
ADVERSARIAL_CLIENTS = ("square", "hsja", "walk", "square-rotating", "hsja-rotating", "walk-rotating")
CLIENTS = EXTRACTION_CLIENTS + ADVERSARIAL_CLIENTS
_MAX_WAIT_S = 30.0  # longest Retry-After a client waits out; a longer one (a daily quota) ends the run
_MAX_BACKLOG_WAITS = 500  # 20 ms waits for the detectors to catch up with this key (10 s in all)
_MAX_ROWS = 200_000  # bound on the rows one client may send (twice the default daily quota)


class Contained(HoplonError):
    """The gateway refused the client (403 quarantined, 429 throttled)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"contained with {status} ({reason})")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``amount`` requests per ``window_s`` seconds, as a gateway's ``RateLimit-Policy`` header states it."""

    amount: int
    window_s: float

    def __post_init__(self) -> None:
        if self.amount < 1 or not 0 < self.window_s <= 86_400 * 366:
            raise InputError(f"A rate limit needs amount >= 1 and a window in (0, 1 year]. Got {self}.")

    @property
    def under(self) -> int:
        """Requests a client sends per window to stay just under the limit (10 % head-room, at least one)."""
        return max(1, self.amount - max(1, self.amount // 10))


def parse_rate(text: str) -> RateLimit:
    """A rate in the gateway's own syntax (``20/second``, ``100 per minute``)."""
    from limits import parse

    try:
        item = parse(text)
    except ValueError:
        raise InputError(f"{text!r} is not a rate (e.g. 20/second, 100 per minute).") from None
    return RateLimit(int(item.amount), float(item.get_expiry()))


def _policy(header: str | None) -> tuple[str, RateLimit] | None:
    """``"per_identity";q=50;w=1`` → (``per_identity``, 50 per second); ``None`` when absent or malformed."""
    if not header or len(header) > 256:
        return None
    parts = [p.strip() for p in header.split(";")]
    fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    try:
        return parts[0].strip('"'), RateLimit(int(fields["q"]), float(fields["w"]))
    except (KeyError, ValueError, InputError):
        return None


class _Pacer:
    """Keeps each key (scope ``identity``) and the whole client (scope ``source``) just under a rate limit,
    configured or learned from the gateway."""

    def __init__(self) -> None:
        self.limits: dict[str, RateLimit] = {}
        self._sent: dict[str, deque[float]] = {}

    def learn(self, scope: str, limit: RateLimit) -> None:
        old = self.limits.get(scope)
        if old is None or limit.under / limit.window_s < old.under / old.window_s:
            self.limits[scope] = limit

    def send(self, scope: str, key: str) -> None:
        """Wait until one more request on ``key`` stays under the scope's limit, and record it."""
        sent = self._sent.setdefault(key, deque(maxlen=65_536))
        limit = self.limits.get(scope)
        if limit is not None:
            now = time.monotonic()
            while sent and sent[0] <= now - limit.window_s:
                sent.popleft()
            if len(sent) >= limit.under:
                delay = sent[-limit.under] + limit.window_s - now + 0.01
                if delay > _MAX_WAIT_S:
                    raise InputError(f"Staying under the rate limit {limit} would mean waiting {delay:.0f} s.")
                time.sleep(max(delay, 0.0))
        sent.append(time.monotonic())


class GatewayTarget:
    """A gateway model as a :class:`~hoplon.targets.Target`; labels only, or the gateway's (hardened) scores
    with ``scores=True``. Every answered row is logged (``log_x``, ``log_y``).

    Keys: one, or several rotated per query: ``random`` (a Sybil attacker) or ``spread`` (an adaptive one: each
    row goes to the key whose last ``buffer`` rows are farthest from it, so that no key sees near-duplicates of
    its own queries), each key kept just under the per-identity rate limit (``rate`` configured, else learned
    from the first ``429``'s ``RateLimit-Policy`` header). With ``drop_contained`` a contained key leaves the
    rotation and the client goes on with the rest; :class:`Contained` is raised when no key is left. ``budget``
    caps the rows.
    """

    def __init__(
        self,
        url: str,
        model: str,
        keys: list[str],
        *,
        n_classes: int,
        input_shape: tuple[int, ...],
        seed: int = 0,
        scores: bool = False,
        rotation: Literal["random", "spread"] = "random",
        buffer: int = 64,
        rate: RateLimit | None = None,
        drop_contained: bool = False,
        budget: int | None = None,
    ) -> None:
        host = urlparse(url).hostname
        if host not in _LOOPBACK:
            raise InputError(f"hoplon redteam gateway attacks loopback gateways only. Got {host!r}.")
        if not keys:
            raise InputError("A gateway client needs at least one API key.")
        if budget is not None and not 0 < budget <= _MAX_ROWS:
            raise InputError(f"A client's budget must be in 1..{_MAX_ROWS}. Got {budget}.")
        self.url = f"{url.rstrip('/')}/v2/models/{model}/infer"
        self.keys = list(keys)
        self.name = f"gateway:{model}"
        self.n_classes = n_classes
        self.input_spec = InputSpec(input_shape)
        self.scores = scores
        self.capabilities = frozenset({Capability.LABELS, Capability.SCORES} if scores else {Capability.LABELS})
        self.score_kind: ScoreKind = "probabilities"
        self.counter = QueryCounter(Budget(budget) if budget is not None else None)
        self.rotation = rotation
        self.drop_contained = drop_contained
        self._rng = np.random.default_rng(seed)
        self._history: dict[str, deque[np.ndarray]] = {k: deque(maxlen=max(1, min(buffer, 4096))) for k in keys}
        self._pacer = _Pacer()
        if rate is not None:
            self._pacer.learn("identity", rate)
        self.log_x: list[np.ndarray] = []
        self.log_y: list[int] = []
        self.first_contained_at: int | None = None  # the query index (1-based) the first refusal answered
        self.contained: Contained | None = None  # the refusal that ended the client
        self.contained_keys = 0
        self.rate_limited = 0  # plain rate-limit 429s met (a client under the limits meets none after learning)

    @property
    def per_key_rate(self) -> RateLimit | None:
        return self._pacer.limits.get("identity")

    def _next_key(self, row: np.ndarray) -> str:
        if self.rotation == "spread":
            flat = row.ravel()

            def nearest(key: str) -> tuple[float, int]:
                past = self._history[key]
                if not past:
                    return float("inf"), 0
                gap = float(np.sqrt(((np.stack(past) - flat) ** 2).sum(1)).min())
                return gap, -len(past)

            key = max(self.keys, key=nearest)
            self._history[key].append(flat)
            return key
        return self.keys[int(self._rng.integers(len(self.keys)))]

    def _post(self, row: np.ndarray, key: str) -> np.ndarray:
        body = {"inputs": [{"name": "x", "shape": [1, *row.shape], "datatype": "FP32", "data": row.ravel().tolist()}]}
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers={"x-api-key": key, "content-type": "application/json"}
        )
        backlog_waits = 0
        attempt = 0
        while attempt < 4:
            attempt += 1
            self._pacer.send("identity", key)
            self._pacer.send("source", "")
            try:
                with urllib.request.urlopen(request, timeout=10) as reply:
                    doc: dict[str, Any] = json.loads(reply.read(1 << 22))
                break
            except urllib.error.HTTPError as exc:
                try:
                    reason = str(json.loads(exc.read(1 << 16) or b"{}").get("error", {}).get("code", ""))
                except (ValueError, AttributeError):
                    reason = ""
                if exc.code == 403 or (exc.code == 429 and reason == "throttled"):
                    raise Contained(exc.code, reason) from None
                if exc.code == 429 and reason == "detect_backlog" and backlog_waits < _MAX_BACKLOG_WAITS:
                    # the detectors are behind on this key: wait for them, as any client that retries would
                    backlog_waits += 1
                    attempt -= 1
                    time.sleep(0.02)
                    continue
                if exc.code == 429 and attempt < 4:  # a rate limit, not a detector: learn it and stay under it
                    self.rate_limited += 1
                    policy = _policy(exc.headers.get("ratelimit-policy"))
                    if policy is not None and policy[0] in ("per_identity", "per_identity_model"):
                        self._pacer.learn("identity", policy[1])
                    elif policy is not None and policy[0] == "per_source":
                        self._pacer.learn("source", policy[1])
                    try:
                        wait = float(exc.headers.get("retry-after", "1") or 1)
                    except ValueError:
                        wait = 1.0
                    if not 0 <= wait <= _MAX_WAIT_S:
                        raise InputError(f"The gateway asks to wait {wait:g} s ({reason}); the run ends.") from None
                    time.sleep(wait)
                    continue
                raise InputError(f"The gateway answered {exc.code} ({reason}).") from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise InputError(f"The gateway at {self.url} cannot be reached or answered garbage: {exc}") from None
        else:
            raise InputError("The gateway kept rate-limiting the client.")
        try:
            out = doc["outputs"][0]
            data = np.asarray(out["data"], dtype=np.float64)
        except (KeyError, IndexError, TypeError, ValueError):
            raise InputError("The gateway's answer is not an Open Inference Protocol response.") from None
        if out.get("name") == "label":
            if self.scores:
                raise InputError("The gateway gives this key labels only; a score-based client needs output:scores.")
            if data.size != 1 or not 0 <= data[0] < self.n_classes:
                raise InputError("The gateway's label is out of range.")
            one_hot: np.ndarray = np.eye(self.n_classes)[int(data[0])]
            return one_hot
        if data.size != self.n_classes or not np.all(np.isfinite(data)):
            raise InputError(f"The gateway's answer has {data.size} scores; the model has {self.n_classes} classes.")
        return data.reshape(-1)

    def _answer(self, row: np.ndarray) -> np.ndarray:
        while True:
            key = self._next_key(row)
            try:
                return self._post(row, key)
            except Contained as exc:
                if self.first_contained_at is None:
                    self.first_contained_at = self.counter.queries  # this row is counted already
                self.contained_keys += 1
                if self.drop_contained and len(self.keys) > 1:
                    self.keys.remove(key)
                    continue
                self.contained = exc
                raise

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        answers = []
        for row in x.detach().cpu().numpy().astype(np.float32):
            self.counter.spend(1)
            try:
                answer = self._answer(row)
            except Exception:
                self.counter.queries -= 1  # refused or failed: not an answered query
                raise
            self.log_x.append(row)
            self.log_y.append(int(answer.argmax()))
            answers.append(answer)
        matrix = np.stack(answers) if answers else np.zeros((0, self.n_classes))
        if self.scores:
            probs = bool(np.all(matrix >= 0) and np.allclose(matrix.sum(1), 1.0, atol=0.05))
            self.score_kind = "probabilities" if probs else "logits"
            return torch.from_numpy(matrix).float()
        return torch.from_numpy(np.eye(self.n_classes)[matrix.argmax(1)]).float()


@dataclass(frozen=True, slots=True)
class RedteamResult:
    """One client's outcome.

    ``queries``: answered queries; ``contained_at``: the query index of the refusal that ended it (``None``:
    never contained); ``first_contained_at`` and ``contained_keys``: for clients with several keys, the first
    refusal and how many keys were refused. Extraction clients: ``surrogate_accuracy`` of a surrogate trained
    on all the answers (on the held-out data), ``accuracy_at_detection`` on the answers before the first
    refusal, and ``fidelity`` (agreement with the victim) when a local victim was given. Adversarial clients:
    ``success_rate``, the share of the attacked inputs the client had turned adversarial (within ``eps``, by the
    gateway's own answers) when it was stopped, and ``success_undetected`` against an undefended local copy of
    the victim with the same budget (when given). ``rate_limited``: plain rate-limit 429s the client met;
    ``per_key_rate``: the per-key limit it kept under (``q/w s``).
    """

    client: str
    keys: int
    queries: int
    contained_at: int | None
    status: int | None
    surrogate_accuracy: float | None
    reason: str | None = None
    first_contained_at: int | None = None
    contained_keys: int = 0
    accuracy_at_detection: float | None = None
    fidelity: float | None = None
    success_rate: float | None = None
    success_undetected: float | None = None
    eps: float | None = None
    rate_limited: int = 0
    per_key_rate: str | None = None
    seconds: float = 0.0


def _surrogate(
    target: GatewayTarget, data: Dataset, seed: int, victim: Target | None, upto: int | None = None
) -> tuple[float | None, float | None]:
    """Held-out accuracy and (with a victim) fidelity of a surrogate trained on the first ``upto`` answers."""
    import torch

    from hoplon.attacks.extraction.metrics import agreement
    from hoplon.attacks.extraction.surrogates import default_surrogate, train_surrogate

    xs, ys = target.log_x[:upto], target.log_y[:upto]
    if not xs:
        return None, None
    x = torch.from_numpy(np.stack(xs))
    y = torch.nn.functional.one_hot(torch.tensor(ys), target.n_classes).float()
    module = default_surrogate(target.input_spec.shape, target.n_classes)
    train_surrogate(module, x, y, steps=200, seed=seed)
    half = len(data.x) // 2
    accuracy = round(agreement(module, data.x[half:], data.y[half:]), 4)
    fidelity = None
    if victim is not None:
        victim_labels = victim.predict(data.x[half:]).argmax(1)
        fidelity = round(agreement(module, data.x[half:], victim_labels), 4)
    return accuracy, fidelity


def redteam_gateway(
    url: str,
    model: str,
    keys: dict[str, list[str]],
    data: Dataset,
    *,
    budget: int = 500,
    benign_queries: int = 50,
    seed: int = 0,
    adversarial_budget: int | None = None,
    adversarial_inputs: int = 5,
    key_rate: RateLimit | None = None,
    victim: Target | None = None,
) -> list[RedteamResult]:
    """Run the clients named in ``keys`` and report each.

    ``benign``: one identity per key. Extraction clients, one client over their keys: ``jbda``, ``sybil``
    (random key per query), ``blinded``, ``knockoff``, and ``rotating`` (JbDA, each query on the key whose recent
    queries lie farthest from it, each key kept just under the per-identity rate limit, ``key_rate`` or learned
    from the gateway; a contained key is dropped).
    Adversarial-query clients, one key: ``square`` (scores, L∞), ``hsja`` (labels, L2), ``walk`` (labels, L2
    boundary walk), on ``adversarial_inputs`` test inputs the gateway classifies correctly, with
    ``adversarial_budget`` queries (default ``budget``); ``square-rotating``, ``hsja-rotating`` and
    ``walk-rotating`` spread the same attack over their keys as ``rotating`` does. ``victim``: a local copy of
    the model for the fidelity and for the attack success without the gateway.
    """
    from hoplon.attacks.extraction import JacobianAugmentation, KnockoffNets, transformed_digits
    from hoplon.redteam.adversarial import run_adversarial

    unknown = sorted(set(keys) - {"benign", *CLIENTS})
    if unknown:
        raise InputError(f"Unknown red-team clients {unknown}; use benign, {', '.join(CLIENTS)}.")
    if not 0 < budget <= _MAX_ROWS or not 0 < benign_queries <= _MAX_ROWS:
        raise InputError(f"Budgets must be in 1..{_MAX_ROWS}. Got {budget} and {benign_queries}.")
    shape = tuple(int(s) for s in data.x.shape[1:])
    n_classes = int(data.y.max()) + 1
    half = len(data.x) // 2
    results = []
    rng = np.random.default_rng(seed)
    for i, key in enumerate(keys.get("benign", [])):
        target = GatewayTarget(url, model, [key], n_classes=n_classes, input_shape=shape, seed=seed + i)
        idx = rng.choice(len(data.x), size=min(benign_queries, len(data.x)), replace=False)
        start = time.monotonic()
        status = reason = None
        try:
            target.predict(data.x[idx])
        except Contained as exc:
            status, reason = exc.status, exc.reason
        done = target.counter.queries
        results.append(
            RedteamResult(
                f"benign-{i}", 1, done, done + 1 if status else None, status, None, reason=reason,
                rate_limited=target.rate_limited, seconds=round(time.monotonic() - start, 2),
            )
        )  # fmt: skip
    attacks: dict[str, Callable[[], ExtractionAttack]] = {
        "jbda": lambda: JacobianAugmentation(budget=budget, n_seed=5, train_steps=100),
        "sybil": lambda: JacobianAugmentation(budget=budget, n_seed=10, train_steps=100),
        "blinded": lambda: JacobianAugmentation(budget=budget, n_seed=10, blinding=0.1, train_steps=100),
        "knockoff": lambda: KnockoffNets(budget=budget, train_steps=100),
        "rotating": lambda: JacobianAugmentation(budget=budget, n_seed=10, train_steps=100),
    }
    for client, factory in attacks.items():
        client_keys = keys.get(client, [])
        if not client_keys:
            continue
        rotating = client == "rotating"
        target = GatewayTarget(
            url, model, client_keys, n_classes=n_classes, input_shape=shape, seed=seed,
            rotation="spread" if rotating else "random", rate=key_rate if rotating else None,
            drop_contained=rotating,
        )  # fmt: skip
        pool = transformed_digits(budget, seed=seed) if client == "knockoff" else data.x[:half]
        start = time.monotonic()
        status = reason = None
        try:
            factory().run(target, pool, seed=seed)
        except Contained as exc:
            status, reason = exc.status, exc.reason
        seconds = round(time.monotonic() - start, 2)
        done = target.counter.queries
        accuracy, fidelity = _surrogate(target, data, seed, victim)
        at_detection = None
        if target.first_contained_at is not None:
            at_detection = _surrogate(target, data, seed, None, target.first_contained_at - 1)[0]
        rate = target.per_key_rate
        results.append(
            RedteamResult(
                client, len(client_keys), done, done + 1 if status else None, status, accuracy, reason=reason,
                first_contained_at=target.first_contained_at, contained_keys=target.contained_keys,
                accuracy_at_detection=at_detection, fidelity=fidelity, rate_limited=target.rate_limited,
                per_key_rate=None if rate is None else f"{rate.amount}/{rate.window_s:g}s", seconds=seconds,
            )
        )  # fmt: skip
    for client in ADVERSARIAL_CLIENTS:
        client_keys = keys.get(client, [])
        if client_keys:
            results.append(
                run_adversarial(
                    client, url, model, client_keys, data, budget=adversarial_budget or budget,
                    n_inputs=adversarial_inputs, seed=seed, victim=victim, key_rate=key_rate,
                )
            )  # fmt: skip
    return results
