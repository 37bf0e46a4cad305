"""Probes as data: a suite file lists probes (id, tags, goal, template, judge, converter chains)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from hoplon.core.errors import InputError
from hoplon.core.taxonomy import validate_ids
from hoplon.llm.converters import CONVERTERS

__all__ = ["BUILTIN_SUITES", "JudgeKind", "Probe", "load_suite"]

JudgeKind = Literal["marker", "canary", "system_prompt", "tool_call", "exfil", "refusal"]
_JUDGES: tuple[str, ...] = get_args(JudgeKind)
BUILTIN_SUITES: dict[str, str] = {"owasp-llm01": "data/probes_owasp_llm01.json"}


@dataclass(frozen=True, slots=True)
class Probe:
    """One attack idea. ``template`` may hold ``{marker}``; each attempt applies one converter chain."""

    id: str
    goal: str
    tags: tuple[str, ...]
    template: str
    judge: JudgeKind
    converters: tuple[tuple[str, ...], ...]
    tool: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Probe:
        try:
            probe = cls(
                id=str(data["id"]),
                goal=str(data.get("goal", "")),
                tags=tuple(str(t) for t in data.get("tags", ())),
                template=str(data["template"]),
                judge=data["judge"],
                converters=tuple(tuple(str(c) for c in chain) for chain in data.get("converters", [["identity"]])),
                tool=data.get("tool"),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"Bad probe {data.get('id', '?')!r}: missing or invalid {exc}.") from None
        if probe.judge not in _JUDGES:
            raise InputError(f"Probe {probe.id}: judge must be one of {', '.join(_JUDGES)}. Got {probe.judge!r}.")
        if probe.judge == "tool_call" and not probe.tool:
            raise InputError(f"Probe {probe.id}: a tool_call judge needs 'tool'.")
        for chain in probe.converters:
            for name in chain:
                if name not in CONVERTERS:
                    raise InputError(f"Probe {probe.id}: unknown converter {name!r}.")
        if not probe.converters:
            raise InputError(f"Probe {probe.id}: needs at least one converter chain.")
        validate_ids(probe.tags)
        return probe


def load_suite(name_or_path: str) -> tuple[str, tuple[Probe, ...]]:
    """A built-in suite by name (``owasp-llm01``) or a suite file; returns ``(suite name, probes)``."""
    if name_or_path in BUILTIN_SUITES:
        text = resources.files("hoplon.llm").joinpath(BUILTIN_SUITES[name_or_path]).read_text(encoding="utf-8")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            known = ", ".join(BUILTIN_SUITES)
            raise InputError(f"Unknown suite {name_or_path!r}: not a built-in ({known}) and not a file.")
        text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"Cannot parse suite {name_or_path}: {exc}") from None
    if data.get("format") != "hoplon.llm.probes/v1":
        raise InputError(f"{name_or_path} is not a hoplon.llm.probes/v1 suite.")
    probes = tuple(Probe.from_dict(p) for p in data.get("probes", ()))
    if len({p.id for p in probes}) != len(probes):
        raise InputError(f"Duplicate probe ids in {name_or_path}.")
    return str(data.get("suite", name_or_path)), probes
