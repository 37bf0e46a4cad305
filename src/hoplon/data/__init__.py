"""Datasets with declared input bounds: ``.npz``, ``.csv`` and the built-in demos."""

from hoplon.data.dataset import DataKind, Dataset
from hoplon.data.fingerprint import DatasetFingerprint, MembershipProof, fingerprint, prove_membership
from hoplon.data.loaders import DEMOS, demo, load_csv, load_dataset, load_npz, parse_bounds, save_npz

__all__ = [
    "DEMOS",
    "DataKind",
    "Dataset",
    "DatasetFingerprint",
    "MembershipProof",
    "demo",
    "fingerprint",
    "load_csv",
    "load_dataset",
    "load_npz",
    "parse_bounds",
    "prove_membership",
    "save_npz",
]
