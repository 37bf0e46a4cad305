"""Loading datasets: ``.npz`` (``x``, ``y``, optional ``lower``/``upper``), ``.csv``, and the built-in demos.

Every dataset declares its input bounds: from the file (``lower``/``upper`` arrays), from the caller
(``bounds=``, the CLI's ``--bounds LO,HI``), or else from the data's own range with a logged warning.
"""

from __future__ import annotations

import csv
import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from hoplon.core.errors import InputError, UnsupportedFormatError
from hoplon.data.dataset import DataKind, Dataset
from hoplon.targets.types import Bounds

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["DEMOS", "demo", "load_csv", "load_dataset", "load_npz", "parse_bounds", "save_npz"]

log = logging.getLogger(__name__)

DEMOS = ("digits", "breast-cancer")
MAX_FILE_BYTES = 2 * 1024**3
BREAST_CANCER_BOX = 3.0


def parse_bounds(text: str) -> Bounds:
    """Parse the CLI form ``LO,HI`` (e.g. ``0,1`` or ``-3,3``)."""
    parts = text.split(",")
    try:
        lower, upper = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"--bounds must be written LO,HI (e.g. 0,1). Got {text!r}.") from None
    return Bounds.scalar(lower, upper, source="cli")


def _infer_kind(x: np.ndarray) -> DataKind:
    return "image" if x.ndim == 4 else "tabular"


def _data_range_bounds(x: torch.Tensor, name: str) -> Bounds:
    import torch

    lower, upper = float(x.min()), float(x.max())
    if lower == upper:
        upper = lower + 1.0
    log.warning(
        "The dataset %s declares no input bounds; using its own range [%g, %g]. "
        "Pass --bounds LO,HI (or store lower/upper arrays in the .npz) to state the real input box.",
        name,
        lower,
        upper,
    )
    return Bounds(torch.tensor(lower), torch.tensor(upper), source="data-range")


def _to_tensors(x_np: np.ndarray, y_np: np.ndarray, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np
    import torch

    if x_np.dtype.kind not in "fiub":
        raise InputError(f"The inputs of {name} must be numeric; got dtype {x_np.dtype}.")
    if y_np.dtype.kind not in "iub":
        if y_np.dtype.kind == "f" and np.all(np.isfinite(y_np)) and np.all(y_np == np.round(y_np)):
            y_np = y_np.astype(np.int64)
        else:
            raise InputError(f"The labels of {name} must be integers; got dtype {y_np.dtype}.")
    return torch.from_numpy(np.ascontiguousarray(x_np, dtype=np.float32)), torch.from_numpy(
        np.ascontiguousarray(y_np, dtype=np.int64)
    )


def _check_size(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"Data file {path} does not exist.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"Data file {path} is larger than {MAX_FILE_BYTES // 1024**3} GiB.")


def load_npz(path: str | Path, *, bounds: Bounds | None = None, name: str | None = None) -> Dataset:
    """Load ``x`` and ``y`` (and optional ``lower``/``upper``) from an ``.npz``; object arrays are refused."""
    import numpy as np
    import torch

    path = Path(path)
    _check_size(path)
    name = name or path.name
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"x", "y"} - set(archive.files)
            if missing:
                raise InputError(f"{path} must hold arrays 'x' and 'y'; missing: {', '.join(sorted(missing))}.")
            x_np, y_np = archive["x"], archive["y"]
            lower = archive["lower"] if "lower" in archive.files else None
            upper = archive["upper"] if "upper" in archive.files else None
    except ValueError as exc:  # object arrays need pickle, which we never allow for data
        raise InputError(f"Cannot read {path}: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UnsupportedFormatError(f"{path} is not a readable .npz file: {exc}") from None
    x, y = _to_tensors(x_np, y_np, name)
    if bounds is None and lower is not None and upper is not None:
        try:
            bounds = Bounds(
                torch.as_tensor(lower, dtype=torch.float32).reshape(lower.shape),
                torch.as_tensor(upper, dtype=torch.float32).reshape(upper.shape),
            )
            torch.broadcast_shapes(bounds.lower.shape, tuple(x.shape[1:]))
        except RuntimeError:
            raise InputError(
                f"The bounds in {path} (shape {lower.shape}) do not fit samples of shape {tuple(x.shape[1:])}."
            ) from None
    if bounds is None:
        bounds = _data_range_bounds(x, name)
    return Dataset(x=x, y=y, bounds=bounds, name=name, kind=_infer_kind(x_np))


def load_csv(
    path: str | Path, *, label: str = "label", bounds: Bounds | None = None, name: str | None = None
) -> Dataset:
    """Load a CSV with a header row; the ``label`` column holds integer labels, every other column a feature."""
    import numpy as np

    path = Path(path)
    _check_size(path)
    name = name or path.name
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path} is empty.") from None
        if label not in header:
            raise InputError(f"{path} has no label column {label!r}; columns: {', '.join(header[:10])}.")
        label_at = header.index(label)
        rows: list[list[float]] = []
        labels: list[float] = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"{path}:{line_no} has {len(row)} fields; the header has {len(header)}.")
            try:
                values = [float(v) for v in row]
            except ValueError:
                raise InputError(f"{path}:{line_no} has a non-numeric value.") from None
            labels.append(values.pop(label_at))
            rows.append(values)
    features = tuple(h for i, h in enumerate(header) if i != label_at)
    x, y = _to_tensors(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1), np.asarray(labels), name)
    if bounds is None:
        bounds = _data_range_bounds(x, name)
    return Dataset(x=x, y=y, bounds=bounds, name=name, kind="tabular", feature_names=features)


def demo(name: str, *, split: Literal["train", "test", "all"] = "test", seed: int = 0) -> Dataset:
    """A built-in dataset made from scikit-learn's bundled data (no download).

    ``digits``: 1,797 8×8 greyscale digits as ``(n, 1, 8, 8)`` in ``[0, 1]``, 10 classes.
    ``breast-cancer``: 569 × 30 features standardised with the training split's statistics and clipped to
    the declared box ``[-3, 3]``, 2 classes. Splits are a stratified 75/25 split under ``seed``.
    """
    import numpy as np
    import torch
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    if name == "digits":
        bunch = datasets.load_digits()
        x_all = (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
        features = None
        kind: DataKind = "image"
    elif name == "breast-cancer":
        bunch = datasets.load_breast_cancer()
        x_all = bunch.data.astype(np.float64)
        features = tuple(str(f) for f in bunch.feature_names)
        kind = "tabular"
    else:
        raise InputError(f"Unknown demo dataset {name!r}; built-in: {', '.join(DEMOS)}.")
    y_all = bunch.target.astype(np.int64)
    index = np.arange(len(y_all))
    train_idx, test_idx = train_test_split(index, test_size=0.25, random_state=seed, stratify=y_all)
    if name == "breast-cancer":
        mean = x_all[train_idx].mean(0)
        std = x_all[train_idx].std(0) + 1e-12
        x_all = np.clip((x_all - mean) / std, -BREAST_CANCER_BOX, BREAST_CANCER_BOX).astype(np.float32)
        bounds = Bounds.scalar(-BREAST_CANCER_BOX, BREAST_CANCER_BOX)
    else:
        bounds = Bounds.scalar(0.0, 1.0)
    chosen = {"train": train_idx, "test": test_idx, "all": index}[split]
    return Dataset(
        x=torch.from_numpy(np.ascontiguousarray(x_all[chosen])),
        y=torch.from_numpy(y_all[chosen]),
        bounds=bounds,
        name=f"{name}:{split}",
        kind=kind,
        feature_names=features,
    )


def load_dataset(spec: str | Path, *, bounds: Bounds | None = None, label: str = "label") -> Dataset:
    """Load a dataset from a path (``.npz``, ``.csv``) or a demo name (``digits``, ``demo:digits:train``)."""
    text = str(spec)
    if text.startswith("demo:") or (text in DEMOS and not Path(text).exists()):
        parts = text.removeprefix("demo:").split(":")
        split = parts[1] if len(parts) > 1 else "test"
        if split not in ("train", "test", "all"):
            raise InputError(f"A demo split must be train, test or all. Got {split!r}.")
        data = demo(parts[0], split=split)  # type: ignore[arg-type]
        if bounds is not None:
            data = Dataset(
                x=data.x, y=data.y, bounds=bounds, name=data.name, kind=data.kind, feature_names=data.feature_names
            )
        return data
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, bounds=bounds)
    if suffix == ".csv":
        return load_csv(path, label=label, bounds=bounds)
    if not path.exists():
        raise InputError(f"Data {text!r} is neither a file nor a demo dataset ({', '.join(DEMOS)}).")
    raise UnsupportedFormatError(f"Unsupported data format {suffix or '(none)'} for {path}; use .npz or .csv.")


def save_npz(data: Dataset, path: str | Path) -> None:
    """Write a dataset as ``.npz`` with its bounds, so it can be loaded back exactly."""
    import numpy as np

    np.savez(
        Path(path),
        x=data.x.numpy(),
        y=data.y.numpy(),
        lower=data.bounds.lower.numpy(),
        upper=data.bounds.upper.numpy(),
    )
