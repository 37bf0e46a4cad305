"""Privacy metrics: ROC, AUC, TPR at low FPR (with bootstrap intervals), advantage, empirical ε, exposure.

Scores are per-record membership scores, higher meaning "more likely a member"; ``is_member`` is the
ground truth. Following Carlini et al. (2022), the figures that matter are true-positive rates at low
false-positive rates; the smallest FPR the data can resolve is ``1 / n_nonmembers`` and is reported with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "FPR_LEVELS",
    "RocCurve",
    "attribute_advantage",
    "auc",
    "balanced_accuracy",
    "bootstrap_interval",
    "dp_tpr_bound",
    "empirical_epsilon",
    "exposure",
    "membership_advantage",
    "min_resolvable_fpr",
    "paired_bootstrap_difference",
    "privacy_row",
    "reconstruction_similarity",
    "roc_curve",
    "tpr_at_fpr",
]

FPR_LEVELS: tuple[float, ...] = (0.01, 0.001, 0.0001)


@dataclass(frozen=True, slots=True)
class RocCurve:
    """Operating points of a score: ``fpr`` and ``tpr`` (float64, from (0, 0) to (1, 1)) and the counts."""

    fpr: torch.Tensor
    tpr: torch.Tensor
    n_members: int
    n_nonmembers: int


def _check(scores: torch.Tensor, is_member: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    scores = torch.as_tensor(scores).detach().cpu().to(torch.float64).reshape(-1)
    labels = torch.as_tensor(is_member).detach().cpu().to(torch.bool).reshape(-1)
    if scores.shape != labels.shape:
        raise InputError(f"Scores and membership labels differ in length: {len(scores)} and {len(labels)}.")
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        raise InputError("Membership metrics need at least one member and one non-member.")
    if not bool(torch.isfinite(scores).all()):
        raise InputError("Membership scores must be finite.")
    return scores, labels


def roc_curve(scores: torch.Tensor, is_member: torch.Tensor) -> RocCurve:
    """The ROC curve of ``scores`` (one point per distinct threshold, ties handled as in scikit-learn)."""
    import torch

    s, labels = _check(scores, is_member)
    order = torch.argsort(s, descending=True, stable=True)
    s, labels = s[order], labels[order].to(torch.float64)
    distinct = torch.nonzero(s[1:] != s[:-1]).reshape(-1)
    ends = torch.cat([distinct, torch.tensor([len(s) - 1])])
    tps = torch.cumsum(labels, 0)[ends]
    fps = (ends + 1).to(torch.float64) - tps
    n_pos, n_neg = float(labels.sum()), float(len(labels) - labels.sum())
    zero = torch.zeros(1, dtype=torch.float64)
    return RocCurve(torch.cat([zero, fps / n_neg]), torch.cat([zero, tps / n_pos]), int(n_pos), int(n_neg))


def auc(scores: torch.Tensor, is_member: torch.Tensor) -> float:
    """Area under the ROC curve (0.5: no better than guessing)."""
    import torch

    roc = roc_curve(scores, is_member)
    return float(torch.trapezoid(roc.tpr, roc.fpr))


def _tpr_at(roc: RocCurve, fpr: float) -> float:
    ok = roc.fpr <= fpr + 1e-12
    return float(roc.tpr[ok].max())


def tpr_at_fpr(scores: torch.Tensor, is_member: torch.Tensor, fpr: float) -> float:
    """The highest TPR of a threshold whose FPR is at most ``fpr`` (0 if only the empty threshold qualifies)."""
    if not 0 <= fpr <= 1:
        raise InputError(f"The 'fpr' parameter must be in [0, 1]. Got {fpr}.")
    return _tpr_at(roc_curve(scores, is_member), fpr)


def balanced_accuracy(scores: torch.Tensor, is_member: torch.Tensor) -> float:
    """Best balanced accuracy ``(TPR + TNR) / 2`` over thresholds."""
    roc = roc_curve(scores, is_member)
    return float(((roc.tpr + 1 - roc.fpr) / 2).max())


def membership_advantage(scores: torch.Tensor, is_member: torch.Tensor) -> float:
    """Yeom et al.'s membership advantage ``max(TPR - FPR)`` over thresholds (0: no leak, 1: total)."""
    roc = roc_curve(scores, is_member)
    return float((roc.tpr - roc.fpr).max())


def min_resolvable_fpr(n_nonmembers: int) -> float:
    """The smallest non-zero FPR that ``n_nonmembers`` records can show: one false positive."""
    if n_nonmembers <= 0:
        raise InputError(f"The number of non-members must be positive. Got {n_nonmembers}.")
    return 1.0 / n_nonmembers


def bootstrap_interval(
    scores: torch.Tensor,
    is_member: torch.Tensor,
    statistic: Callable[[torch.Tensor, torch.Tensor], float],
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic``, resampling members and non-members separately."""
    import torch

    s, labels = _check(scores, is_member)
    if n_boot < 10 or not 0 < level < 1:
        raise InputError(f"bootstrap_interval needs n_boot >= 10 and level in (0, 1). Got {n_boot}, {level}.")
    generator = torch.Generator().manual_seed(seed)
    members, others = s[labels], s[~labels]
    truth = torch.cat([torch.ones(len(members), dtype=torch.bool), torch.zeros(len(others), dtype=torch.bool)])
    values = []
    for _ in range(n_boot):
        a = members[torch.randint(len(members), (len(members),), generator=generator)]
        b = others[torch.randint(len(others), (len(others),), generator=generator)]
        values.append(statistic(torch.cat([a, b]), truth))
    ordered = torch.tensor(values, dtype=torch.float64)
    tail = (1 - level) / 2
    return float(torch.quantile(ordered, tail)), float(torch.quantile(ordered, 1 - tail))


def paired_bootstrap_difference(
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    is_member: torch.Tensor,
    statistic: Callable[[torch.Tensor, torch.Tensor], float],
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(a) - statistic(b)`` for two attacks or models scored on the same
    records, resampling the records once for both (members and non-members separately). An interval above
    0 says ``a`` leaks more than ``b`` beyond sampling error."""
    import torch

    a, labels = _check(scores_a, is_member)
    b, _ = _check(scores_b, is_member)
    if len(a) != len(b):
        raise InputError("paired_bootstrap_difference needs both score vectors on the same records.")
    generator = torch.Generator().manual_seed(seed)
    members = torch.nonzero(labels).reshape(-1)
    others = torch.nonzero(~labels).reshape(-1)
    values = []
    for _ in range(n_boot):
        index = torch.cat(
            [
                members[torch.randint(len(members), (len(members),), generator=generator)],
                others[torch.randint(len(others), (len(others),), generator=generator)],
            ]
        )
        values.append(statistic(a[index], labels[index]) - statistic(b[index], labels[index]))
    ordered = torch.tensor(values, dtype=torch.float64)
    tail = (1 - level) / 2
    return float(torch.quantile(ordered, tail)), float(torch.quantile(ordered, 1 - tail))


def _clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    from scipy.stats import beta

    alpha = 1 - level
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def empirical_epsilon(roc: RocCurve, *, delta: float = 0.0, level: float | None = 0.95) -> float:
    """A lower bound on the ε of any (ε, δ)-DP training that produced this attack's operating points.

    (ε, δ)-DP implies ``TPR <= e^ε FPR + δ`` and ``1 - FPR <= e^ε (1 - TPR) + δ`` at every threshold
    (Kairouz et al. 2015), so each operating point gives ``ε >= log((TPR - δ) / FPR)`` and
    ``ε >= log((1 - FPR - δ) / (1 - TPR))``. With ``level`` the rates are replaced by their one-sided
    Clopper–Pearson bounds (Jagielski et al. 2020), making this a statistically valid lower bound;
    with ``level=None`` it is the point estimate (``inf`` when some threshold makes no error on one side).
    Returns 0.0 when no point gives a positive bound.
    """
    best = 0.0
    for fpr_t, tpr_t in zip(roc.fpr.tolist(), roc.tpr.tolist(), strict=True):
        fp, tp = round(fpr_t * roc.n_nonmembers), round(tpr_t * roc.n_members)
        if level is None:
            fpr_hi, tpr_lo = fpr_t, tpr_t
        else:
            # One-sided bounds in the direction that makes the ε bound conservative.
            fpr_hi = _clopper_pearson(fp, roc.n_nonmembers, 2 * level - 1)[1]
            tpr_lo = _clopper_pearson(tp, roc.n_members, 2 * level - 1)[0]
        for num_, den in ((tpr_lo - delta, fpr_hi), (1 - fpr_hi - delta, 1 - tpr_lo)):
            if num_ > 0 and den > 0:
                best = max(best, math.log(num_ / den))
            elif num_ > 0:  # an error-free operating point: no finite ε explains it
                return math.inf
    return best


def dp_tpr_bound(fpr: float, *, epsilon: float, delta: float) -> float:
    """The highest TPR an attack can reach at ``fpr`` against an (ε, δ)-DP training: ``min(1, e^ε FPR + δ)``."""
    return min(1.0, math.exp(epsilon) * fpr + delta) if math.isfinite(epsilon) else 1.0


def exposure(scores: torch.Tensor, is_member: torch.Tensor) -> torch.Tensor:
    """Per-member exposure: the share of non-members scoring below the member (ties count half).

    1.0 means the member is singled out at any false-positive rate; 0.5 means it hides among non-members.
    Returned in the order of the members in ``scores``.
    """
    import torch

    s, labels = _check(scores, is_member)
    others = torch.sort(s[~labels]).values
    members = s[labels]
    below = torch.searchsorted(others, members, right=False).to(torch.float64)
    at_or_below = torch.searchsorted(others, members, right=True).to(torch.float64)
    return (below + at_or_below) / (2 * len(others))


def privacy_row(
    attack: str,
    scores: torch.Tensor,
    is_member: torch.Tensor,
    *,
    n_boot: int = 200,
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One row of ``results.privacy``: AUC, TPR at 1 %, 0.1 % and 0.01 % FPR with bootstrap intervals,
    membership advantage, balanced accuracy, the smallest resolvable FPR and an empirical ε lower bound."""
    roc = roc_curve(scores, is_member)
    levels = {f"{f:g}": _tpr_at(roc, f) for f in FPR_LEVELS}
    intervals = {
        f"{f:g}": list(bootstrap_interval(scores, is_member, _fixed_tpr(f), n_boot=n_boot, seed=seed))
        for f in FPR_LEVELS
    }
    row: dict[str, Any] = {
        "attack": attack,
        "auc": float(_trapz(roc)),
        "auc_ci": list(bootstrap_interval(scores, is_member, auc, n_boot=n_boot, seed=seed)),
        "tpr_at_fpr": levels,
        "tpr_at_fpr_ci": intervals,
        "advantage": float((roc.tpr - roc.fpr).max()),
        "balanced_accuracy": float(((roc.tpr + 1 - roc.fpr) / 2).max()),
        "min_fpr": min_resolvable_fpr(roc.n_nonmembers),
        "epsilon_lower_bound": empirical_epsilon(roc, level=0.95),
        "n_members": roc.n_members,
        "n_nonmembers": roc.n_nonmembers,
    }
    if extra:
        row.update(extra)
    return row


def _trapz(roc: RocCurve) -> float:
    import torch

    return float(torch.trapezoid(roc.tpr, roc.fpr))


def _fixed_tpr(fpr: float) -> Callable[[torch.Tensor, torch.Tensor], float]:
    def statistic(scores: torch.Tensor, is_member: torch.Tensor) -> float:
        return tpr_at_fpr(scores, is_member, fpr)

    return statistic


def reconstruction_similarity(reconstructions: torch.Tensor, class_means: torch.Tensor) -> dict[str, Any]:
    """How close class-representative reconstructions are to each class's mean training input.

    Returns the cosine similarity of each reconstruction to its own class mean (``own``), the mean cosine
    to the other classes' means (``others``), their mean gap, and the identification rate: the share of
    classes whose reconstruction is closer (cosine) to its own class mean than to any other.
    """
    import torch
    from torch.nn import functional as F

    if reconstructions.shape != class_means.shape:
        raise InputError(
            f"Reconstructions {tuple(reconstructions.shape)} and class means {tuple(class_means.shape)} "
            "differ in shape."
        )
    a = F.normalize(reconstructions.flatten(1).to(torch.float64), dim=1)
    b = F.normalize(class_means.flatten(1).to(torch.float64), dim=1)
    cos = a @ b.T
    k = len(cos)
    own = cos.diagonal()
    others = (cos.sum(1) - own) / max(k - 1, 1)
    identified = (cos.argmax(1) == torch.arange(k)).to(torch.float64)
    return {
        "own_similarity": own.tolist(),
        "other_similarity": others.tolist(),
        "mean_own_similarity": float(own.mean()),
        "mean_gap": float((own - others).mean()),
        "identification_rate": float(identified.mean()),
    }


def attribute_advantage(
    correct: Sequence[bool] | torch.Tensor, baseline_correct: Sequence[bool] | torch.Tensor
) -> float:
    """Accuracy of an attribute-inference attack minus the accuracy of the marginal-prior baseline."""
    import torch

    a = torch.as_tensor(correct, dtype=torch.float64)
    b = torch.as_tensor(baseline_correct, dtype=torch.float64)
    if len(a) == 0 or len(a) != len(b):
        raise InputError("attribute_advantage needs two equal, non-empty lists of outcomes.")
    return float(a.mean() - b.mean())
