from __future__ import annotations

import json
from pathlib import Path

import pytest

from hoplon.core.errors import InputError
from hoplon.core.taxonomy import validate_ids
from hoplon.llm.normalize import normalize
from hoplon.llm.rules import Rule, default_rules, load_rules

RULES = default_rules()


def test_rules_have_unique_ids_tags_and_fixtures() -> None:
    assert len({r.id for r in RULES}) == len(RULES) >= 10
    for rule in RULES:
        validate_ids(rule.tags)
        assert rule.tags, rule.id
        assert rule.positives and rule.negatives, rule.id


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_rule_matches_its_positives_and_spares_its_hard_negatives(rule: Rule) -> None:
    for text in rule.positives:
        assert list(rule.finditer(normalize(text).text, "main")), f"{rule.id} missed {text!r}"
    for text in rule.negatives:
        assert not list(rule.finditer(normalize(text).text, "main")), f"{rule.id} fired on {text!r}"


def test_custom_rules_file_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "rules.json"
    bad.write_text(json.dumps({"format": "hoplon.llm.rules/v1", "rules": [
        {"id": "x", "pattern": "a", "weight": 0.5, "tags": ["owasp-llm:LLM99"]}]}))  # fmt: skip
    with pytest.raises(InputError, match="LLM99"):
        load_rules(bad)
    bad.write_text(json.dumps({"format": "hoplon.llm.rules/v1", "rules": [{"id": "x", "pattern": "(", "weight": 1}]}))
    with pytest.raises(InputError, match="Bad rule"):
        load_rules(bad)
