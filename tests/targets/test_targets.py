"""Targets: capabilities, query counting and budgets, safe loading of model files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from hoplon.core import (
    BudgetExceeded,
    InputError,
    ModelLoadError,
    TrustRequiredError,
    UnsafeArtifactError,
    UnsupportedFormatError,
)
from hoplon.data import Dataset
from hoplon.targets import (
    Budget,
    Capability,
    DifferentiableTarget,
    OnnxTarget,
    SklearnTarget,
    Target,
    TorchTarget,
    detect_format,
    load_target,
)
from tests.conftest import export_onnx


def test_torch_target_counts_queries_and_enforces_budget(digits_model: torch.nn.Module, digits_test: Dataset) -> None:
    target = TorchTarget(digits_model, input_shape=(1, 8, 8), budget=Budget(100))
    assert isinstance(target, DifferentiableTarget)
    assert Capability.GRADIENTS in target.capabilities and target.n_classes == 10
    target.predict(digits_test.x[:60])
    assert target.counter.queries == 60
    with pytest.raises(BudgetExceeded, match="budget of 100"):
        target.predict(digits_test.x[:41])
    assert target.counter.queries == 60  # a refused call spends nothing


def test_wrong_shape_is_an_input_error(digits_target: TorchTarget) -> None:
    with pytest.raises(InputError, match=r"takes samples of shape \(1, 8, 8\)"):
        digits_target.predict(torch.zeros(2, 64))


def test_torchscript_onnx_and_sklearn_agree_on_the_same_model(
    tmp_path: Path, cancer_model: torch.nn.Module, cancer_test: Dataset
) -> None:
    pytest.importorskip("onnxruntime")
    scripted = torch.jit.trace(cancer_model, cancer_test.x[:1])
    torch.jit.save(scripted, str(tmp_path / "m.pt"))
    export_onnx(cancer_model, cancer_test.x[:1], tmp_path / "m.onnx")
    ts = load_target(tmp_path / "m.pt", input_shape=(30,))
    onnx = load_target(tmp_path / "m.onnx", input_shape=(30,))
    assert isinstance(onnx, OnnxTarget) and Capability.GRADIENTS not in onnx.capabilities
    assert torch.allclose(ts.predict(cancer_test.x), onnx.predict(cancer_test.x), atol=1e-4)
    assert onnx.counter.queries == cancer_test.n


def test_sklearn_target_is_black_box(cancer_train: Dataset, cancer_test: Dataset) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(cancer_train.x.numpy(), cancer_train.y.numpy())
    target = SklearnTarget(model)
    assert isinstance(target, Target) and not isinstance(target, DifferentiableTarget)
    scores = target.predict(cancer_test.x)
    assert scores.shape == (cancer_test.n, 2) and target.counter.queries == cancer_test.n
    assert float((scores.argmax(1) == cancer_test.y).float().mean()) > 0.9


def test_pickles_are_refused_without_trust(tmp_path: Path, cancer_model: torch.nn.Module) -> None:
    torch.save(cancer_model, tmp_path / "full.pt")
    with pytest.raises(TrustRequiredError, match="can run arbitrary code"):
        load_target(tmp_path / "full.pt", input_shape=(30,))
    target = load_target(tmp_path / "full.pt", input_shape=(30,), trust=True)
    assert target.n_classes == 2


def test_joblib_and_raw_pickle_are_refused_without_trust(tmp_path: Path, cancer_train: Dataset) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=200).fit(cancer_train.x.numpy(), cancer_train.y.numpy())
    joblib.dump(model, tmp_path / "m.joblib")
    (tmp_path / "m.data").write_bytes(pickle.dumps(model))
    for name in ("m.joblib", "m.data"):
        with pytest.raises(TrustRequiredError):
            load_target(tmp_path / name, input_shape=(30,))
    assert load_target(tmp_path / "m.joblib", input_shape=(30,), trust=True).n_classes == 2


def test_safetensors_needs_an_architecture(tmp_path: Path, cancer_model: torch.nn.Module, cancer_test: Dataset) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    safetensors_torch.save_file(cancer_model.state_dict(), str(tmp_path / "w.safetensors"))
    assert detect_format(tmp_path / "w.safetensors") == "safetensors"
    with pytest.raises(InputError, match="pass --arch"):
        load_target(tmp_path / "w.safetensors", input_shape=(30,), n_classes=2)
    target = load_target(tmp_path / "w.safetensors", input_shape=(30,), n_classes=2, arch="tabular-mlp")
    assert torch.allclose(target.predict(cancer_test.x), cancer_model(cancer_test.x), atol=1e-6)
    with pytest.raises(ModelLoadError, match="do not fit --arch digits-cnn"):
        load_target(tmp_path / "w.safetensors", input_shape=(1, 8, 8), n_classes=2, arch="digits-cnn")


def test_garbage_files_are_unsupported(tmp_path: Path) -> None:
    (tmp_path / "junk.xyz").write_bytes(np.random.default_rng(0).bytes(64).replace(b"\x08", b"\x09"))
    with pytest.raises(UnsupportedFormatError):
        detect_format(tmp_path / "junk.xyz")
    with pytest.raises(InputError, match="does not exist"):
        detect_format(tmp_path / "missing.pt")


def test_a_malicious_pickle_is_refused_even_with_trust(tmp_path: Path) -> None:
    # GLOBAL os.system, then REDUCE: a classic payload. Built from opcodes; never executed.
    (tmp_path / "evil.pt").write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    with pytest.raises(UnsafeArtifactError, match="refused even with --trust"):
        load_target(tmp_path / "evil.pt", input_shape=(30,), trust=True)


def test_a_trusted_state_dict_loads_through_the_restricted_loader(
    tmp_path: Path, cancer_model: torch.nn.Module, cancer_test: Dataset
) -> None:
    torch.save(cancer_model.state_dict(), tmp_path / "state.pt")
    target = load_target(tmp_path / "state.pt", input_shape=(30,), n_classes=2, arch="tabular-mlp", trust=True)
    assert torch.allclose(target.predict(cancer_test.x), cancer_model(cancer_test.x), atol=1e-6)
