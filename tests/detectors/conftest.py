"""Fixtures of the detector tests: the shipped enforce.yaml detector settings and the digits traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from hoplon.data import Dataset

ENFORCE = Path(__file__).resolve().parents[2] / "examples" / "firewall" / "enforce.yaml"


@pytest.fixture(scope="session")
def enforce_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(ENFORCE.read_text())["stages"]["detect"]
    return spec


@pytest.fixture(scope="session")
def digits_traffic(
    digits_model: torch.nn.Module, digits_train: Dataset, digits_test: Dataset
) -> tuple[np.ndarray, np.ndarray]:
    """All bundled digits (the calibration reference of enforce.yaml) and the model's probabilities."""
    x = torch.cat([digits_train.x, digits_test.x])
    with torch.no_grad():
        p = torch.softmax(digits_model.eval()(x), 1)
    return x.numpy().reshape(len(x), -1), p.numpy().astype(np.float64)
