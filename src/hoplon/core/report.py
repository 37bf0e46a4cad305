"""`Report`: the run's metadata, assets, findings, results and figures, serialised as JSON.

JSON is the truth: HTML, SARIF and Markdown are rendered from :meth:`Report.to_dict`, so a report can be
re-rendered or merged later. The layout is described by ``data/report.schema.json`` (``hoplon.report/v1``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hoplon.core.errors import InputError
from hoplon.core.finding import Finding, Severity

__all__ = ["REPORT_SCHEMA", "Asset", "Report", "environment", "hoplon_version", "json_safe", "report_schema"]

REPORT_SCHEMA = "hoplon.report/v1"


def hoplon_version() -> str:
    from importlib import metadata  # imported on use: it costs tens of ms at start-up

    try:
        return metadata.version("hoplon")
    except metadata.PackageNotFoundError:  # running from a source tree without installation
        return "0+unknown"


def environment() -> dict[str, str]:
    """Versions that matter for reproducing a run (no torch import if it is not loaded yet)."""
    import platform

    env = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for name in ("torch", "numpy", "onnxruntime", "sklearn"):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if version:
            env[name] = str(version)
    return env


def json_safe(value: Any) -> Any:
    """Turn NaN/inf into None and tuples into lists, recursively, so the JSON is strict."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Asset:
    """Something a report examined: a model, a dataset, a model file, an endpoint."""

    kind: str
    name: str
    digest: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "digest": self.digest, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Asset:
        return cls(
            kind=str(data["kind"]),
            name=str(data["name"]),
            digest=data.get("digest"),
            details=dict(data.get("details", {})),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """A run's outcome. ``results`` holds tables of rows (e.g. ``results["robustness"]``); ``figures``
    holds the data behind plots (curves, example images) so any renderer can draw them."""

    kind: str
    command: str = ""
    seed: int | None = None
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    version: str = field(default_factory=hoplon_version)
    env: Mapping[str, str] = field(default_factory=environment)
    assets: Sequence[Asset] = ()
    findings: Sequence[Finding] = ()
    results: Mapping[str, Any] = field(default_factory=dict)
    figures: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "assets", tuple(self.assets))
        object.__setattr__(self, "findings", tuple(self.findings))

    @property
    def max_severity(self) -> Severity:
        return max((f.severity for f in self.findings), default=Severity.INFO)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json_safe(
            {
                "schema": REPORT_SCHEMA,
                "kind": self.kind,
                "meta": {
                    "hoplon_version": self.version,
                    "command": self.command,
                    "seed": self.seed,
                    "created": self.created,
                    "environment": dict(self.env),
                    "config": dict(self.config),
                },
                "assets": [a.to_dict() for a in self.assets],
                "findings": [f.to_dict() for f in self.findings],
                "results": dict(self.results),
                "figures": dict(self.figures),
            }
        )
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        if data.get("schema") != REPORT_SCHEMA:
            raise InputError(f"Not a {REPORT_SCHEMA} document (schema={data.get('schema')!r}).")
        meta = data.get("meta", {})
        return cls(
            kind=str(data["kind"]),
            command=str(meta.get("command", "")),
            seed=meta.get("seed"),
            created=str(meta.get("created", "")),
            version=str(meta.get("hoplon_version", "")),
            env=dict(meta.get("environment", {})),
            config=dict(meta.get("config", {})),
            assets=tuple(Asset.from_dict(a) for a in data.get("assets", ())),
            findings=tuple(Finding.from_dict(f) for f in data.get("findings", ())),
            results=dict(data.get("results", {})),
            figures=dict(data.get("figures", {})),
        )

    @classmethod
    def read(cls, path: str | Path) -> Report:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"Cannot read report {path}: {exc}") from None


@cache
def report_schema() -> Mapping[str, Any]:
    """The JSON Schema of ``hoplon.report/v1`` shipped with the package."""
    text = resources.files("hoplon.core").joinpath("data/report.schema.json").read_text(encoding="utf-8")
    schema: Mapping[str, Any] = json.loads(text)
    return schema
