"""Authentication (API keys, JWT bearer tokens) and authorisation scopes.

Scopes: ``model:NAME`` or ``model:*`` to call a model; ``output:scores`` (or ``output:*``) to see class
scores rather than labels only. API keys carry their scopes in the key store; JWTs in the ``scope`` (space
separated) or ``scp`` claim.

A ``jwks_url`` is fetched in a background thread (:class:`JwksCache`), never on the event loop: requests are
checked against the keys already fetched; an unknown ``kid`` or a stale set starts a refresh (at most one per
``jwks_min_refresh_s``, so a flood of made-up ``kid`` values cannot turn into a flood of fetches) and is
refused with 401 meanwhile, as is every token while no key is known.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jwt

from hoplon.core.errors import InputError
from hoplon.gateway.config import JwtConfig
from hoplon.gateway.keys import ApiKey, KeyStore

__all__ = ["Authenticator", "Identity", "JwksCache", "has_scope"]

log = logging.getLogger("hoplon.gateway")
_MAX_IDENTITIES = 10_000


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    method: str  # "api_key" or "jwt"
    key_id: str | None
    scopes: frozenset[str]


def has_scope(identity: Identity, kind: str, name: str) -> bool:
    return f"{kind}:{name}" in identity.scopes or f"{kind}:*" in identity.scopes


class AuthFailure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class JwksCache:
    """The keys of a JWKS URL, fetched off the event loop; shared by every config that names the same URL."""

    MAX_BYTES = 1 << 20
    MAX_KEYS = 64
    _shared: ClassVar[dict[tuple[str, float, float, float], JwksCache]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str, *, max_age_s: float, min_refresh_s: float, timeout_s: float) -> None:
        self.url = url
        self.max_age_s, self.min_refresh_s, self.timeout_s = max_age_s, min_refresh_s, timeout_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._only: jwt.PyJWK | None = None
        self._fetched = float("-inf")
        self._attempted = float("-inf")
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.fetches = 0  # attempts started (for metrics and the tests)
        self.refresh()

    @classmethod
    def shared(cls, config: JwtConfig) -> JwksCache:
        """One cache per URL and settings, so a config reload keeps the keys already fetched."""
        assert config.jwks_url is not None
        key = (config.jwks_url, config.jwks_max_age_s, config.jwks_min_refresh_s, config.jwks_timeout_s)
        with cls._shared_lock:
            cache = cls._shared.get(key)
            if cache is None:
                cache = cls._shared[key] = cls(
                    config.jwks_url,
                    max_age_s=config.jwks_max_age_s,
                    min_refresh_s=config.jwks_min_refresh_s,
                    timeout_s=config.jwks_timeout_s,
                )
            return cache

    def get(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for ``kid`` from the cache (never waits); a miss or a stale set starts a refresh."""
        key = self._keys.get(kid) if kid else self._only
        if key is None or time.monotonic() - self._fetched > self.max_age_s:
            self.refresh()
        return key

    def refresh(self) -> bool:
        """Start a background fetch unless one runs or one started less than ``min_refresh_s`` ago."""
        with self._lock:
            now = time.monotonic()
            if (self._thread is not None and self._thread.is_alive()) or now - self._attempted < self.min_refresh_s:
                return False
            self._attempted = now
            self.fetches += 1
            self._thread = threading.Thread(target=self._fetch, name="hoplon-jwks", daemon=True)
            self._thread.start()
            return True

    def wait(self, timeout_s: float) -> None:
        """Wait for a running fetch (start-up and tests; never called on the request path)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _download(self) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        chunks: list[bytes] = []
        size = 0
        with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:  # the URL is http(s) (schema)
            while True:
                chunk = reply.read(65536)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > self.MAX_BYTES:
                    raise ValueError(f"the JWKS is larger than {self.MAX_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the JWKS took longer than {self.timeout_s} s")
                chunks.append(chunk)

    def _fetch(self) -> None:
        try:
            doc = json.loads(self._download())
            keys = doc.get("keys") if isinstance(doc, dict) else None
            if not isinstance(keys, list) or not keys:
                raise ValueError("no keys in the JWKS")
            jwks = jwt.PyJWKSet.from_dict({"keys": keys[: self.MAX_KEYS]})
        except (OSError, ValueError, jwt.PyJWTError) as exc:  # OSError covers URLError and timeouts
            log.error("ALERT JWKS %s not refreshed (keeping %d known keys): %s", self.url, len(self._keys), exc)
            return
        self._only = jwks.keys[0] if len(jwks.keys) == 1 else None
        self._keys = {k.key_id: k for k in jwks.keys if k.key_id}  # one reference swap: readers never see half
        self._fetched = time.monotonic()


class _JwtVerifier:
    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self._keys: dict[str, Any] = {}
        self._cache: JwksCache | None = None
        if config.jwks_file:
            try:
                jwks = jwt.PyJWKSet.from_dict(json.loads(Path(config.jwks_file).read_text()))
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise InputError(f"The JWKS file {config.jwks_file} cannot be used: {exc}") from None
            self._keys = {k.key_id: k for k in jwks.keys if k.key_id}
            self._only = jwks.keys[0] if len(jwks.keys) == 1 else None
        elif config.jwks_url:
            self._cache = JwksCache.shared(config)
            self._only = None

    def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")  # a string or absent: PyJWT refuses any other kid
            key: Any = self._cache.get(kid) if self._cache is not None else self._keys.get(kid or "") or self._only
            if key is None:
                raise AuthFailure("jwt_unknown_key", "The token was signed by an unknown key.")
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self.config.algorithms),
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure("jwt_expired", "The token has expired.") from None
        except jwt.InvalidAudienceError:
            raise AuthFailure("jwt_audience", "The token is for another audience.") from None
        except jwt.InvalidIssuerError:
            raise AuthFailure("jwt_issuer", "The token is from another issuer.") from None
        except jwt.PyJWTError as exc:
            raise AuthFailure("jwt_invalid", f"The token is invalid: {exc}") from None
        raw = claims.get("scope", claims.get("scp", ""))
        scopes = raw.split() if isinstance(raw, str) else [str(s) for s in raw]
        return Identity(f"jwt:{claims['sub']}", "jwt", None, frozenset(scopes))


class Authenticator:
    """Turns request headers into an :class:`Identity`, or raises ``AuthFailure`` with a reason code."""

    def __init__(self, keys: KeyStore | None, jwt_config: JwtConfig | None) -> None:
        self.keys = keys
        self.jwt = _JwtVerifier(jwt_config) if jwt_config is not None else None
        # The identity of each key record seen, made once: the records are immutable and a reread of the keys
        # file makes new ones, so an entry is used only while it belongs to the very record checked.
        self._identities: dict[str, tuple[ApiKey, Identity]] = {}

    def authenticate(self, headers: dict[bytes, bytes]) -> Identity:
        api_key = headers.get(b"x-api-key")
        authz = headers.get(b"authorization", b"")
        token = None
        if authz[:7].lower() == b"bearer ":
            token = authz[7:].strip().decode("latin-1")
        if api_key is None and token is not None and token.startswith("hpl_"):
            api_key, token = token.encode(), None
        if api_key is not None:
            if self.keys is None:
                raise AuthFailure("api_keys_disabled", "API keys are not accepted here.")
            record, why = self.keys.check(api_key.decode("latin-1"))
            if record is None:
                raise AuthFailure(
                    f"key_{why}", "The API key is invalid." if why != "revoked" else "The key is revoked."
                )
            known = self._identities.get(record.key_id)
            if known is not None and known[0] is record:
                return known[1]
            identity = Identity(record.client, "api_key", record.key_id, frozenset(record.scopes))
            if len(self._identities) >= _MAX_IDENTITIES:  # bounded: the live keys fit many times over
                self._identities.clear()
            self._identities[record.key_id] = (record, identity)
            return identity
        if token is not None:
            if self.jwt is None:
                raise AuthFailure("jwt_disabled", "Bearer tokens are not accepted here.")
            return self.jwt.verify(token)
        raise AuthFailure("missing", "Authentication is required (X-API-Key or Authorization: Bearer).")
