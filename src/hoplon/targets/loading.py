"""Open a model file as a :class:`Target`, safely by default.

TorchScript, ONNX and safetensors load without running Python code. Pickle-based files (a full
``torch.save`` of a module, joblib, ``.pkl``) are programs: they are refused unless the caller passes
``trust=True`` (the CLI's ``--trust``). The format is told from the file's content, not its name.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from hoplon.core.errors import InputError, ModelLoadError, TrustRequiredError, UnsupportedFormatError
from hoplon.targets.onnx_target import OnnxTarget
from hoplon.targets.sklearn_target import SklearnTarget
from hoplon.targets.torch_target import TorchTarget
from hoplon.targets.types import Bounds, Budget, Target

__all__ = ["ModelFormat", "detect_format", "file_digest", "load_target"]

ModelFormat = Literal["torchscript", "torch-pickle", "onnx", "safetensors", "pickle", "joblib"]

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt", ".sav"}


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def detect_format(path: str | Path) -> ModelFormat:
    """Tell a model file's format from its bytes (the extension only breaks ties for ONNX)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Model file {path} does not exist.")
    with path.open("rb") as handle:
        head = handle.read(16)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            raise UnsupportedFormatError(f"{path} looks like a ZIP archive but cannot be read: {exc}") from None
        if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-pickle"
        raise UnsupportedFormatError(f"{path} is a ZIP archive but not a PyTorch or TorchScript model.")
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len <= MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80" or (path.suffix.lower() in _PICKLE_SUFFIXES and head[:1] in (b"(", b"c", b"]", b"}")):
        return "pickle"
    if head[:1] == b"x" and path.suffix.lower() in {".joblib", ".pkl"}:  # zlib-compressed joblib
        return "joblib"
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":
        return "onnx"
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        # An unknown body under a pickle-ish name: treat as pickle so it is refused, never run.
        return "pickle"
    raise UnsupportedFormatError(
        f"Cannot tell the format of {path}; hoplon reads TorchScript, ONNX, safetensors (with --arch) "
        "and, with --trust, pickled PyTorch or scikit-learn models."
    )


def load_target(
    path: str | Path,
    *,
    input_shape: tuple[int, ...],
    n_classes: int | None = None,
    bounds: Bounds | None = None,
    arch: str | None = None,
    trust: bool = False,
    budget: Budget | None = None,
) -> Target:
    """Load ``path`` as a target for samples of ``input_shape``.

    Args:
        path: the model file.
        input_shape: one sample's shape (from the dataset).
        n_classes: needed to build ``arch`` for safetensors / state dicts; otherwise inferred.
        bounds: the input box, recorded on the target.
        arch: architecture for weight-only files: a demo name (``digits-cnn``) or ``package.module:function``.
        trust: allow pickle-based files, which can run arbitrary code when loaded.
        budget: optional query budget.
    """
    path = Path(path)
    fmt = detect_format(path)
    name = path.name
    if fmt == "torchscript":
        return TorchTarget.from_torchscript(str(path), input_shape=input_shape, bounds=bounds, budget=budget, name=name)
    if fmt == "onnx":
        return OnnxTarget(str(path), input_shape=input_shape, bounds=bounds, budget=budget, name=name)
    if fmt == "safetensors":
        return _load_safetensors(path, input_shape, n_classes, arch, bounds, budget)
    if not trust:
        raise TrustRequiredError(
            f"{path} is a pickle-based file ({fmt}); loading it can run arbitrary code. "
            "Scan it first, then pass --trust (trust=True) if you trust its source, or export the model "
            "to TorchScript, ONNX or safetensors."
        )
    return _load_trusted_pickle(path, fmt, input_shape, n_classes, arch, bounds, budget)


def _load_safetensors(
    path: Path,
    input_shape: tuple[int, ...],
    n_classes: int | None,
    arch: str | None,
    bounds: Bounds | None,
    budget: Budget | None,
) -> Target:
    if arch is None:
        raise InputError(f"{path} holds only weights (safetensors); pass --arch to say which architecture they fit.")
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ModelLoadError(
            "safetensors files need the safetensors package: pip install 'hoplon[safetensors]'."
        ) from None
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own untyped errors for bad headers
        raise ModelLoadError(f"Cannot read safetensors file {path}: {exc}") from None
    return _module_from_state(state, path, input_shape, n_classes, arch, bounds, budget)


def _module_from_state(
    state: Mapping[str, object],
    path: Path,
    input_shape: tuple[int, ...],
    n_classes: int | None,
    arch: str,
    bounds: Bounds | None,
    budget: Budget | None,
) -> Target:
    from hoplon.models import build

    if n_classes is None:
        raise InputError(f"Building --arch {arch} for {path} needs the number of classes.")
    module = build(arch, input_shape=input_shape, n_classes=n_classes)
    try:
        module.load_state_dict(dict(state))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelLoadError(f"The weights in {path} do not fit --arch {arch}: {first}") from None
    return TorchTarget(module, input_shape=input_shape, bounds=bounds, budget=budget, name=path.name)


def _load_trusted_pickle(
    path: Path,
    fmt: ModelFormat,
    input_shape: tuple[int, ...],
    n_classes: int | None,
    arch: str | None,
    bounds: Bounds | None,
    budget: Budget | None,
) -> Target:
    import torch
    from torch import nn

    if fmt == "torch-pickle" or (fmt == "pickle" and path.suffix.lower() in {".pt", ".pth", ".ckpt", ".bin"}):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=arch is not None)
        except Exception as exc:  # torch.load raises many unrelated types for bad files
            raise ModelLoadError(f"Cannot load {path} with torch.load: {str(exc).splitlines()[0]}") from None
        if isinstance(obj, nn.Module):
            return TorchTarget(obj, input_shape=input_shape, bounds=bounds, budget=budget, name=path.name)
        if isinstance(obj, dict) and arch is not None:
            return _module_from_state(obj, path, input_shape, n_classes, arch, bounds, budget)
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a model; pass --arch for a state dict.")
    try:
        import joblib
    except ImportError:  # joblib comes with scikit-learn
        raise ModelLoadError("Loading pickled scikit-learn models needs joblib.") from None
    try:
        estimator = joblib.load(path)
    except Exception as exc:  # unpickling raises arbitrary types
        raise ModelLoadError(f"Cannot load {path} with joblib: {str(exc).splitlines()[0]}") from None
    return SklearnTarget(estimator, input_shape=input_shape, bounds=bounds, budget=budget, name=path.name)
