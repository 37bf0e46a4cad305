"""Fixtures of the poisoning tests: the demo digits, a short recipe, and a recipe TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hoplon.data import Dataset, demo, save_npz
from hoplon.recipes import Recipe

# 10 epochs of the demo CNN: ~98 % test accuracy on digits in ~2.5 s on one thread.
RECIPE = Recipe(factory="digits-cnn", epochs=10, seed=0)


@pytest.fixture(scope="session")
def recipe() -> Recipe:
    return RECIPE


@pytest.fixture(scope="session")
def train_set() -> Dataset:
    return demo("digits", split="train")


@pytest.fixture(scope="session")
def test_set() -> Dataset:
    return demo("digits", split="test")


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory, train_set: Dataset, test_set: Dataset) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("poisoning")
    paths = {"train": root / "train.npz", "test": root / "test.npz", "recipe": root / "recipe.toml"}
    save_npz(train_set, paths["train"])
    save_npz(test_set, paths["test"])
    paths["recipe"].write_text(RECIPE.replace(epochs=3).to_toml(), encoding="utf-8")
    return paths
