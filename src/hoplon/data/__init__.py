"""Datasets with declared input bounds: ``.npz``, ``.csv`` and the built-in demos."""

from hoplon.data.dataset import DataKind, Dataset
from hoplon.data.loaders import DEMOS, demo, load_csv, load_dataset, load_npz, parse_bounds, save_npz

__all__ = ["DEMOS", "DataKind", "Dataset", "demo", "load_csv", "load_dataset", "load_npz", "parse_bounds", "save_npz"]
