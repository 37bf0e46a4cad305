"""Datasets: loaders, bounds, and the bad-input cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hoplon.core import InputError
from hoplon.data import demo, load_csv, load_dataset, load_npz, parse_bounds, save_npz


def test_digits_demo_shape_range_and_split() -> None:
    train, test = demo("digits", split="train"), demo("digits", split="test")
    assert train.x.shape[1:] == (1, 8, 8) and test.kind == "image"
    assert float(test.x.min()) >= 0.0 and float(test.x.max()) <= 1.0
    assert train.n + test.n == 1797
    assert set(test.y.tolist()) == set(range(10))


def test_breast_cancer_is_standardised_inside_its_box() -> None:
    data = demo("breast-cancer", split="train")
    assert data.x.shape[1] == 30 and data.feature_names is not None
    assert float(data.x.abs().max()) <= 3.0
    assert abs(float(data.x.mean())) < 0.1
    assert data.bounds.describe() == "[-3, 3]"


def test_npz_round_trip_keeps_bounds(tmp_path: Path) -> None:
    data = demo("breast-cancer")
    save_npz(data, tmp_path / "d.npz")
    again = load_npz(tmp_path / "d.npz")
    assert torch.equal(again.x, data.x) and torch.equal(again.y, data.y)
    assert again.bounds.source == "declared" and again.bounds.describe() == "[-3, 3]"


def test_npz_without_bounds_uses_data_range_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    np.savez(tmp_path / "d.npz", x=np.array([[0.2, 0.4], [0.1, 0.9]], np.float32), y=np.array([0, 1]))
    data = load_npz(tmp_path / "d.npz")
    assert data.bounds.source == "data-range"
    assert "declares no input bounds" in caplog.text


def test_per_feature_bounds_from_npz(tmp_path: Path) -> None:
    x = np.array([[0.5, 5.0], [0.1, 9.0]], np.float32)
    np.savez(
        tmp_path / "d.npz",
        x=x,
        y=np.array([0, 1]),
        lower=np.array([0, 0], np.float32),
        upper=np.array([1, 10], np.float32),
    )
    data = load_npz(tmp_path / "d.npz")
    assert data.bounds.lower.tolist() == [0.0, 0.0] and data.bounds.upper.tolist() == [1.0, 10.0]


def test_csv_with_label_column(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,label,b\n0.1,1,0.2\n0.3,0,0.4\n")
    data = load_csv(tmp_path / "d.csv", bounds=parse_bounds("0,1"))
    assert data.feature_names == ("a", "b")
    assert data.x.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert data.y.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.array([[np.nan, 0.0]], np.float32), "y": np.array([0])}, "NaN or infinite"),
        (
            {
                "x": np.array([[0.5, 2.0]], np.float32),
                "y": np.array([0]),
                "lower": np.float32(0),
                "upper": np.float32(1),
            },
            "outside its declared bounds",
        ),
        ({"x": np.array([[0.5, 0.5]], np.float32), "y": np.array([-1])}, "negative labels"),
        ({"x": np.array([[0.5, 0.5]], np.float32)}, "must hold arrays 'x' and 'y'"),
        ({"x": np.array([[0.5, 0.5]], np.float32), "y": np.array([0.5])}, "must be integers"),
    ],
)
def test_bad_npz_files_get_clear_errors(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=message):
        load_npz(tmp_path / "bad.npz")


def test_object_arrays_are_never_unpickled(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", x=np.array([object()], dtype=object), y=np.array([0]))
    with pytest.raises(InputError, match="Cannot read"):
        load_npz(tmp_path / "obj.npz")


def test_unknown_dataset_and_bad_bounds() -> None:
    with pytest.raises(InputError, match="neither a file nor a demo"):
        load_dataset("no-such-thing")
    with pytest.raises(InputError, match="LO,HI"):
        parse_bounds("0;1")
    with pytest.raises(InputError, match="LO < HI"):
        parse_bounds("1,0")


def test_training_records_carry_the_datasets_merkle_root() -> None:
    from hoplon.data import fingerprint
    from hoplon.models import tabular_mlp, train_classifier

    data = demo("breast-cancer", split="train").subset(slice(0, 64))
    record = train_classifier(tabular_mlp((30,), 2), data.x, data.y, epochs=1, seed=0)
    assert record.data_fingerprint == data.fingerprint() == "merkle:" + fingerprint(data).root
