"""The issue's reference check: overfit > well-regularised > DP (ε = 1) in leakage, in AUC and in TPR at 1 % FPR,
every pairwise gap beyond its 95 % paired bootstrap interval, and the DP model's audit within its (ε, δ).

The setting is the benchmark's (``benchmarks/privacy_leakage_order.py``, which runs it over seeds 0-6) on its
seed 0: 300 digits members and 900 non-members, online LiRA with a per-record variance and 64 reference models
per recipe, each trained on 300 of the 1,200 audited records (as many as the target). The paired bootstrap
(``paired_bootstrap_difference``) resamples the same members and non-members for both models, the right
interval for the difference of two models audited on the same records. At 150 members, or with as many
non-members as members, the gaps at 1 % FPR between neighbouring models (a few points) are within sampling
error on some seeds, so the check is made here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from hoplon.attacks.privacy import LiRA, LossAttack, ReferenceModels, matched_n_in, train_references
from hoplon.audit.privacy import demo_splits
from hoplon.data import Dataset
from hoplon.metrics import auc, dp_tpr_bound, paired_bootstrap_difference, privacy_row, roc_curve, tpr_at_fpr
from hoplon.recipes import Recipe, train
from hoplon.targets import TorchTarget

from .conftest import FACTORY

pytest.importorskip("opacus")

from hoplon.defenses.training import DPConfig, train_private

# About 50 CPU s on one thread: 130 small MLPs (two recipes' 64 reference models and the targets), one DP-SGD run.
pytestmark = pytest.mark.slow

DP_EPSILON, DP_DELTA = 1.0, 1e-5
N_MEMBERS, N_NONMEMBERS, N_REFERENCES = 300, 900, 64
# The benchmark's recipes: a very wide MLP trained to zero training error without regularisation; a narrower one
# with mild weight decay stopped at 20 epochs; a 64-1024-10 MLP under DP-SGD at ε = 1.
OVERFIT = Recipe(factory=FACTORY, args={"hidden": 4096}, epochs=30, batch_size=64, lr=3e-3, seed=0)
REGULARISED = Recipe(
    factory=FACTORY, args={"hidden": 512}, epochs=20, batch_size=32, lr=3e-3, weight_decay=0.005, seed=0
)
DP_RECIPE = Recipe(factory=FACTORY, args={"hidden": 1024}, epochs=15, batch_size=32, lr=1e-2, seed=0)
ATTACK = LiRA(online=True, variance="per-example")
MODEL_SEED, REFERENCE_SEED = 1234, 7
Statistic = Callable[[torch.Tensor, torch.Tensor], float]


def _tpr1(scores: torch.Tensor, is_member: torch.Tensor) -> float:
    return tpr_at_fpr(scores, is_member, 0.01)


@pytest.fixture(scope="module")
def audited() -> tuple[Dataset, Dataset, torch.Tensor, torch.Tensor, torch.Tensor]:
    members, nonmembers, _ = demo_splits("digits", n_members=N_MEMBERS, n_nonmembers=N_NONMEMBERS, seed=0)
    x, y = torch.cat([members.x, nonmembers.x]), torch.cat([members.y, nonmembers.y])
    labels = torch.cat([torch.ones(members.n, dtype=torch.bool), torch.zeros(nonmembers.n, dtype=torch.bool)])
    return members, nonmembers, x, y, labels


@pytest.fixture(scope="module")
def scores(
    audited: tuple[Dataset, Dataset, torch.Tensor, torch.Tensor, torch.Tensor],
) -> dict[str, tuple[TorchTarget, ReferenceModels, torch.Tensor]]:
    """Online LiRA scores of each model, against reference models trained by its own recipe (the DP model's by
    the overfit recipe: the attacker need not replicate the noise; ε = 1 caps any attack's TPR at 1 % FPR at
    e·1 % + δ)."""
    members, _, x, y, _ = audited

    def refs(recipe: Recipe) -> ReferenceModels:
        n_in = matched_n_in(N_REFERENCES, members.n, len(x))
        return train_references(recipe, x, y, n_models=N_REFERENCES, n_classes=10, n_in=n_in, seed=REFERENCE_SEED)

    def target(module: torch.nn.Module, name: str) -> TorchTarget:
        return TorchTarget(module, input_shape=(1, 8, 8), n_classes=10, name=name)

    # Each model trains once here, so nothing goes through the disk cache (130 models, ~90 MB of weights).
    overfit, _ = train(OVERFIT, members.x, members.y, n_classes=10, seed=MODEL_SEED)
    regular, _ = train(REGULARISED, members.x, members.y, n_classes=10, seed=MODEL_SEED)
    config = DPConfig(epsilon=DP_EPSILON, delta=DP_DELTA)
    private, record = train_private(DP_RECIPE, members.x, members.y, n_classes=10, config=config, seed=MODEL_SEED)
    assert record.epsilon <= DP_EPSILON + 1e-2
    overfit_refs = refs(OVERFIT)
    out = {}
    for name, module, references in (
        ("overfit", overfit, overfit_refs),
        ("regularised", regular, refs(REGULARISED)),
        ("dp", private, overfit_refs),
    ):
        t = target(module, name)
        out[name] = (t, references, ATTACK.run(t, x, y, references=references).scores)
    return out


@pytest.mark.parametrize(("high", "low"), [("overfit", "regularised"), ("regularised", "dp"), ("overfit", "dp")])
@pytest.mark.parametrize("metric", ["auc", "tpr@1%"])
def test_overfit_leaks_more_than_regularised_more_than_dp(
    high: str,
    low: str,
    metric: str,
    audited: tuple[Dataset, Dataset, torch.Tensor, torch.Tensor, torch.Tensor],
    scores: dict[str, tuple[TorchTarget, ReferenceModels, torch.Tensor]],
) -> None:
    labels = audited[4]
    statistic: Statistic = auc if metric == "auc" else _tpr1
    a, b = scores[high][2], scores[low][2]
    lo, hi = paired_bootstrap_difference(a, b, labels, statistic, n_boot=200, level=0.95)
    gap = statistic(a, labels) - statistic(b, labels)
    assert lo > 0.0, (high, low, metric, gap, lo, hi)
    assert lo <= gap <= hi


def test_the_dp_audit_is_consistent_with_its_epsilon(
    audited: tuple[Dataset, Dataset, torch.Tensor, torch.Tensor, torch.Tensor],
    scores: dict[str, tuple[TorchTarget, ReferenceModels, torch.Tensor]],
) -> None:
    """(ε, δ)-DP bounds every attack: TPR <= e^ε FPR + δ at every threshold (up to sampling error, which the
    Clopper–Pearson bound of ``epsilon_lower_bound`` accounts for)."""
    _, _, x, y, labels = audited
    target, references, online = scores["dp"]
    runs = {"lira-online": online}  # the order check's attack, scored once in the fixture
    for attack in (LossAttack(), LiRA(online=False)):
        result = attack.run(target, x, y, references=references, rng=torch.Generator())
        runs[result.attack] = result.scores
    assert len(runs) == 3
    for name, attack_scores in runs.items():
        row = privacy_row(name, attack_scores, labels, n_boot=20)
        assert row["epsilon_lower_bound"] <= DP_EPSILON, (name, row["epsilon_lower_bound"])
        roc = roc_curve(attack_scores, labels)
        slack = 2 / math.sqrt(roc.n_members)  # two standard errors of a rate estimated from the members
        for fpr, tpr in zip(roc.fpr.tolist(), roc.tpr.tolist(), strict=True):
            assert tpr <= dp_tpr_bound(fpr, epsilon=DP_EPSILON, delta=DP_DELTA) + slack, (name, fpr, tpr)


def test_lira_beats_the_loss_attack_on_the_overfit_model(
    audited: tuple[Dataset, Dataset, torch.Tensor, torch.Tensor, torch.Tensor],
    scores: dict[str, tuple[TorchTarget, ReferenceModels, torch.Tensor]],
) -> None:
    _, _, x, y, labels = audited
    target, _, lira = scores["overfit"]
    loss = LossAttack().run(target, x, y).scores
    lo, _ = paired_bootstrap_difference(lira, loss, labels, _tpr1, n_boot=200, level=0.95)
    assert lo > 0.0, (_tpr1(lira, labels), _tpr1(loss, labels), lo)
