"""``safe_load`` scans first, refuses unsafe files, then loads with the most restrictive loader."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from hoplon.core.errors import ModelLoadError, UnsafeArtifactError
from hoplon.core.finding import Severity
from hoplon.scan import safe_load
from hoplon.scan.loading import RestrictedUnpickler
from tests.scan import builders as b


def test_loads_benign_files(benign_corpus: Path) -> None:
    state = safe_load(benign_corpus / "mlp_state.pt")
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert safe_load(benign_corpus / "legacy_state.bin")["0.weight"].shape == (8, 4)
    assert safe_load(benign_corpus / "forest.joblib").n_estimators == 3
    assert safe_load(benign_corpus / "forest_z.joblib").n_estimators == 3
    assert safe_load(benign_corpus / "float.npy").shape == (3, 4)
    assert safe_load(benign_corpus / "pipeline_p4.pkl").predict([[0.0] * 4]).shape == (1,)


def test_refuses_a_payload_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(b.torch_zip(b.call("os", "system", f"touch {marker}")))
    with pytest.raises(UnsafeArtifactError, match=r"os\.system"):
        safe_load(path)
    assert not marker.exists()


def test_suspicious_files_pass_only_with_a_looser_policy(tmp_path: Path) -> None:
    path = tmp_path / "odd.pkl"
    path.write_bytes(b.call("collections", "namedtuple", "P", "x y"))
    with pytest.raises(UnsafeArtifactError):
        safe_load(path)
    # a looser policy lets the scan pass, but the restricted unpickler still refuses the import
    with pytest.raises(UnsafeArtifactError, match=r"collections\.namedtuple"):
        safe_load(path, fail_on=Severity.CRITICAL)


def test_full_module_pickle_needs_more_than_weights_only(benign_corpus: Path) -> None:
    with pytest.raises(ModelLoadError):
        safe_load(benign_corpus / "mlp_full.pth")


def test_restricted_unpickler_allows_plain_data() -> None:
    import io

    data = pickle.dumps({"a": [1, 2.0, "s"], "t": torch.Size([2])}, protocol=4)
    assert RestrictedUnpickler(io.BytesIO(data)).load()["a"] == [1, 2.0, "s"]
