"""What the firewall builds per config (:class:`Runtime`, swapped whole on reload) and per request
(:class:`RequestContext`), and the refusal a stage raises (:class:`Deny`)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from typing import Any

from hoplon.gateway.audit_keys import hmac_key_id
from hoplon.gateway.auth import Authenticator, Identity
from hoplon.gateway.config import GatewayConfig, state_secret
from hoplon.gateway.keys import KeyStore
from hoplon.gateway.profile import Profile
from hoplon.gateway.protocol import Hardening, ParsedInput
from hoplon.gateway.ratelimit import AuthGuard, RateLimiter, make_storage
from hoplon.gateway.sources import source_resolver

__all__ = ["Deny", "RequestContext", "Runtime"]

_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_V2_MODEL = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/?$")
ANONYMOUS = Identity("anonymous", "none", None, frozenset({"model:*", "output:*"}))


@dataclass(slots=True)
class Deny(Exception):
    status: int
    reason: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(slots=True)
class RequestContext:
    request_id: str
    source: str
    method: str
    path: str
    model: str | None
    is_infer: bool
    t0: float = field(default_factory=time.perf_counter)
    identity: Identity = ANONYMOUS
    stages: dict[str, str] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    parsed: ParsedInput | None = None
    body: bytes = b""
    output: dict[str, Any] = field(default_factory=dict)
    denial: Deny | None = None
    degraded: bool = False
    _digests: list[bytes] | None = None
    served: dict[str, str] = field(default_factory=dict)  # filled by the model app (registry: the served digest)

    def digests(self) -> list[bytes]:
        """Per-sample digests of the parsed input, computed once (noise seeds and the audit HMAC use them)."""
        if self._digests is None:
            self._digests = self.parsed.row_digests() if self.parsed is not None else []
        return self._digests


def _keyed_sha256(key: bytes) -> Any:
    """An HMAC-SHA256 object under ``key`` with ``copy``, ``update`` and ``hexdigest``."""
    try:
        from _hashlib import hmac_new  # CPython built with OpenSSL (every supported build)

        return hmac_new(key, digestmod="sha256")
    except (ImportError, ValueError):  # pragma: no cover - a build without OpenSSL's HMAC
        return hmac.new(key, digestmod=hashlib.sha256)


class Runtime:
    """Everything built from one config; replaced as a whole (one reference swap) on reload."""

    def __init__(self, config: GatewayConfig, storages: dict[str, Any], model_digests: dict[str, str]) -> None:
        self.config = config
        auth = config.authentication
        self.authenticator = Authenticator(KeyStore(config.state_dir) if auth.api_keys else None, auth.jwt)
        uri = config.rate_limits.storage
        storage = storages.get(uri) or make_storage(uri)
        storages[uri] = storage
        self.storage = storage
        self.limiter = RateLimiter(config.rate_limits, storage)
        self.guard = AuthGuard(auth, storage)
        self.profiles = {n: Profile.from_file(m.profile) for n, m in config.models.items() if m.profile}
        self.shapes = {n: m.input_shape for n, m in config.models.items() if m.input_shape}
        self.routes = {route: n for n, m in config.models.items() for route in m.routes}
        self.versions = {n: m.version for n, m in config.models.items()}
        self.digests = {n: model_digests.get(n, f"version:{m.version}") for n, m in config.models.items()}
        out = config.output
        self.noise_key = out.noise_key or state_secret(config.state_dir, "noise.key")
        self.hmac_key = config.audit.hmac_key or state_secret(config.state_dir, "audit-hmac.key")
        self.hmac_key_id = hmac_key_id(self.hmac_key)
        # The keyed HMAC state is made once per config and copied per request (hmac.digest sets the key up
        # again on every call); OpenSSL's own HMAC object where there is one, without hmac.HMAC's Python
        # methods around it (four calls per request).
        self._hmac: Any = _keyed_sha256(self.hmac_key)
        self.source_of = source_resolver(config.trusted_proxies, header=config.forwarded_header)
        self.hardening = Hardening(
            out.label_only, out.top_k, out.round_digits, out.noise_scale, self.noise_key, out.strip_fields
        )
        # Every stage between admission and the model call enforces and fails closed (the defaults): the
        # firewall then runs them straight through, without its generic per-stage wrapper.
        self.enforced = all(
            config.stage(name).mode == "enforce" and config.stage(name).on_error == "fail_closed"
            for name in ("authentication", "authorisation", "rate_limits", "validation")
        )

    def input_hmac(self, message: bytes) -> str:
        """HMAC-SHA256 of ``message`` under the audit key, as hex (the value ``hmac.digest`` gives)."""
        mac = self._hmac.copy()
        mac.update(message)
        digest: str = mac.hexdigest()
        return digest

    def model_of(self, path: str) -> tuple[str | None, bool]:
        match = _V2_INFER.match(path)
        if match:
            return match.group(1), True
        if path in self.routes:
            return self.routes[path], True
        match = _V2_MODEL.match(path)
        if match:
            return match.group(1), False
        return None, False
