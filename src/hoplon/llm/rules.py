"""Signature rules of the lexical stage: regular expressions with ids, taxonomy tags and fixtures.

Rules live in ``data/rules.json``; each has an ``id``, a ``title``, a case-insensitive ``pattern``, a
``weight`` in (0, 1] (how strongly one match alone indicates an attack), ``triggers`` (substrings of which
any match must contain one: a cheap pre-filter, so most text runs no regular expression), taxonomy ``tags``,
and ``positives``
and ``negatives`` (hard negatives) that the test suite checks, so a rule that starts catching benign text or
missing its own examples fails CI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hoplon.core.errors import InputError
from hoplon.core.taxonomy import validate_ids

__all__ = ["RULES_FORMAT", "Rule", "RuleMatch", "default_rules", "load_rules"]

RULES_FORMAT = "hoplon.llm.rules/v1"


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule that matched: where (``view`` and offsets in that view's text) and what."""

    rule_id: str
    title: str
    weight: float
    tags: tuple[str, ...]
    view: str
    start: int
    end: int
    snippet: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "title": self.title,
            "weight": self.weight,
            "tags": list(self.tags),
            "view": self.view,
            "start": self.start,
            "end": self.end,
            "text": self.snippet,
        }


@dataclass(frozen=True, slots=True)
class Rule:
    """One signature rule (see the module docstring)."""

    id: str
    title: str
    pattern: re.Pattern[str]
    weight: float
    tags: tuple[str, ...]
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()

    def finditer(self, text: str, view: str) -> Iterator[RuleMatch]:
        if self.triggers and not any(t in text for t in self.triggers):
            return
        for m in self.pattern.finditer(text):
            yield RuleMatch(self.id, self.title, self.weight, self.tags, view, m.start(), m.end(), m.group(0)[:200])


def _parse(data: Mapping[str, Any], source: str) -> tuple[Rule, ...]:
    if data.get("format") != RULES_FORMAT:
        raise InputError(f"{source} is not a {RULES_FORMAT} file (format={data.get('format')!r}).")
    rules: list[Rule] = []
    seen: set[str] = set()
    for raw in data.get("rules", ()):
        try:
            rule_id = str(raw["id"])
            weight = float(raw["weight"])
            tags = tuple(str(t) for t in raw.get("tags", ()))
            pattern = re.compile(str(raw["pattern"]), re.I | re.M)
        except (KeyError, TypeError, ValueError, re.error) as exc:
            raise InputError(f"Bad rule in {source}: {exc}") from None
        if rule_id in seen:
            raise InputError(f"Duplicate rule id {rule_id!r} in {source}.")
        if not 0.0 < weight <= 1.0:
            raise InputError(f"The 'weight' of rule {rule_id} must be in (0, 1]. Got {weight}.")
        validate_ids(tags)
        seen.add(rule_id)
        rules.append(
            Rule(
                id=rule_id,
                title=str(raw.get("title", rule_id)),
                pattern=pattern,
                weight=weight,
                tags=tags,
                positives=tuple(raw.get("positives", ())),
                negatives=tuple(raw.get("negatives", ())),
                triggers=tuple(str(t).casefold() for t in raw.get("triggers", ())),
            )
        )
    return tuple(rules)


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    """Read a rules file (the format of ``data/rules.json``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read rules {path}: {exc}") from None
    return _parse(data, str(path))


@cache
def default_rules() -> tuple[Rule, ...]:
    """The rules shipped with hoplon."""
    text = resources.files("hoplon.llm").joinpath("data/rules.json").read_text(encoding="utf-8")
    return _parse(json.loads(text), "hoplon/llm/data/rules.json")


def match_all(rules: Sequence[Rule], views: Sequence[tuple[str, str]]) -> list[RuleMatch]:
    """Every match of every rule over ``(view name, text)`` pairs."""
    return [m for name, text in views for rule in rules for m in rule.finditer(text, name)]
