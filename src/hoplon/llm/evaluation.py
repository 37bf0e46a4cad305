"""Detection metrics for the LLM firewall's evaluation: TPR at a fixed FPR, AUROC, bootstrap intervals and
Wilson intervals. Pure Python (sorting), so tests and the benchmark need nothing heavy."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

__all__ = ["auroc", "bootstrap_interval", "threshold_at_fpr", "tpr_at_fpr", "wilson_interval"]


def threshold_at_fpr(neg_scores: Sequence[float], fpr: float) -> float:
    """The smallest threshold ``t`` such that the share of negatives scoring ``>= t`` is at most ``fpr``."""
    if not neg_scores:
        return 0.5
    ordered = sorted(neg_scores, reverse=True)
    allowed = math.floor(fpr * len(ordered))
    if allowed >= len(ordered):
        return ordered[-1]
    # Any threshold above the (allowed+1)-th highest negative keeps at most `allowed` negatives above it.
    return math.nextafter(ordered[allowed], math.inf)


def tpr_at_fpr(pos_scores: Sequence[float], neg_scores: Sequence[float], fpr: float) -> float:
    """True-positive rate at the threshold that keeps the false-positive rate at or below ``fpr``."""
    if not pos_scores:
        return float("nan")
    t = threshold_at_fpr(neg_scores, fpr)
    return sum(1 for s in pos_scores if s >= t) / len(pos_scores)


def auroc(pos_scores: Sequence[float], neg_scores: Sequence[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half)."""
    if not pos_scores or not neg_scores:
        return float("nan")
    labelled = sorted([(s, 1) for s in pos_scores] + [(s, 0) for s in neg_scores])
    rank_sum = 0.0
    i = 0
    while i < len(labelled):
        j = i
        while j < len(labelled) and labelled[j][0] == labelled[i][0]:
            j += 1
        avg_rank = (i + j + 1) / 2.0
        rank_sum += avg_rank * sum(1 for k in range(i, j) if labelled[k][1] == 1)
        i = j
    n_pos, n_neg = len(pos_scores), len(neg_scores)
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def bootstrap_interval(
    pos: Sequence[float],
    neg: Sequence[float],
    metric: Callable[[Sequence[float], Sequence[float]], float],
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(pos, neg)``, resampling positives and negatives."""
    rng = random.Random(seed)
    values = sorted(metric([rng.choice(pos) for _ in pos], [rng.choice(neg) for _ in neg]) for _ in range(n_boot))
    lo = values[int((1 - level) / 2 * (n_boot - 1))]
    hi = values[int((1 + level) / 2 * (n_boot - 1))]
    return lo, hi


def wilson_interval(successes: int, n: int, *, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default); ``(0, 1)`` when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
