"""Fixtures for the scanner's tests: a helper that scans bytes, and a benign corpus of real model files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hoplon.scan import FileRecord, scan_file
from tests.scan.corpus import write_benign

ScanBytes = Callable[..., list[FileRecord]]


@pytest.fixture()
def scan_bytes(tmp_path: Path) -> ScanBytes:
    """Write bytes to a file named ``name`` and scan it."""

    def run(data: bytes, name: str = "model.pkl", **kwargs: object) -> list[FileRecord]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return scan_file(path, **kwargs)  # type: ignore[arg-type]

    return run


@pytest.fixture(scope="session")
def benign_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real files written by torch, scikit-learn/joblib, numpy, safetensors, ONNX and h5py."""
    return write_benign(tmp_path_factory.mktemp("benign"))
