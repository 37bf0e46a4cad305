"""Render a report's findings as SARIF 2.1.0, the format GitHub code scanning and most CI dashboards read.

One run; the driver ``hoplon`` carries one rule per distinct finding id, with the remediation as help text,
the taxonomy ids as tags and GitHub's ``security-severity`` score. Each finding becomes a result located at
the file its evidence names, else at the asset it examined.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from hoplon.core.errors import InputError
from hoplon.core.taxonomy import describe

if TYPE_CHECKING:
    from hoplon.core.report import Report

__all__ = ["SARIF_SCHEMA_URI", "SARIF_VERSION", "SECURITY_SEVERITY", "render_sarif", "sarif_level"]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
_LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
_RANK = ("info", "low", "medium", "high", "critical")
_EVIDENCE_PATH_KEYS = ("path", "file", "artifact", "uri")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SAFE = "/-._~!$&'()*+,;=@"  # RFC 3986 path characters, without ':' so 'digits:test' is not read as a scheme


def sarif_level(severity: str) -> str:
    """``critical``/``high`` → ``error``, ``medium`` → ``warning``, ``low``/``info`` → ``note``."""
    return _LEVELS.get(severity, "note")


def _severity(value: Any) -> str:
    text = str(value).lower()
    return text if text in _RANK else "info"


def _uri(location: str) -> str:
    """A valid SARIF ``artifactLocation.uri`` for a path, URL or asset name."""
    if _URL.match(location):
        return location
    if PureWindowsPath(location).drive:
        return PureWindowsPath(location).as_uri()
    if location.startswith("/"):
        return PurePosixPath(location).as_uri()
    return urllib.parse.quote(location.replace("\\", "/"), safe=_SAFE) or "unknown"


def _evidence_path(evidence: Any) -> str | None:
    if not isinstance(evidence, Mapping):
        return None
    for key in _EVIDENCE_PATH_KEYS:
        value = evidence.get(key)
        if isinstance(value, str) and value:
            return value
    paths = evidence.get("paths")
    if isinstance(paths, list) and paths and isinstance(paths[0], str) and paths[0]:
        return paths[0]
    return None


def _text(value: Any, fallback: str) -> str:
    text = str(value).strip() if value is not None else ""
    return text or fallback


def _help_markdown(finding: Mapping[str, Any], title: str) -> str:
    lines = [f"**Remediation.** {_text(finding.get('remediation'), title)}"]
    tags = [str(t) for t in finding.get("taxonomy", []) or []]
    if tags:
        lines += ["", "**Taxonomy.**", ""]
        for tag in tags:
            try:
                lines.append(f"- `{tag}` {describe(tag)}")
            except InputError:
                lines.append(f"- `{tag}`")
    return "\n".join(lines)


def _rule(finding: Mapping[str, Any], severity: str) -> dict[str, Any]:
    fid = str(finding["id"])
    title = _text(finding.get("title"), fid)
    tags = [str(t) for t in finding.get("taxonomy", []) or []]
    return {
        "id": fid,
        "name": title,
        "shortDescription": {"text": title},
        "fullDescription": {"text": _text(finding.get("summary"), title)},
        "help": {"text": _text(finding.get("remediation"), title), "markdown": _help_markdown(finding, title)},
        "defaultConfiguration": {"level": sarif_level(severity)},
        "properties": {
            "tags": ["security", *dict.fromkeys(tags)],
            "security-severity": SECURITY_SEVERITY[severity],
            "problem.severity": "error" if severity in ("critical", "high") else sarif_level(severity),
        },
    }


def render_sarif(report: Report) -> dict[str, Any]:
    """Return the report's findings as a SARIF 2.1.0 log (a JSON-ready ``dict``)."""
    return render_sarif_dict(report.to_dict())


def render_sarif_dict(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Render the JSON form of a report (``Report.to_dict()``) as SARIF."""
    meta = doc.get("meta", {}) if isinstance(doc.get("meta"), Mapping) else {}
    assets = {str(a.get("name")): a for a in doc.get("assets", []) or [] if isinstance(a, Mapping)}
    findings = [f for f in doc.get("findings", []) or [] if isinstance(f, Mapping) and f.get("id")]
    worst: dict[str, str] = {}
    for f in findings:
        fid, sev = str(f["id"]), _severity(f.get("severity"))
        if fid not in worst or _RANK.index(sev) > _RANK.index(worst[fid]):
            worst[fid] = sev
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for f in findings:
        fid = str(f["id"])
        if fid not in index:
            index[fid] = len(rules)
            rules.append(_rule(f, worst[fid]))
    results = []
    for f in findings:
        fid, sev = str(f["id"]), _severity(f.get("severity"))
        asset_name = str(f.get("asset", ""))
        location = _evidence_path(f.get("evidence")) or asset_name or "unknown"
        asset = assets.get(asset_name)
        artifact: dict[str, Any] = {"uri": _uri(location)}
        if asset is not None and asset.get("kind"):
            artifact["description"] = {"text": f"{asset.get('kind')} {asset_name}"}
        fingerprint = hashlib.sha256(f"{fid}\0{asset_name}\0{location}".encode()).hexdigest()
        results.append(
            {
                "ruleId": fid,
                "ruleIndex": index[fid],
                "level": sarif_level(sev),
                "message": {"text": _text(f.get("summary"), _text(f.get("title"), fid))},
                "locations": [
                    {
                        "physicalLocation": {"artifactLocation": artifact},
                        "logicalLocations": [{"name": asset_name or location, "kind": "resource"}],
                    }
                ],
                "partialFingerprints": {"hoplonFinding/v1": fingerprint},
                "properties": {
                    "severity": sev,
                    "title": _text(f.get("title"), fid),
                    "metrics": dict(f.get("metrics", {}) or {}),
                    "taxonomy": [str(t) for t in f.get("taxonomy", []) or []],
                    **({"asset_digest": asset["digest"]} if asset is not None and asset.get("digest") else {}),
                },
            }
        )
    version = _text(meta.get("hoplon_version"), "0+unknown")
    driver: dict[str, Any] = {"name": "hoplon", "version": version, "rules": rules}
    if re.fullmatch(r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?", version):
        driver["semanticVersion"] = version
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if meta.get("command"):
        invocation["commandLine"] = str(meta["command"])
    created = _utc(meta.get("created"))
    if created:
        invocation["startTimeUtc"] = created
    kind = _text(doc.get("kind"), "report")
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {"driver": driver},
                "automationDetails": {"id": f"hoplon/{kind}/"},
                "invocations": [invocation],
                "results": results,
                "properties": {"kind": kind, "seed": meta.get("seed"), "schema": doc.get("schema")},
            }
        ],
    }


def _utc(value: Any) -> str | None:
    """An ISO 8601 time as SARIF wants it (UTC, ``Z``); None when it does not parse."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
