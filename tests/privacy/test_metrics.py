"""Privacy metrics against slow, obvious oracles (scikit-learn's ROC, brute-force counting)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from hoplon.core.errors import InputError
from hoplon.metrics import (
    auc,
    balanced_accuracy,
    bootstrap_interval,
    dp_tpr_bound,
    empirical_epsilon,
    exposure,
    membership_advantage,
    min_resolvable_fpr,
    privacy_row,
    reconstruction_similarity,
    roc_curve,
    tpr_at_fpr,
)


def _random_case(seed: int, n: int = 400, ties: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    scores = rng.normal(size=n) + 0.8 * labels
    if ties:
        scores = np.round(scores, 1)  # many ties, the case fast ROC code gets wrong
    return torch.tensor(scores), torch.tensor(labels)


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_and_tpr_match_sklearn(seed: int) -> None:
    scores, labels = _random_case(seed, ties=seed % 2 == 0)
    fpr_sk, tpr_sk, _ = sk_roc_curve(labels.numpy(), scores.numpy(), drop_intermediate=False)
    roc = roc_curve(scores, labels)
    np.testing.assert_allclose(roc.fpr.numpy(), fpr_sk, atol=1e-12)
    np.testing.assert_allclose(roc.tpr.numpy(), tpr_sk, atol=1e-12)
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12)
    for level in (0.0, 0.001, 0.01, 0.1, 0.5):
        # Carlini et al.'s definition: the best TPR among thresholds with FPR <= level.
        expected = max(t for f, t in zip(fpr_sk, tpr_sk, strict=True) if f <= level)
        assert tpr_at_fpr(scores, labels, level) == pytest.approx(expected, abs=1e-12)
    brute = max(tpr_sk - fpr_sk)
    assert membership_advantage(scores, labels) == pytest.approx(brute, abs=1e-12)
    assert balanced_accuracy(scores, labels) == pytest.approx(max((tpr_sk + 1 - fpr_sk) / 2), abs=1e-12)


def test_perfect_and_useless_scores() -> None:
    labels = torch.tensor([True] * 50 + [False] * 50)
    perfect = labels.double()
    assert auc(perfect, labels) == 1.0
    assert tpr_at_fpr(perfect, labels, 0.0) == 1.0
    constant = torch.zeros(100, dtype=torch.float64)
    assert auc(constant, labels) == 0.5
    assert membership_advantage(constant, labels) == 0.0


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate() -> None:
    scores, labels = _random_case(1)
    first = bootstrap_interval(scores, labels, auc, n_boot=100, seed=3)
    assert first == bootstrap_interval(scores, labels, auc, n_boot=100, seed=3)
    assert first[0] <= auc(scores, labels) <= first[1]
    assert first[1] - first[0] < 0.2


def test_min_resolvable_fpr_and_dp_bound() -> None:
    assert min_resolvable_fpr(150) == pytest.approx(1 / 150)
    assert dp_tpr_bound(0.01, epsilon=1.0, delta=1e-5) == pytest.approx(math.e * 0.01 + 1e-5)
    assert dp_tpr_bound(0.5, epsilon=8.0, delta=0.0) == 1.0
    with pytest.raises(InputError):
        min_resolvable_fpr(0)


def test_empirical_epsilon_bounds() -> None:
    labels = torch.tensor([True] * 200 + [False] * 200)
    separated = roc_curve(labels.double(), labels)
    point = empirical_epsilon(separated, level=None)
    valid = empirical_epsilon(separated, level=0.95)
    assert point == math.inf or point > valid > 2.0  # 200/200 separation: e^ε >= ~1/(1.5 %)
    useless = roc_curve(torch.zeros(400, dtype=torch.float64), labels)
    assert empirical_epsilon(useless, level=0.95) == 0.0


def test_exposure_matches_brute_force() -> None:
    scores, labels = _random_case(2, n=120)
    members, others = scores[labels], scores[~labels]
    brute = torch.tensor(
        [(float((others < s).sum()) + 0.5 * float((others == s).sum())) / len(others) for s in members],
        dtype=torch.float64,
    )
    torch.testing.assert_close(exposure(scores, labels), brute)


def test_privacy_row_layout() -> None:
    scores, labels = _random_case(4)
    row = privacy_row("loss", scores, labels, n_boot=20)
    assert {"attack", "auc", "tpr_at_fpr", "advantage", "n_members", "n_nonmembers"} <= set(row)
    assert set(row["tpr_at_fpr"]) == {"0.01", "0.001", "0.0001"}
    assert row["n_members"] + row["n_nonmembers"] == len(scores)


def test_bad_metric_input() -> None:
    with pytest.raises(InputError, match="at least one member"):
        auc(torch.ones(4), torch.ones(4, dtype=torch.bool))
    with pytest.raises(InputError, match="differ in length"):
        auc(torch.ones(4), torch.ones(3, dtype=torch.bool))


def test_reconstruction_similarity_identifies_the_own_class() -> None:
    means = torch.eye(4).reshape(4, 1, 2, 2)
    noisy = means + 0.1 * torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    result = reconstruction_similarity(noisy, means)
    assert result["identification_rate"] == 1.0
    assert result["mean_gap"] > 0.5


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-20, 20), st.booleans()), min_size=4, max_size=60).filter(
        lambda rows: 0 < sum(m for _, m in rows) < len(rows)
    )
)
def test_properties_of_the_roc_metrics(rows: list[tuple[int, bool]]) -> None:
    scores = torch.tensor([float(s) for s, _ in rows], dtype=torch.float64)
    labels = torch.tensor([m for _, m in rows])
    # Invariant under a strictly increasing transform of the scores (only the order matters).
    assert auc(scores, labels) == pytest.approx(auc(torch.exp(scores / 7) + 3, labels), abs=1e-12)
    # TPR at FPR is non-decreasing in the FPR; advantage and exposure live in their ranges.
    tprs = [tpr_at_fpr(scores, labels, f) for f in (0.0, 0.01, 0.1, 0.5, 1.0)]
    assert tprs == sorted(tprs) and tprs[-1] == 1.0
    assert 0.0 <= membership_advantage(scores, labels) <= 1.0
    e = exposure(scores, labels)
    assert bool(((e >= 0) & (e <= 1)).all())
