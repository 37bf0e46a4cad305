"""The LLM firewall policy: thresholds, allowlists, output actions, limits and proxy behaviour.

A policy is a YAML, JSON or TOML file (``llm.yaml``) parsed into frozen dataclasses and validated; an unknown
key is an error, so a typo never silently weakens a deployment. Every field has a safe default, so an empty
file (or no file) is the default policy.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from hoplon.core.errors import InputError

__all__ = ["CHANNELS", "Action", "Channel", "InputPolicy", "OutputPolicy", "Policy", "ProxyPolicy"]

Channel = Literal["user", "retrieved", "tool", "email", "system"]
CHANNELS: tuple[str, ...] = get_args(Channel)
Action = Literal["block", "redact", "review", "off"]
_ACTIONS: tuple[str, ...] = get_args(Action)


@dataclass(frozen=True, slots=True, kw_only=True)
class InputPolicy:
    """How inputs are scanned.

    Args:
        thresholds: per channel ``{"review": t, "block": t}`` on the 0..1 score; missing channels use the
            thresholds calibrated with the shipped model.
        allowlist: phrases (case-insensitive) removed before scanning, for text a deployment knows is fine.
        max_chars: characters scanned at most (the rest is flagged ``truncated``; over-limit input is at
            least ``review``).
        semantic: ``off``, ``auto`` (untrusted channels and uncertain scores) or ``always``.
        model_path: a custom n-gram model (JSON); ``None`` uses the shipped one.
        rules_path: a custom rules file; ``None`` uses the shipped one.
    """

    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    allowlist: tuple[str, ...] = ()
    max_chars: int = 200_000
    semantic: Literal["off", "auto", "always"] = "off"
    model_path: str | None = None
    rules_path: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputPolicy:
    """What happens when an output scanner fires. ``allowed_domains``: hosts links and images may point to."""

    secrets: Action = "redact"
    pii: Action = "redact"
    leakage: Action = "block"
    exfil: Action = "block"
    allowed_domains: tuple[str, ...] = ()
    leak_containment: float = 0.6


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyPolicy:
    """Reverse-proxy behaviour: what to do when the upstream fails, limits, and what the audit log keeps."""

    fail_mode: Literal["closed", "open"] = "closed"
    upstream_timeout_s: float = 60.0
    max_request_bytes: int = 1_000_000
    max_messages: int = 256
    max_tokens: int = 4096
    max_prompt_tokens: int = 32_000
    log_prompts: bool = False
    audit_path: str = "hoplon-llm-audit.jsonl"
    canary: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """The whole policy; see the section classes."""

    input: InputPolicy = field(default_factory=InputPolicy)
    output: OutputPolicy = field(default_factory=OutputPolicy)
    proxy: ProxyPolicy = field(default_factory=ProxyPolicy)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        _known(data, {"version", "input", "output", "proxy"}, "policy")
        return cls(
            input=_section(InputPolicy, data.get("input") or {}, "input"),
            output=_section(OutputPolicy, data.get("output") or {}, "output"),
            proxy=_section(ProxyPolicy, data.get("proxy") or {}, "proxy"),
        )

    @classmethod
    def load(cls, path: str | Path | None) -> Policy:
        """Read a policy file (``.yaml``/``.yml``, ``.json`` or ``.toml``); ``None`` gives the defaults."""
        if path is None:
            return cls()
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"Cannot read policy {p}: {exc.strerror or exc}") from None
        try:
            if p.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            elif p.suffix == ".toml":
                data = tomllib.loads(text)
            else:
                data = json.loads(text or "{}")
        except Exception as exc:  # any parser's error becomes one clear message
            raise InputError(f"Cannot parse policy {p}: {exc}") from None
        if not isinstance(data, Mapping):
            raise InputError(f"Policy {p} must be a mapping at the top level.")
        return cls.from_dict(data)


def _known(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InputError(f"Unknown key(s) in the {where} section of the policy: {', '.join(unknown)}.")


def _section(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise InputError(f"The {where} section of the policy must be a mapping.")
    names = {f.name for f in fields(cls)}
    _known(data, names, where)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("allowlist", "allowed_domains"):
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise InputError(f"The '{key}' of the {where} policy must be a list of strings.")
            value = tuple(value)
        values[key] = value
    obj = cls(**values)
    _validate(obj, where)
    return obj


def _validate(obj: Any, where: str) -> None:
    if isinstance(obj, OutputPolicy):
        for name in ("secrets", "pii", "leakage", "exfil"):
            if getattr(obj, name) not in _ACTIONS:
                raise InputError(
                    f"The '{name}' action of the output policy must be one of {', '.join(_ACTIONS)}. "
                    f"Got {getattr(obj, name)!r}."
                )
        if not 0.0 < float(obj.leak_containment) <= 1.0:
            raise InputError(f"'leak_containment' must be in (0, 1]. Got {obj.leak_containment!r}.")
    if isinstance(obj, InputPolicy):
        if obj.semantic not in ("off", "auto", "always"):
            raise InputError(f"'semantic' must be off, auto or always. Got {obj.semantic!r}.")
        if not isinstance(obj.max_chars, int) or obj.max_chars < 1:
            raise InputError(f"'max_chars' must be a positive integer. Got {obj.max_chars!r}.")
        for channel, t in obj.thresholds.items():
            if channel not in CHANNELS or not isinstance(t, Mapping) or set(t) - {"review", "block"}:
                raise InputError(f"Bad thresholds for channel {channel!r} in the {where} policy.")
    if isinstance(obj, ProxyPolicy):
        if obj.fail_mode not in ("closed", "open"):
            raise InputError(f"'fail_mode' must be closed or open. Got {obj.fail_mode!r}.")
        for name in ("max_request_bytes", "max_messages", "max_tokens", "max_prompt_tokens"):
            value = getattr(obj, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"'{name}' of the proxy policy must be a positive integer. Got {value!r}.")
