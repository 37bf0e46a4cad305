"""Calibration of the block/review thresholds: margin, per-family mean, folds by family, fixed extra families."""

from __future__ import annotations

from hoplon.llm._corpus_extra import EXTRA_BENIGN
from hoplon.llm.corpus import Item, split_by_family
from hoplon.llm.evaluation import threshold_at_fpr, wilson_interval
from hoplon.llm.ngram import default_model
from hoplon.llm.train import calibrate, family_folds


def test_margin_keeps_the_upper_confidence_bound_under_the_target() -> None:
    scores = [0.5 + i / 4000 for i in range(2000)]  # 2,000 benign scores spread over [0.5, 1)
    plain = calibrate(scores, block_fpr=0.01, review_fpr=0.03)
    safe = calibrate(scores, block_fpr=0.01, review_fpr=0.03, margin=True)
    assert safe["block"] >= plain["block"] and safe["review"] >= plain["review"]
    k = sum(s >= safe["block"] for s in scores)
    assert wilson_interval(k, len(scores))[1] <= 0.01
    assert k / len(scores) < 0.01


def test_one_high_scoring_family_cannot_hide_behind_easy_ones() -> None:
    # 19 large easy families and one small family that scores like attacks: the pooled 1 % threshold flags
    # all of the small family (0.1 % of the data); the per-family mean keeps all but a few under it.
    scores = [0.3] * 19000 + [0.6 + i / 100 for i in range(20)]
    families = [f"f{i // 1000}" for i in range(19000)] + ["small"] * 20
    pooled = threshold_at_fpr(scores, 0.01)
    assert sum(s >= pooled for s in scores[19000:]) == 20
    safe = calibrate(scores, block_fpr=0.01, review_fpr=0.03, families=families, margin=True)
    assert sum(s >= safe["block"] for s in scores[19000:]) / 20 / 20 <= 0.01


def test_family_folds_hold_out_whole_families_of_every_kind() -> None:
    items = [
        Item(id=f"{fam}-{i}", text="x", label=label, family=fam, channel="user", hard_negative=fam.startswith("hn-"))
        for fam, label in [(f"a{j}", 1) for j in range(10)]
        + [(f"b{j}", 0) for j in range(10)]
        + [(f"hn-{j}", 0) for j in range(5)]
        for i in range(3)
    ]
    folds = family_folds(items, 5, seed=0)
    assert set(folds) == {it.family for it in items}
    for fold in range(5):
        held = {fam for fam, f in folds.items() if f == fold}
        assert any(f.startswith("a") for f in held) and any(f.startswith("b") for f in held)


def test_extra_benign_families_never_join_the_test_split(corpus: list[Item]) -> None:
    split_of = {it.family: it.split for it in corpus}
    for fam, (split, _, _) in EXTRA_BENIGN.items():
        assert split in ("train", "val")
        assert split_of.get(fam, split) == split
    # The random split of the original families is what it was before the extra families were added.
    original = [(it.family, it.label, it.hard_negative) for it in corpus if it.family not in EXTRA_BENIGN]
    assert split_by_family(original, seed=0) == {f: s for f, s in split_of.items() if f not in EXTRA_BENIGN}
    assert {f for f, s in split_of.items() if s == "test"} == set(default_model().meta["test_families"])


def test_shipped_thresholds_come_from_family_cross_validation() -> None:
    meta = default_model().meta
    assert "cross-validation by family" in meta["calibration"]["on"]
    assert not set(meta["test_families"]) & set(meta["val_families"])
