"""Shared fixtures: tiny models trained in seconds, on one torch thread."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)

from hoplon.core.memory import keep_freed_memory  # noqa: E402
from hoplon.data import Dataset, demo  # noqa: E402
from hoplon.models import digits_cnn, tabular_mlp, train_classifier  # noqa: E402
from hoplon.targets import TorchTarget  # noqa: E402

keep_freed_memory()  # as the CLI does for its tensor commands: no page faults for reused buffers


@pytest.fixture(scope="session")
def digits_train() -> Dataset:
    return demo("digits", split="train")


@pytest.fixture(scope="session")
def digits_test() -> Dataset:
    return demo("digits", split="test")


@pytest.fixture(scope="session")
def digits_model(digits_train: Dataset) -> torch.nn.Module:
    """The demo CNN trained for a few seconds (about 98 % test accuracy)."""
    torch.manual_seed(0)
    model = digits_cnn()
    train_classifier(model, digits_train.x, digits_train.y, epochs=15, seed=0)
    return model


@pytest.fixture()
def digits_target(digits_model: torch.nn.Module, digits_test: Dataset) -> TorchTarget:
    return TorchTarget(digits_model, input_shape=(1, 8, 8), bounds=digits_test.bounds, name="digits-cnn")


@pytest.fixture(scope="session")
def cancer_train() -> Dataset:
    return demo("breast-cancer", split="train")


@pytest.fixture(scope="session")
def cancer_test() -> Dataset:
    return demo("breast-cancer", split="test")


@pytest.fixture(scope="session")
def cancer_model(cancer_train: Dataset) -> torch.nn.Module:
    torch.manual_seed(0)
    model = tabular_mlp((30,), 2)
    train_classifier(model, cancer_train.x, cancer_train.y, epochs=30, seed=0)
    return model


@pytest.fixture()
def cancer_target(cancer_model: torch.nn.Module, cancer_test: Dataset) -> TorchTarget:
    return TorchTarget(cancer_model, input_shape=(30,), bounds=cancer_test.bounds, name="cancer-mlp")


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export with the legacy exporter (``dynamo=False`` is needed here), silencing its deprecation notices."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["scores"],
            dynamic_axes={"x": {0: "n"}},
        )
    return path
