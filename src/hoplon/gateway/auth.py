"""Authentication (API keys, JWT bearer tokens) and authorisation scopes.

Scopes: ``model:NAME`` or ``model:*`` to call a model; ``output:scores`` (or ``output:*``) to see class
scores rather than labels only. API keys carry their scopes in the key store; JWTs in the ``scope`` (space
separated) or ``scp`` claim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from hoplon.core.errors import InputError
from hoplon.gateway.config import JwtConfig
from hoplon.gateway.keys import KeyStore

__all__ = ["Authenticator", "Identity", "has_scope"]


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


class _JwtVerifier:
    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self._keys: dict[str, Any] = {}
        self._client: jwt.PyJWKClient | None = None
        if config.jwks_file:
            try:
                jwks = jwt.PyJWKSet.from_dict(json.loads(Path(config.jwks_file).read_text()))
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise InputError(f"The JWKS file {config.jwks_file} cannot be used: {exc}") from None
            self._keys = {k.key_id: k for k in jwks.keys if k.key_id}
            self._only = jwks.keys[0] if len(jwks.keys) == 1 else None
        elif config.jwks_url:
            self._client = jwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=300, timeout=5)
            self._only = None

    def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
            key: Any
            if self._client is not None:
                key = self._client.get_signing_key_from_jwt(token)
            else:
                key = self._keys.get(header.get("kid", "")) or self._only
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
            return Identity(record.client, "api_key", record.key_id, frozenset(record.scopes))
        if token is not None:
            if self.jwt is None:
                raise AuthFailure("jwt_disabled", "Bearer tokens are not accepted here.")
            return self.jwt.verify(token)
        raise AuthFailure("missing", "Authentication is required (X-API-Key or Authorization: Bearer).")
