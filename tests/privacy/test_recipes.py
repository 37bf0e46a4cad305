"""Training recipes: TOML parsing and validation, determinism under a seed, the cache keyed by recipe hash."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hoplon.core.errors import InputError
from hoplon.recipes import ModelCache, Recipe, cache_key, load_recipe, train


def test_toml_round_trip_and_stable_digest(recipe_file: Path, tmp_path: Path) -> None:
    recipe = load_recipe(recipe_file)
    assert recipe.factory == "tabular-mlp"
    assert recipe.args == {"hidden": 32}
    assert (recipe.lr, recipe.epochs, recipe.batch_size) == (0.01, 5, 32)
    again = tmp_path / "again.toml"
    again.write_text(recipe.to_toml(), encoding="utf-8")
    assert load_recipe(again) == recipe
    assert load_recipe(again).digest() == recipe.digest()
    assert recipe.replace(epochs=6).digest() != recipe.digest()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[model]\nfactory = "no_such_pkg.models:net"\n', "does not import"),
        ('[model]\nfactory = "hoplon.models:no_such_fn"\n', "no callable"),
        ('[model]\nfactory = "tabular-mlp"\n[training]\nlr = -1\n', "'lr' parameter"),
        ('[model]\nfactory = "tabular-mlp"\n[training]\nepoch = 3\n', "unknown key"),
        ('[model]\nfactory = "tabular-mlp"\n[training]\noptimiser = "lbfgs"\n', "'optimiser'"),
        ("[training]\nepochs = 3\n", "'factory'"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_bad_recipes_are_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_recipe(path)


def test_training_is_deterministic_under_a_seed() -> None:
    recipe = Recipe(factory="tabular-mlp", args={"hidden": 16}, epochs=3, batch_size=16)
    x = torch.randn(64, 30, generator=torch.Generator().manual_seed(0)).clamp(-3, 3)
    y = (x[:, 0] > 0).long()
    first, _ = train(recipe, x, y, n_classes=2, seed=5)
    second, _ = train(recipe, x, y, n_classes=2, seed=5)
    other, _ = train(recipe, x, y, n_classes=2, seed=6)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first(x), other(x))


def test_the_cache_is_keyed_by_recipe_data_and_seed(tmp_path: Path) -> None:
    recipe = Recipe(factory="tabular-mlp", args={"hidden": 16}, optimiser="sgd", momentum=0.9, epochs=2)
    x = torch.randn(40, 30, generator=torch.Generator().manual_seed(1)).clamp(-3, 3)
    y = (x[:, 1] > 0).long()
    cache = ModelCache(tmp_path)
    trained, _ = cache.train(recipe, x, y, n_classes=2, seed=3)
    loaded, record = cache.train(recipe, x, y, n_classes=2, seed=3)
    assert (cache.hits, cache.misses) == (1, 1)
    assert record.config["recipe_sha256"] == recipe.digest()
    torch.testing.assert_close(trained(x), loaded(x), rtol=0, atol=0)
    keys = {
        cache_key(recipe, x, y, seed=3, n_classes=2),
        cache_key(recipe, x, y, seed=4, n_classes=2),
        cache_key(recipe.replace(lr=1e-2), x, y, seed=3, n_classes=2),
        cache_key(recipe, x, 1 - y, seed=3, n_classes=2),
    }
    assert len(keys) == 4
