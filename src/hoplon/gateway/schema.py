"""The JSON Schema of ``hoplon.yaml`` (``hoplon config schema`` prints it; ``hoplon config check`` applies it).

The schema lives in Python so it ships with the package without data-file declarations; the defaults here
are the *safe* defaults that apply when no config file is given.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONFIG_SCHEMA", "SCHEMA_ID"]

SCHEMA_ID = "https://hoplon.dev/schema/gateway-config/v1.json"

_MODE = {"enum": ["enforce", "shadow", "off"], "description": "enforce: deny; shadow: record only; off: skip."}
_ON_ERROR = {
    "enum": ["fail_open", "fail_closed"],
    "description": "What a failure *inside* the stage (e.g. Redis down) does: let the request pass, or refuse it.",
}
_RATE = {"type": "string", "pattern": r"^\s*\d+\s*(/|per)\s*\d*\s*(second|minute|hour|day)s?\s*$"}
_SECRET = {
    "type": "string",
    "pattern": r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$",
    "description": "A reference, never the secret: env:NAME or file:/path.",
}


def _detector(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "enabled": {"type": "boolean"},
            "action": {"enum": ["log", "alert", "throttle", "degrade", "block"]},
            **extra,
        },
    }


_POS_INT = {"type": "integer", "minimum": 1}
_POS_NUM = {"type": "number", "exclusiveMinimum": 0}
_DETECT: dict[str, Any] = {
    "inline": {"type": "boolean", "description": "Run detectors before answering (tests); default: a worker."},
    "storage": {
        "type": "string",
        "pattern": r"^(memory(://)?|(redis|rediss|unix)://.+)$",
        "description": "Where detector state lives: memory (one process) or redis://host:port/db (shared by workers).",
    },
    "key_prefix": {"type": "string", "minLength": 1, "maxLength": 128, "description": "Redis key prefix."},
    "state_ttl_s": _POS_NUM,
    "cache_s": {"type": "number", "minimum": 0, "description": "Redis: containment cache on the hot path."},
    "queue_size": _POS_INT,
    "max_lag": {
        "type": "integer",
        "minimum": 0,
        "description": "Most queued, not yet analysed queries per identity before it gets 429 (0: no bound).",
    },
    "max_identities": _POS_INT,
    "input_range": {"type": "array", "items": {"type": "number"}, "minItems": 2},
    "max_action": {"enum": ["log", "alert", "throttle", "degrade", "block"]},
    "throttle_per_s": _POS_NUM,
    "quarantine_s": _POS_NUM,
    "prada": _detector(
        {
            "delta": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "min_queries": {"type": "integer", "minimum": 3},
            "window": _POS_INT,
            "growing_cap": _POS_INT,
            "test_every": _POS_INT,
        }
    ),
    "similarity": _detector({"k": _POS_INT, "buffer": _POS_INT, "threshold": _POS_NUM, "hits": _POS_INT}),
    "shared": _detector({"capacity": _POS_INT, "threshold": _POS_NUM, "hits": _POS_INT, "window": _POS_INT}),
    "volume": _detector({"budget": _POS_INT}),
    "low_margin": _detector(
        {
            "margin": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "window": _POS_INT,
            "min_queries": _POS_INT,
        }
    ),
}


def _stage(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {"mode": _MODE, "on_error": _ON_ERROR, **extra},
    }


CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "hoplon gateway configuration",
    "type": "object",
    "additionalProperties": False,
    "required": ["version"],
    "properties": {
        "version": {"const": 1},
        "server": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "host": {"type": "string"},
                "port": {"type": "integer", "minimum": 0, "maximum": 65535},
                "workers": {"type": "integer", "minimum": 1, "maximum": 256},
                "state_dir": {"type": "string"},
                "trusted_proxies": {
                    "type": "array",
                    "items": {"type": "string", "pattern": r"^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$"},
                    "description": "CIDRs of reverse proxies whose forwarded header is believed (default: none).",
                },
                "forwarded_header": {
                    "enum": ["x-forwarded-for", "forwarded"],
                    "description": "The header the trusted proxies append the client to: X-Forwarded-For "
                    "(default) or RFC 7239 Forwarded (its for= parameter). Only that one is read.",
                },
            },
        },
        "upstream": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "pattern": "^https?://"},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0},
                "allow_remote": {"type": "boolean"},
                "tls": {
                    "type": "object",
                    "additionalProperties": False,
                    "description": "TLS to an https:// upstream (CA bundle, optional client certificate).",
                    "properties": {
                        "ca_file": {"type": "string"},
                        "cert_file": {"type": "string"},
                        "key_file": {"type": "string"},
                        "verify": {"type": "boolean"},
                    },
                },
            },
        },
        "registry": {
            "type": "object",
            "additionalProperties": False,
            "required": ["root"],
            "description": "Serve every model of a hoplon model registry (in-process form; see docs/registry.md).",
            "properties": {
                "root": {"type": "string", "description": "The registry folder (relative to this file)."},
                "require_signature": {"type": "boolean"},
                "public_key": {"type": "string", "description": "Verify each blob's stored signature at load."},
                "poll_s": {"type": "number", "minimum": 0.05, "maximum": 3600},
                "verify_s": {"type": "number", "minimum": 0.05, "maximum": 86400},
                "max_cached": {"type": "integer", "minimum": 1, "maximum": 1024},
            },
        },
        "models": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "path": {"type": "string", "description": "Model file (in-process form)."},
                    "input_shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1},
                    "version": {"type": "string"},
                    "profile": {"type": "string", "description": "profile.json written by `hoplon profile`."},
                    "upstream_path": {"type": "string", "description": "Path on the upstream (sidecar form)."},
                    "routes": {"type": "array", "items": {"type": "string", "pattern": "^/"}},
                },
            },
        },
        "stages": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "admission": _stage(
                    {
                        "max_body_bytes": {"type": "integer", "minimum": 64},
                        "max_batch": {"type": "integer", "minimum": 1},
                        "max_elements": {"type": "integer", "minimum": 1},
                        "request_timeout_s": {"type": "number", "exclusiveMinimum": 0},
                    }
                ),
                "authentication": _stage(
                    {
                        "api_keys": {"type": "boolean"},
                        "jwt": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["issuer", "audience"],
                            "properties": {
                                "issuer": {"type": "string"},
                                "audience": {"type": "string"},
                                "jwks_file": {"type": "string"},
                                "jwks_url": {"type": "string", "pattern": "^https?://"},
                                "algorithms": {
                                    "type": "array",
                                    "items": {"enum": ["RS256", "ES256", "EdDSA", "PS256"]},
                                },
                                "leeway_s": {"type": "number", "minimum": 0, "maximum": 300},
                                "jwks_max_age_s": {"type": "number", "minimum": 1, "maximum": 86400},
                                "jwks_min_refresh_s": {"type": "number", "minimum": 0.1, "maximum": 3600},
                                "jwks_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
                            },
                        },
                        "failed_per_source": _RATE,
                        "failed_global": _RATE,
                    }
                ),
                "authorisation": _stage({}),
                "rate_limits": _stage(
                    {
                        "storage": {"type": "string", "pattern": "^(memory://|redis://|rediss://)"},
                        "per_identity": _RATE,
                        "per_identity_model": _RATE,
                        "per_source": _RATE,
                        "daily_quota": {"type": "integer", "minimum": 1, "description": "Rows per identity per day."},
                        "cost": {"enum": ["batch", "request"]},
                    }
                ),
                "validation": _stage({"max_ood_score": {"type": "number", "minimum": 0}}),
                "detect": _stage(_DETECT),
                "model": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "timeout_s": {"type": "number", "exclusiveMinimum": 0},
                        "max_concurrency": {"type": "integer", "minimum": 1},
                    },
                },
                "output": _stage(
                    {
                        "label_only": {"type": "boolean"},
                        "top_k": {"type": "integer", "minimum": 1},
                        "round_digits": {"type": "integer", "minimum": 0, "maximum": 8},
                        "noise_scale": {"type": "number", "minimum": 0, "maximum": 1},
                        "noise_key": _SECRET,
                        "strip_fields": {"type": "array", "items": {"type": "string"}},
                    }
                ),
                "audit": _stage(
                    {
                        "ledger": {"type": "string", "pattern": "^(sqlite:///|postgresql://|postgres://)"},
                        "durable": {"type": "boolean"},
                        "writer": {"enum": ["process", "thread"]},
                        "hmac_key": _SECRET,
                        "signing_key": {"type": "string"},
                        "checkpoint_every": {"type": "integer", "minimum": 1},
                        "checkpoint_interval_s": {"type": "number", "exclusiveMinimum": 0},
                    }
                ),
                "metrics": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"enabled": {"type": "boolean"}},
                },
            },
        },
    },
}


def validate(
    instance: Any, schema: dict[str, Any] | None = None, path: tuple[str, ...] = ()
) -> list[tuple[str, str, bool]]:
    """Check ``instance`` against the JSON Schema subset :data:`CONFIG_SCHEMA` uses.

    Returns ``(path, message, is_secret_field)`` per violation. The keywords are those of the shipped schema
    (type, const, enum, pattern, minimum, maximum, exclusiveMinimum, minItems, minProperties, required,
    properties, additionalProperties, items); the tests check this agrees with ``jsonschema`` (Draft 2020-12),
    which is not imported here because its import alone takes seconds in some environments and every
    gateway worker loads the config.
    """
    import re

    schema = CONFIG_SCHEMA if schema is None else schema
    where = ".".join(path) or "(top)"
    errors: list[tuple[str, str, bool]] = []
    secret = "never the secret" in str(schema.get("description", ""))
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if kind is not None and not checks[kind](instance):
        return [(where, f"{instance!r} is not of type {kind!r}" if not secret else str(schema["description"]), secret)]
    if "const" in schema and instance != schema["const"]:
        errors.append((where, f"{schema['const']!r} was expected", secret))
    if "enum" in schema and instance not in schema["enum"]:
        errors.append((where, f"{instance!r} is not one of {schema['enum']!r}", secret))
    if "pattern" in schema and isinstance(instance, str) and not re.search(schema["pattern"], instance):
        shown = str(schema["description"]) if secret else f"{instance!r} does not match {schema['pattern']!r}"
        errors.append((where, shown, secret))
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append((where, f"{instance} is less than the minimum of {schema['minimum']}", False))
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append((where, f"{instance} is greater than the maximum of {schema['maximum']}", False))
        if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
            errors.append((where, f"{instance} must be greater than {schema['exclusiveMinimum']}", False))
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            errors.append((where, f"{instance!r} should have at least {schema['minItems']} items", False))
        if "items" in schema:
            for i, item in enumerate(instance):
                errors.extend(validate(item, schema["items"], (*path, str(i))))
    if isinstance(instance, dict):
        if len(instance) < schema.get("minProperties", 0):
            errors.append((where, f"{instance!r} should have at least {schema['minProperties']} properties", False))
        for name in schema.get("required", ()):
            if name not in instance:
                errors.append((where, f"{name!r} is a required property", False))
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, value in instance.items():
            if name in properties:
                errors.extend(validate(value, properties[name], (*path, str(name))))
            elif extra is False:
                errors.append((where, f"Additional properties are not allowed ({name!r} was unexpected)", False))
            elif isinstance(extra, dict):
                errors.extend(validate(value, extra, (*path, str(name))))
    return errors
