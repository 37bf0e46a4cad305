"""``safe_load``: the one door through which hoplon opens pickle-based model files.

Scan first; refuse a file whose worst finding reaches ``fail_on``; only then load with the most restrictive
loader the framework has: ``torch.load(weights_only=True)``, ``numpy.load(allow_pickle=False)``, and for
joblib and plain pickles an unpickler whose ``find_class`` admits only the scanner's allowlist (so a file
changed between the scan and the load still cannot import anything else).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Literal

from hoplon.core.errors import InputError, ModelLoadError, UnsafeArtifactError, UnsupportedFormatError
from hoplon.core.finding import Severity
from hoplon.scan._callables import classify
from hoplon.scan.scanner import scan_file
from hoplon.scan.types import FileRecord, ScanLimits

__all__ = ["Framework", "safe_load"]

Framework = Literal["torch", "numpy", "joblib", "pickle"]


def _check_global(module: str, name: str) -> None:
    verdict = classify(module, name)
    if verdict.category != "allowed":
        raise UnsafeArtifactError(f"Refused to import {module}.{name} while loading: {verdict.reason}.")


class RestrictedUnpickler(pickle.Unpickler):
    """A standard unpickler that imports only allowlisted globals."""

    def find_class(self, module: str, name: str) -> Any:
        _check_global(module, name)
        return super().find_class(module, name)


def _framework_of(record: FileRecord, path: Path) -> Framework:
    if record.format in ("pytorch", "pytorch-legacy", "torchscript"):
        return "torch"
    if record.format in ("npy", "npz", "npy-object"):
        return "numpy"
    if record.format in ("pickle", "zlib", "gzip", "bz2", "xz") and path.suffix.lower() == ".joblib":
        return "joblib"
    if record.format == "pickle":
        if path.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin"):
            return "torch"
        return "pickle"
    raise UnsupportedFormatError(
        f"{path} is a {record.format} file; safe_load opens pickle-based formats (torch, joblib, numpy, pickle)."
    )


def safe_load(
    path: str | Path,
    *,
    framework: Framework | None = None,
    fail_on: Severity = Severity.LOW,
    limits: ScanLimits | None = None,
    map_location: str = "cpu",
) -> Any:
    """Scan ``path``, refuse it if any finding reaches ``fail_on``, then load it restrictively.

    Args:
        path: the model file.
        framework: ``torch``, ``numpy``, ``joblib`` or ``pickle``; told from the content when ``None``.
        fail_on: the lowest severity that refuses the file. Default ``LOW`` (anything suspicious).
        limits: scan limits.
        map_location: passed to ``torch.load``.

    Returns:
        The loaded object.

    Raises:
        UnsafeArtifactError: the scan found something at or above ``fail_on``, or the file tried to import
            a global outside the allowlist while loading.
        InputError: the file does not exist or cannot be loaded.

    Example:
        >>> state = safe_load("model.pt")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Model file {path} does not exist.")
    records = scan_file(path, limits=limits)
    bad = [f for r in records for f in r.findings if f.severity >= fail_on]
    if bad:
        worst = max(bad, key=lambda f: f.severity)
        raise UnsafeArtifactError(
            f"Refused to load {path}: {len(bad)} finding(s) at or above {fail_on.label}; worst: "
            f"[{worst.severity.label}] {worst.summary}"
        )
    kind = framework or _framework_of(records[0], path)
    try:
        return _load(path, kind, map_location)
    except UnsafeArtifactError:
        raise
    except (pickle.UnpicklingError, ValueError, EOFError, OSError, RuntimeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"Cannot load {path} with the restricted {kind} loader: {first}") from None


def _load(path: Path, kind: Framework, map_location: str) -> Any:
    if kind == "torch":
        import torch

        return torch.load(path, map_location=map_location, weights_only=True)
    if kind == "numpy":
        import numpy as np

        return np.load(path, allow_pickle=False)
    if kind == "joblib":
        from joblib.numpy_pickle import NumpyUnpickler
        from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

        class _RestrictedNumpyUnpickler(NumpyUnpickler):  # type: ignore[misc]
            def find_class(self, module: str, name: str) -> Any:
                _check_global(module, name)
                return super().find_class(module, name)

        with path.open("rb") as raw, _validate_fileobject_and_memmap(raw, str(path), None) as (fobj, _):
            if isinstance(fobj, str):
                raise UnsupportedFormatError(f"{path} uses joblib's pre-0.10 format, which is not supported.")
            return _RestrictedNumpyUnpickler(str(path), fobj, ensure_native_byte_order=True).load()
    with path.open("rb") as handle:
        return RestrictedUnpickler(handle).load()
