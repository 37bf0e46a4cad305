"""The issue's reference checks on 150 digits members: overfit > regularised > DP(ε = 1) in leakage, with
margins larger than the bootstrap intervals, and the DP model's audit within its (ε, δ) guarantee.

At 150 members one gap (regularised vs DP at 1 % FPR) is only a point estimate here; the full criterion
(every pair, AUC and TPR at 1 % FPR, beyond the bootstrap intervals) needs a larger setting that is too slow
for the test suite: ``benchmarks/privacy_leakage_order.py`` measures it (docs/benchmarks_privacy.md)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from hoplon.attacks.privacy import LiRA, LossAttack, ReferenceModels
from hoplon.metrics import dp_tpr_bound, paired_bootstrap_difference, privacy_row, roc_curve, tpr_at_fpr
from hoplon.recipes import Recipe
from hoplon.targets import TorchTarget

from .conftest import Splits

pytest.importorskip("opacus")

from hoplon.defenses.training import DPConfig, train_private

DP_EPSILON, DP_DELTA = 1.0, 1e-5


@pytest.fixture(scope="module")
def dp_target(splits: Splits, overfit_recipe: Recipe) -> tuple[TorchTarget, float]:
    recipe = overfit_recipe.replace(epochs=15, lr=1e-2)
    config = DPConfig(epsilon=DP_EPSILON, delta=DP_DELTA)
    module, record = train_private(recipe, splits.members.x, splits.members.y, n_classes=10, config=config, seed=1234)
    assert record.epsilon <= DP_EPSILON + 1e-2
    return TorchTarget(module, input_shape=(1, 8, 8), n_classes=10, name="dp"), record.epsilon


def _lira(target: TorchTarget, refs: ReferenceModels, splits: Splits) -> torch.Tensor:
    return LiRA(online=True).run(target, splits.x, splits.y, references=refs).scores


def _tpr1(scores: torch.Tensor, is_member: torch.Tensor) -> float:
    return tpr_at_fpr(scores, is_member, 0.01)


def test_overfit_leaks_more_than_regularised_more_than_dp(
    splits: Splits,
    overfit_target: TorchTarget,
    regularised_target: TorchTarget,
    overfit_references: ReferenceModels,
    regularised_references: ReferenceModels,
    dp_target: tuple[TorchTarget, float],
) -> None:
    """Each model is attacked with online LiRA on reference models trained by its own recipe (the DP model's
    by the non-private recipe: the attacker need not replicate the noise)."""
    labels = splits.is_member
    overfit = _lira(overfit_target, overfit_references, splits)
    regular = _lira(regularised_target, regularised_references, splits)
    private = _lira(dp_target[0], overfit_references, splits)
    rows = {k: privacy_row(k, s, labels, n_boot=200) for k, s in (("o", overfit), ("r", regular), ("p", private))}

    def half(row: dict[str, Any], key: str) -> float:
        lo, hi = row["auc_ci"] if key == "auc" else row["tpr_at_fpr_ci"]["0.01"]
        return (float(hi) - float(lo)) / 2

    # AUC: a strict chain, each gap larger than the bootstrap half-width of either model.
    for high, low in (("o", "r"), ("r", "p")):
        margin = max(half(rows[high], "auc"), half(rows[low], "auc"))
        assert rows[high]["auc"] - rows[low]["auc"] > margin, (rows[high]["auc"], rows[low]["auc"], margin)
    # TPR at 1 % FPR (150 non-members resolve 0.67 %): overfit vs DP beyond either interval ...
    margin = max(half(rows["o"], "tpr"), half(rows["p"], "tpr"))
    assert _tpr1(overfit, labels) - _tpr1(private, labels) > margin
    # ... overfit vs regularised by a paired bootstrap whose 90 % interval of the difference excludes 0 ...
    lo, _ = paired_bootstrap_difference(overfit, regular, labels, _tpr1, n_boot=200, level=0.9)
    assert lo >= 0.0, (lo, _tpr1(overfit, labels), _tpr1(regular, labels))
    # ... and regularised >= DP as point estimates: at 150 members the gap between them at 1 % FPR (about
    # 5 % vs 1 %) is within sampling error (the paired interval reaches below 0); the AUC gap is not. The
    # benchmark benchmarks/privacy_leakage_order.py checks this gap too, on 300 members.
    assert _tpr1(regular, labels) >= _tpr1(private, labels)


def test_the_dp_audit_is_consistent_with_its_epsilon(
    splits: Splits, overfit_references: ReferenceModels, dp_target: tuple[TorchTarget, float]
) -> None:
    """(ε, δ)-DP bounds every attack: TPR <= e^ε FPR + δ at every threshold (up to sampling error, which the
    Clopper–Pearson bound of ``epsilon_lower_bound`` accounts for)."""
    target, epsilon = dp_target
    for attack in (LossAttack(), LiRA(online=True), LiRA(online=False)):
        result = attack.run(target, splits.x, splits.y, references=overfit_references, rng=torch.Generator())
        row = privacy_row(result.attack, result.scores, splits.is_member, n_boot=20)
        assert row["epsilon_lower_bound"] <= epsilon, (result.attack, row["epsilon_lower_bound"])
        roc = roc_curve(result.scores, splits.is_member)
        slack = 2 / math.sqrt(roc.n_members)  # two standard errors of a rate estimated from 150 records
        for fpr, tpr in zip(roc.fpr.tolist(), roc.tpr.tolist(), strict=True):
            assert tpr <= dp_tpr_bound(fpr, epsilon=epsilon, delta=DP_DELTA) + slack, (result.attack, fpr, tpr)
