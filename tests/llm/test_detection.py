"""Detection figures on the held-out families (never seen in training or calibration).

Floors sit a few points under the measured values (see docs/benchmarks_llm.md) so that a regression fails.
"""

from __future__ import annotations

import random
import re

import pytest

from hoplon.llm.converters import CONVERTERS, EVASIONS
from hoplon.llm.corpus import Item
from hoplon.llm.evaluation import auroc, tpr_at_fpr
from hoplon.llm.firewall import Firewall

KEYWORDS = re.compile(r"ignore|disregard|instructions|system prompt|jailbreak|pretend|developer mode|reveal", re.I)


@pytest.fixture(scope="module")
def scored(firewall: Firewall, held_out: list[Item]) -> tuple[list[Item], list[float]]:
    return held_out, [firewall.scan_input(it.text, channel=it.channel).score for it in held_out]


def _split(items: list[Item], scores: list[float]) -> tuple[list[float], list[float]]:
    pos = [s for it, s in zip(items, scores, strict=True) if it.label]
    neg = [s for it, s in zip(items, scores, strict=True) if not it.label]
    return pos, neg


def test_held_out_tpr_at_1pct_fpr_beats_the_baselines(scored: tuple[list[Item], list[float]]) -> None:
    items, scores = scored
    pos, neg = _split(items, scores)
    assert len(pos) >= 150 and len(neg) >= 300
    ours = tpr_at_fpr(pos, neg, 0.01)
    length = _split(items, [float(len(it.text)) for it in items])
    keyword = _split(items, [float(len(KEYWORDS.findall(it.text))) for it in items])
    assert ours >= 0.90  # measured 0.953 on this smaller build, 0.941 in the benchmark
    assert ours >= tpr_at_fpr(*length, 0.01)
    assert ours >= tpr_at_fpr(*keyword, 0.01)
    assert auroc(pos, neg) >= 0.98  # measured 0.994


def test_calibrated_block_threshold_keeps_false_positives_low(
    firewall: Firewall, scored: tuple[list[Item], list[float]]
) -> None:
    items, scores = scored
    neg = [(it, s) for it, s in zip(items, scores, strict=True) if not it.label]
    blocked = [it for it, s in neg if s >= firewall.thresholds(it.channel)["block"]]
    # Calibrated for 1 % FPR on out-of-family scores (cross-validation by family over train + val, 95 % upper
    # bound and mean per-family FPR under the target), never on these families: measured 0 blocked here (and
    # 0 of 1,198 in the benchmark), including the "act as ..." role-play and "ignore the previous email" families.
    assert len(blocked) / len(neg) <= 0.01
    hard = [(it, s) for it, s in neg if it.hard_negative]
    hard_blocked = [it for it, s in hard if s >= firewall.thresholds(it.channel)["block"]]
    assert len(hard_blocked) / len(hard) <= 0.03
    # The price of the margin: block recall at the shipped thresholds, measured 0.843 here (0.811 in the benchmark).
    pos = [(it, s) for it, s in zip(items, scores, strict=True) if it.label]
    assert sum(s >= firewall.thresholds(it.channel)["block"] for it, s in pos) / len(pos) >= 0.78


@pytest.mark.parametrize("name", EVASIONS)
def test_recall_drop_under_each_evasion_is_at_most_5pp(
    name: str, firewall: Firewall, scored: tuple[list[Item], list[float]]
) -> None:
    items, scores = scored
    pos = [(it, s) for it, s in zip(items, scores, strict=True) if it.label][:120]
    rng = random.Random(0)

    def blocked(it: Item, s: float) -> bool:
        return s >= firewall.thresholds(it.channel)["block"]

    plain = sum(blocked(it, s) for it, s in pos) / len(pos)
    converted = [firewall.scan_input(CONVERTERS[name](it.text, rng), channel=it.channel).score for it, _ in pos]
    evaded = sum(blocked(it, s) for (it, _), s in zip(pos, converted, strict=True)) / len(pos)
    assert plain - evaded <= 0.05, (plain, evaded)
