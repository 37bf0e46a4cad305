"""Fixtures for the privacy tests: 150 digits members, an overfit model and its reference models.

Everything is small enough for two shared cores: a flat MLP trains on 150 records in a fraction of a
second, and each recipe's 8 reference models are trained once per session (and cached on disk).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from hoplon.attacks.privacy import ReferenceModels, train_references
from hoplon.audit.privacy import demo_splits
from hoplon.data import Dataset
from hoplon.recipes import ModelCache, Recipe, train
from hoplon.targets import TorchTarget

FACTORY = "tests.privacy.factories:flat_mlp"
N_MEMBERS = 150
N_REFERENCES = 8


@dataclass(frozen=True)
class Splits:
    members: Dataset
    nonmembers: Dataset
    population: Dataset

    @property
    def x(self) -> torch.Tensor:
        return torch.cat([self.members.x, self.nonmembers.x])

    @property
    def y(self) -> torch.Tensor:
        return torch.cat([self.members.y, self.nonmembers.y])

    @property
    def is_member(self) -> torch.Tensor:
        n, m = self.members.n, self.nonmembers.n
        return torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(m, dtype=torch.bool)])


@pytest.fixture(scope="session")
def splits() -> Splits:
    return Splits(*demo_splits("digits", n_members=N_MEMBERS, seed=0))


@pytest.fixture(scope="session")
def overfit_recipe() -> Recipe:
    """No regularisation, 40 epochs on 150 records: train accuracy 100 %, a large loss gap."""
    return Recipe(factory=FACTORY, epochs=40, batch_size=32, lr=3e-3, seed=0)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    return ModelCache(tmp_path_factory.mktemp("model-cache"))


def _target(module: torch.nn.Module, name: str) -> TorchTarget:
    return TorchTarget(module, input_shape=(1, 8, 8), n_classes=10, name=name)


@pytest.fixture(scope="session")
def overfit_target(splits: Splits, overfit_recipe: Recipe) -> TorchTarget:
    module, _ = train(overfit_recipe, splits.members.x, splits.members.y, n_classes=10, seed=1234)
    return _target(module, "overfit")


def _references(recipe: Recipe, splits: Splits, cache: ModelCache) -> ReferenceModels:
    return train_references(recipe, splits.x, splits.y, n_models=N_REFERENCES, n_classes=10, seed=7, cache=cache)


@pytest.fixture(scope="session")
def overfit_references(splits: Splits, overfit_recipe: Recipe, model_cache: ModelCache) -> ReferenceModels:
    return _references(overfit_recipe, splits, model_cache)


@pytest.fixture()
def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(
        '[model]\nfactory = "tabular-mlp"\nargs = { hidden = 32 }\n\n'
        '[training]\noptimiser = "adam"\nlr = 0.01\nepochs = 5\nbatch_size = 32\nseed = 0\n',
        encoding="utf-8",
    )
    return path
