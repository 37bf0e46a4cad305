"""Training recipes: TOML → a frozen :class:`Recipe`, seeded training, and a model cache keyed by recipe hash."""

from hoplon.recipes.cache import ModelCache, cache_key, data_fingerprint
from hoplon.recipes.recipe import Optimiser, Recipe, load_recipe, resolve_factory
from hoplon.recipes.training import fit, train

__all__ = [
    "ModelCache",
    "Optimiser",
    "Recipe",
    "cache_key",
    "data_fingerprint",
    "fit",
    "load_recipe",
    "resolve_factory",
    "train",
]
