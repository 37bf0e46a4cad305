"""The gateway's configuration: one YAML file, validated against :data:`CONFIG_SCHEMA`, merged over safe defaults.

Secrets appear only by reference (``env:NAME`` or ``file:/path``) and are resolved at load; the config hash
(SHA-256 of the canonical JSON of the merged config, references not values) goes into every audit record.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hoplon.core.errors import InputError
from hoplon.core.files import create_once
from hoplon.gateway.schema import validate

__all__ = [
    "DEFAULTS",
    "AdmissionConfig",
    "AuditConfig",
    "AuthConfig",
    "DetectConfig",
    "GatewayConfig",
    "JwtConfig",
    "ModelConfig",
    "OutputConfig",
    "RateLimitConfig",
    "StageConfig",
    "UpstreamTlsConfig",
    "load_config",
    "parse_config",
    "resolve_secret",
    "state_secret",
]

Mode = Literal["enforce", "shadow", "off"]
OnError = Literal["fail_open", "fail_closed"]
STAGES = ("admission", "authentication", "authorisation", "rate_limits", "validation", "output", "audit")

# The safe default: authentication on, modest limits, audit on, errors in security stages fail closed.
DEFAULTS: dict[str, Any] = {
    "version": 1,
    "server": {"host": "127.0.0.1", "port": 8000, "workers": 1, "state_dir": ".hoplon"},
    "stages": {
        "admission": {
            "mode": "enforce",
            "on_error": "fail_closed",
            "max_body_bytes": 1 << 20,
            "max_batch": 64,
            "max_elements": 1 << 20,
            "request_timeout_s": 10.0,
        },
        "authentication": {
            "mode": "enforce",
            "on_error": "fail_closed",
            "api_keys": True,
            "failed_per_source": "20/minute",
            "failed_global": "200/minute",
        },
        "authorisation": {"mode": "enforce", "on_error": "fail_closed"},
        "rate_limits": {
            "mode": "enforce",
            "on_error": "fail_closed",
            "storage": "memory://",
            "per_identity": "50/second",
            "per_identity_model": "50/second",
            "per_source": "100/second",
            "daily_quota": 100_000,
            "cost": "batch",
        },
        "validation": {"mode": "enforce", "on_error": "fail_closed", "max_ood_score": 0.5},
        "detect": {"mode": "off", "on_error": "fail_open"},
        "model": {"timeout_s": 5.0, "max_concurrency": 8},
        "output": {
            "mode": "enforce",
            "on_error": "fail_closed",
            "label_only": False,
            "round_digits": 3,
            "noise_scale": 0.0,
            "strip_fields": ["logits", "embeddings", "hidden_states", "debug", "parameters"],
        },
        "audit": {
            "mode": "enforce",
            "on_error": "fail_closed",
            "durable": False,
            "writer": "process",
            "checkpoint_every": 1000,
            "checkpoint_interval_s": 10.0,
        },
        "metrics": {"enabled": True},
    },
}


@dataclass(frozen=True, slots=True)
class StageConfig:
    mode: Mode
    on_error: OnError


@dataclass(frozen=True, slots=True)
class AdmissionConfig(StageConfig):
    max_body_bytes: int
    max_batch: int
    max_elements: int
    request_timeout_s: float


@dataclass(frozen=True, slots=True)
class JwtConfig:
    issuer: str
    audience: str
    jwks_file: str | None = None
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    leeway_s: float = 0.0
    jwks_max_age_s: float = 300.0  # a jwks_url set older than this is refetched in the background
    jwks_min_refresh_s: float = 30.0  # an unknown kid triggers at most one fetch per this interval
    jwks_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class AuthConfig(StageConfig):
    api_keys: bool
    failed_per_source: str
    failed_global: str
    jwt: JwtConfig | None = None


@dataclass(frozen=True, slots=True)
class RateLimitConfig(StageConfig):
    storage: str
    per_identity: str | None
    per_identity_model: str | None
    per_source: str | None
    daily_quota: int | None
    cost: Literal["batch", "request"]


@dataclass(frozen=True, slots=True)
class ValidationConfig(StageConfig):
    max_ood_score: float


@dataclass(frozen=True, slots=True)
class DetectConfig(StageConfig):
    """The ``detect`` stage (extraction and adversarial-query detectors); ``spec`` is its merged mapping,
    read by :mod:`hoplon.gateway.detectors.stage`."""

    spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutputConfig(StageConfig):
    label_only: bool
    round_digits: int | None
    noise_scale: float
    strip_fields: tuple[str, ...]
    top_k: int | None = None
    noise_key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuditConfig(StageConfig):
    ledger: str
    durable: bool
    checkpoint_every: int
    checkpoint_interval_s: float
    signing_key: str
    hmac_key: bytes | None = field(default=None, repr=False)
    writer: Literal["process", "thread"] = "process"


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    path: str | None = None
    input_shape: tuple[int, ...] | None = None
    version: str = "1"
    profile: str | None = None
    upstream_path: str | None = None
    routes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UpstreamTlsConfig:
    """TLS to an ``https://`` upstream: CA bundle (default: the system's), optional client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


MAX_TRUSTED_PROXIES = 256


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The validated configuration. ``raw`` is the merged dict; ``hash`` its ``sha256:`` digest."""

    raw: Mapping[str, Any]
    hash: str
    source: str
    state_dir: Path
    host: str
    port: int
    workers: int
    upstream_url: str | None
    upstream_timeout_s: float
    upstream_allow_remote: bool
    models: Mapping[str, ModelConfig]
    admission: AdmissionConfig
    authentication: AuthConfig
    authorisation: StageConfig
    rate_limits: RateLimitConfig
    validation: ValidationConfig
    model_timeout_s: float
    model_max_concurrency: int
    output: OutputConfig
    audit: AuditConfig
    metrics_enabled: bool
    detect: DetectConfig = DetectConfig("off", "fail_open")
    trusted_proxies: tuple[str, ...] = ()  # normalised CIDRs whose forwarded header is believed
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    upstream_tls: UpstreamTlsConfig | None = None

    def stage(self, name: str) -> StageConfig:
        stage: StageConfig = getattr(self, name)
        return stage

    def effective_modes(self) -> list[tuple[str, str, str]]:
        """(stage, mode, on_error) for the start-up printout (``detect`` only when it is on)."""
        names = (*STAGES, "detect") if self.detect.mode != "off" else STAGES
        return [(name, self.stage(name).mode, self.stage(name).on_error) for name in names]


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and key != "models":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_secret(ref: str, *, base: Path | None = None) -> bytes:
    """Read ``env:NAME`` or ``file:/path`` (relative to the config file's folder)."""
    if ref.startswith("env:"):
        value = os.environ.get(ref[4:])
        if not value:
            raise InputError(f"The secret {ref} is not set in the environment.")
        return value.encode()
    if ref.startswith("file:"):
        path = Path(ref[5:])
        if base is not None and not path.is_absolute():
            path = base / path
        try:
            return path.read_bytes().strip()
        except OSError as exc:
            raise InputError(f"The secret file {path} cannot be read: {exc.strerror}.") from None
    raise InputError(f"A secret must be a reference (env:NAME or file:/path), never the value. Got {ref[:6]!r}…")


def state_secret(state_dir: Path, name: str) -> bytes:
    """A random 32-byte secret kept in ``state_dir/name`` (0600), created on first use."""
    return create_once(state_dir / name, secrets.token_hex(32).encode()).strip()


def schema_errors(raw: Any) -> list[str]:
    """Every JSON Schema violation of ``raw``, as ``path: message`` lines (never echoing a secret)."""
    return [f"{where}: {message}" for where, message, _ in validate(raw)]


def parse_config(
    raw: Mapping[str, Any] | None,
    *,
    source: str = "(defaults)",
    base: Path | None = None,
    state_dir: Path | None = None,
) -> GatewayConfig:
    """Validate ``raw`` (a parsed YAML mapping, or ``None`` for the safe defaults) and build the config."""
    raw = dict(raw or {"version": 1})
    errors = schema_errors(raw)
    if errors:
        raise InputError(f"The gateway config {source} is invalid:\n  " + "\n  ".join(errors))
    merged = _merge(DEFAULTS, raw)
    base = base or Path.cwd()
    server = merged["server"]
    if state_dir is None:
        state_dir = Path(server["state_dir"])
        if not state_dir.is_absolute():
            state_dir = base / state_dir
    merged["server"]["state_dir"] = str(state_dir)
    stages = merged["stages"]
    audit = stages["audit"]
    audit.setdefault("ledger", f"sqlite:///{state_dir / 'audit.db'}")
    audit.setdefault("signing_key", str(state_dir / "ledger.key"))
    config_hash = (
        "sha256:" + hashlib.sha256(json.dumps(merged, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    )
    auth = stages["authentication"]
    jwt_raw = auth.get("jwt")
    jwt = None
    if jwt_raw:
        if not (jwt_raw.get("jwks_file") or jwt_raw.get("jwks_url")):
            raise InputError(f"The gateway config {source} is invalid: jwt needs jwks_file or jwks_url.")
        jwks_file = jwt_raw.get("jwks_file")
        if jwks_file and not Path(jwks_file).is_absolute():
            jwks_file = str(base / jwks_file)
        jwt = JwtConfig(
            issuer=jwt_raw["issuer"],
            audience=jwt_raw["audience"],
            jwks_file=jwks_file,
            jwks_url=jwt_raw.get("jwks_url"),
            algorithms=tuple(jwt_raw.get("algorithms", ("RS256", "ES256", "EdDSA"))),
            leeway_s=float(jwt_raw.get("leeway_s", 0.0)),
            jwks_max_age_s=float(jwt_raw.get("jwks_max_age_s", 300.0)),
            jwks_min_refresh_s=float(jwt_raw.get("jwks_min_refresh_s", 30.0)),
            jwks_timeout_s=float(jwt_raw.get("jwks_timeout_s", 5.0)),
        )
    models = {}
    for name, spec in (merged.get("models") or {}).items():
        path, profile = spec.get("path"), spec.get("profile")
        models[name] = ModelConfig(
            name=name,
            path=str(base / path) if path and not Path(path).is_absolute() else path,
            input_shape=tuple(spec["input_shape"]) if spec.get("input_shape") else None,
            version=str(spec.get("version", "1")),
            profile=str(base / profile) if profile and not Path(profile).is_absolute() else profile,
            upstream_path=spec.get("upstream_path"),
            routes=tuple(spec.get("routes", ())),
        )
    upstream = merged.get("upstream") or {}
    upstream_tls = _upstream_tls(upstream, base, source)
    trusted_proxies = _trusted_proxies(server.get("trusted_proxies") or [], source)
    out = stages["output"]
    rl = stages["rate_limits"]
    adm = stages["admission"]
    return GatewayConfig(
        raw=merged,
        hash=config_hash,
        source=source,
        state_dir=state_dir,
        host=server["host"],
        port=int(server["port"]),
        workers=int(server["workers"]),
        upstream_url=upstream.get("url"),
        upstream_timeout_s=float(upstream.get("timeout_s", 10.0)),
        upstream_allow_remote=bool(upstream.get("allow_remote", False)),
        models=models,
        admission=AdmissionConfig(
            adm["mode"],
            adm["on_error"],
            int(adm["max_body_bytes"]),
            int(adm["max_batch"]),
            int(adm["max_elements"]),
            float(adm["request_timeout_s"]),
        ),
        authentication=AuthConfig(
            auth["mode"],
            auth["on_error"],
            bool(auth["api_keys"]),
            auth["failed_per_source"],
            auth["failed_global"],
            jwt,
        ),
        authorisation=StageConfig(stages["authorisation"]["mode"], stages["authorisation"]["on_error"]),
        rate_limits=RateLimitConfig(
            rl["mode"],
            rl["on_error"],
            rl["storage"],
            rl.get("per_identity"),
            rl.get("per_identity_model"),
            rl.get("per_source"),
            rl.get("daily_quota"),
            rl["cost"],
        ),
        validation=ValidationConfig(
            stages["validation"]["mode"], stages["validation"]["on_error"], float(stages["validation"]["max_ood_score"])
        ),
        model_timeout_s=float(stages["model"]["timeout_s"]),
        model_max_concurrency=int(stages["model"]["max_concurrency"]),
        output=OutputConfig(
            out["mode"],
            out["on_error"],
            bool(out["label_only"]),
            out.get("round_digits"),
            float(out["noise_scale"]),
            tuple(out.get("strip_fields", ())),
            out.get("top_k"),
            resolve_secret(out["noise_key"], base=base) if out.get("noise_key") else None,
        ),
        audit=AuditConfig(
            audit["mode"],
            audit["on_error"],
            audit["ledger"],
            bool(audit["durable"]),
            int(audit["checkpoint_every"]),
            float(audit["checkpoint_interval_s"]),
            str(base / audit["signing_key"]) if not Path(audit["signing_key"]).is_absolute() else audit["signing_key"],
            resolve_secret(audit["hmac_key"], base=base) if audit.get("hmac_key") else None,
            audit["writer"],
        ),
        metrics_enabled=bool(stages["metrics"]["enabled"]),
        detect=DetectConfig(stages["detect"]["mode"], stages["detect"]["on_error"], dict(stages["detect"])),
        trusted_proxies=trusted_proxies,
        forwarded_header=server.get("forwarded_header", "x-forwarded-for"),
        upstream_tls=upstream_tls,
    )


def _trusted_proxies(cidrs: list[str], source: str) -> tuple[str, ...]:
    import ipaddress

    if len(cidrs) > MAX_TRUSTED_PROXIES:
        raise InputError(f"The gateway config {source} lists more than {MAX_TRUSTED_PROXIES} trusted proxies.")
    out = []
    for cidr in cidrs:
        try:
            out.append(str(ipaddress.ip_network(cidr, strict=False)))
        except ValueError:
            raise InputError(
                f"The gateway config {source} is invalid: server.trusted_proxies: {cidr!r} is not an address or CIDR."
            ) from None
    return tuple(out)


def _upstream_tls(upstream: Mapping[str, Any], base: Path, source: str) -> UpstreamTlsConfig | None:
    tls = upstream.get("tls")
    if tls is None:
        return None
    if not str(upstream.get("url", "")).startswith("https://"):
        raise InputError(f"The gateway config {source} is invalid: upstream.tls needs an https:// upstream.url.")
    if bool(tls.get("cert_file")) != bool(tls.get("key_file")):
        raise InputError(f"The gateway config {source} is invalid: upstream.tls needs both cert_file and key_file.")

    def where(name: str) -> str | None:
        value = tls.get(name)
        return str(base / value) if value and not Path(value).is_absolute() else value

    return UpstreamTlsConfig(where("ca_file"), where("cert_file"), where("key_file"), bool(tls.get("verify", True)))


def load_config(path: str | Path | None, *, state_dir: Path | None = None) -> GatewayConfig:
    """Read, validate and build the config at ``path`` (``None``: the safe defaults)."""
    if path is None:
        return parse_config(None, state_dir=state_dir)
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"The gateway config {path} cannot be read: {exc.strerror}.") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"The gateway config {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise InputError(f"The gateway config {path} must be a mapping with at least `version: 1`.")
    return parse_config(raw, source=str(path), base=path.resolve().parent, state_dir=state_dir)
