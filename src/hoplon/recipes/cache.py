"""A disk cache of models trained by a recipe, keyed by recipe hash + data fingerprint + seed.

Only weights are stored (``torch.save`` of a state dict, read back with ``weights_only=True``), so a
cache folder written by someone else cannot run code. A re-run with the same recipe, data and seed loads
the weights instead of training again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from hoplon.core.errors import InputError
from hoplon.models.training import TrainingRecord
from hoplon.recipes.training import train

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hoplon.recipes.recipe import Recipe

__all__ = ["ModelCache", "cache_key", "data_fingerprint"]

log = logging.getLogger(__name__)


def data_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 over inputs (float32) and labels (int64), little-endian."""
    digest = hashlib.sha256()
    digest.update(x.detach().cpu().contiguous().numpy().astype("<f4").tobytes())
    digest.update(y.detach().cpu().contiguous().numpy().astype("<i8").tobytes())
    return digest.hexdigest()


def cache_key(recipe: Recipe, x: torch.Tensor, y: torch.Tensor, *, seed: int, n_classes: int, tag: str = "") -> str:
    """The cache key of one training run: recipe digest, data fingerprint, seed, classes and a free tag."""
    parts = [recipe.digest(), data_fingerprint(x, y), str(seed), str(n_classes), tag]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


class ModelCache:
    """Trained models on disk under ``root``; ``hits`` and ``misses`` count lookups (for tests and logs)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.pt", self.root / f"{key}.json"

    def train(
        self,
        recipe: Recipe,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        n_classes: int,
        seed: int | None = None,
        tag: str = "",
    ) -> tuple[nn.Module, TrainingRecord]:
        """Load the model for this (recipe, data, seed) from the cache, or train it and store it."""
        import torch

        run_seed = recipe.seed if seed is None else seed
        key = cache_key(recipe, x, y, seed=run_seed, n_classes=n_classes, tag=tag)
        weights, meta = self._paths(key)
        if weights.is_file() and meta.is_file():
            module = recipe.build(input_shape=tuple(int(s) for s in x.shape[1:]), n_classes=n_classes)
            try:
                module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
                info = json.loads(meta.read_text(encoding="utf-8"))
            except (RuntimeError, OSError, ValueError) as exc:
                log.warning("Ignoring the unreadable cache entry %s: %s", weights, exc)
            else:
                self.hits += 1
                module.eval()
                return module, TrainingRecord(config=info["config"], seed=int(info["seed"]), epochs=info["epochs"])
        self.misses += 1
        module, record = train(recipe, x, y, n_classes=n_classes, seed=run_seed)
        self._store(key, module, record)
        return module, record

    def _store(self, key: str, module: nn.Module, record: TrainingRecord) -> None:
        import torch

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"Cannot create the model cache {self.root}: {exc}") from None
        weights, meta = self._paths(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        os.close(fd)
        torch.save(module.state_dict(), tmp)
        Path(tmp).replace(weights)
        info = {"config": record.config, "seed": record.seed, "epochs": record.epochs}
        meta.write_text(json.dumps(info, sort_keys=True), encoding="utf-8")
