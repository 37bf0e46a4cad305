"""Shokri et al.'s shadow-model attack on shadow data disjoint from the audited records, the overlap refusal,
and the fallback (reference models trained on the audited records) named in the report."""

from __future__ import annotations

import pytest
import torch

from hoplon.attacks.privacy import (
    ReferenceModels,
    ShadowModelAttack,
    balanced_masks,
    matched_n_in,
    train_shadow_models,
)
from hoplon.audit.privacy import privacy
from hoplon.core.errors import InputError
from hoplon.core.report import Report
from hoplon.data import Dataset
from hoplon.metrics import auc
from hoplon.recipes import ModelCache, Recipe
from hoplon.targets import TorchTarget

from .conftest import N_MEMBERS, N_REFERENCES, Splits


@pytest.fixture(scope="module")
def disjoint_shadows(splits: Splits, overfit_recipe: Recipe, model_cache: ModelCache) -> ReferenceModels:
    """Shadow models trained by the target's recipe on the population only, each on as many records as the target."""
    population = splits.population
    return train_shadow_models(
        overfit_recipe,
        population.x,
        population.y,
        n_train=N_MEMBERS,
        n_models=N_REFERENCES,
        n_classes=10,
        seed=11,
        cache=model_cache,
    )


def test_matched_n_in_keeps_reference_training_sets_as_large_as_the_target() -> None:
    assert matched_n_in(8, 150, 300) == 4  # balanced halves when the pool is twice the training set
    assert matched_n_in(16, 150, 600) == 4  # a holdout three times the training set: 150 records a model
    assert matched_n_in(8, 150, 200) == 4  # a small pool: halves (never more IN than OUT)
    assert matched_n_in(8, 10, 10_000) == 1  # at least one IN model per row
    with pytest.raises(InputError, match="n_models >= 2"):
        matched_n_in(1, 150, 300)
    masks = balanced_masks(16, 600, seed=0, n_in=4)
    assert bool((masks.sum(0) == 4).all()) and float(masks.sum(1).float().mean()) == 150
    with pytest.raises(InputError, match="at least one and OUT for at least one"):
        balanced_masks(8, 10, seed=0, n_in=8)


def test_shadow_models_on_disjoint_data_detect_membership(
    splits: Splits, overfit_target: TorchTarget, disjoint_shadows: ReferenceModels
) -> None:
    """No audited record is in the shadow data, yet the attack classifier learnt from the shadow models tells
    the overfit model's members from its non-members (Shokri et al.'s claim, at small scale)."""
    assert not bool(disjoint_shadows.membership_of(splits.x).any())
    # Shokri et al.: each shadow model trains on as many records as the target and has as many non-members.
    assert len(disjoint_shadows.pool_x) == 2 * N_MEMBERS
    assert bool((disjoint_shadows.in_mask.sum(0) == N_REFERENCES // 2).all())
    assert float(disjoint_shadows.in_mask.sum(1).to(torch.float64).mean()) == N_MEMBERS
    result = ShadowModelAttack(disjoint=True).run(
        overfit_target, splits.x, splits.y, references=disjoint_shadows, rng=torch.Generator().manual_seed(0)
    )
    assert result.details["n_queried_in_shadow_data"] == 0
    assert result.details["n_shadow_rows"] == 2 * N_MEMBERS
    assert auc(result.scores, splits.is_member) > 0.6


def test_disjoint_shadow_attack_refuses_overlapping_shadow_data(
    splits: Splits, overfit_target: TorchTarget, overfit_references: ReferenceModels
) -> None:
    with pytest.raises(InputError, match=r"300 queried records are in the shadow models' training data"):
        ShadowModelAttack(disjoint=True).run(overfit_target, splits.x, splits.y, references=overfit_references)
    # Without disjoint=True the same models serve (the fallback), and the details say how many overlap.
    result = ShadowModelAttack().run(overfit_target, splits.x, splits.y, references=overfit_references)
    assert result.details["n_queried_in_shadow_data"] == len(splits.x)


def _small(data: Dataset, n: int) -> Dataset:
    return data.subset(torch.arange(n))


def test_the_audit_trains_shadows_on_the_population_or_says_which_fallback(
    splits: Splits, overfit_recipe: Recipe, overfit_target: TorchTarget, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = tmp_path_factory.mktemp("shadow-audit")
    members, nonmembers = _small(splits.members, 60), _small(splits.nonmembers, 60)
    recipe = overfit_recipe.replace(epochs=10)

    def audit(population: Dataset | None) -> Report:
        return privacy(
            [overfit_target],
            members,
            nonmembers,
            recipe=recipe,
            population=population,
            attacks=("shadow",),
            n_references=2,
            cache_dir=cache,
            n_boot=20,
        )

    report = audit(splits.population)
    shadow = report.results["shadow_data"]
    assert shadow["source"] == "population" and shadow["n_population"] == splits.population.n
    assert shadow["n_rows"] == 120 and shadow["rows_per_model"] == 60  # as many as the target's training set
    assert report.results["privacy"][0]["shadow_data"] == "population"
    membership = next(f for f in report.findings if f.id == "privacy.membership")
    assert membership.evidence["shadow_data"] == "population"

    fallback = audit(None)
    shadow = fallback.results["shadow_data"]
    assert shadow["source"] == "audited-records" and shadow["n_rows"] == 120
    assert "No --population data" in shadow["note"] and "disjoint" in shadow["note"]

    overlapping = Dataset(
        x=torch.cat([splits.population.x[:50], members.x[:3]]),
        y=torch.cat([splits.population.y[:50], members.y[:3]]),
        bounds=members.bounds,
        name="leaky-population",
    )
    with pytest.raises(InputError, match="share 3 of their 53 records"):
        audit(overlapping)
