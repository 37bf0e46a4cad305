"""Open a model file as a :class:`Target`, safely by default.

TorchScript, ONNX and safetensors load without running Python code. Pickle-based files (a full
``torch.save`` of a module, joblib, ``.pkl``) are programs: they are refused unless the caller passes
``trust=True`` (the CLI's ``--trust``). The format is told from the file's content, not its name.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from hoplon.core.errors import (
    InputError,
    ModelLoadError,
    TrustRequiredError,
    UnsafeArtifactError,
    UnsupportedFormatError,
)
from hoplon.targets.onnx_target import OnnxTarget
from hoplon.targets.sklearn_target import SklearnTarget
from hoplon.targets.torch_target import TorchTarget
from hoplon.targets.types import Bounds, Budget, Target

__all__ = ["ModelFormat", "detect_format", "file_digest", "load_target"]

log = logging.getLogger(__name__)

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
    endpoint_config: str | Path | None = None,
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
        endpoint_config: for an ``http://`` or ``https://`` model, the TOML file describing the request and
            where the scores sit in the answer (:class:`~hoplon.targets.http_target.HttpTarget`).
    """
    if isinstance(path, str) and path.startswith(("http://", "https://")):
        from hoplon.targets.http_target import HttpTarget, load_endpoint_config

        config = load_endpoint_config(endpoint_config, url=path)
        return HttpTarget(config, input_shape=input_shape, bounds=bounds, budget=budget)
    if endpoint_config is not None:
        raise InputError("--endpoint-config applies only to http:// or https:// models.")
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
            f"{path} is a pickle-based file ({fmt}); loading it can run arbitrary code. Check it with "
            "'hoplon scan', then pass --trust (trust=True) if you trust its source, or export the model to "
            "TorchScript, ONNX or safetensors. Even with --trust, a file the scanner rates unsafe is refused."
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
    """Open a pickle-based file the user trusts, through the scanner first.

    The scan refuses any file with a high or critical finding (a dangerous callable), trust or not. Then
    the most restrictive loader is tried (``torch.load(weights_only=True)``, or an unpickler that imports
    only allowlisted globals); only if the file needs more (a pickled module class of the user's own) does
    the full loader run, because the user passed ``trust``.
    """
    from torch import nn

    from hoplon.core.finding import Severity
    from hoplon.scan import safe_load, scan_file

    records = scan_file(path)
    dangerous = [f for r in records for f in r.findings if f.severity >= Severity.HIGH]
    if dangerous:
        worst = max(dangerous, key=lambda f: f.severity)
        raise UnsafeArtifactError(
            f"{path} is unsafe and is refused even with --trust: [{worst.severity.label}] {worst.summary}"
        )
    framework = (
        "torch" if fmt == "torch-pickle" or path.suffix.lower() in {".pt", ".pth", ".ckpt", ".bin"} else "joblib"
    )
    try:
        obj = safe_load(path, framework=framework, fail_on=Severity.HIGH)  # type: ignore[arg-type]
    except (UnsafeArtifactError, ModelLoadError) as exc:
        log.warning(
            "%s needs the unrestricted %s loader (%s); using it because the file is trusted.", path, framework, exc
        )
        obj = _full_load(path, framework)
    if isinstance(obj, nn.Module):
        return TorchTarget(obj, input_shape=input_shape, bounds=bounds, budget=budget, name=path.name)
    if isinstance(obj, Mapping) and framework == "torch":
        if arch is None:
            raise InputError(f"{path} holds a state dict; pass --arch to say which architecture it fits.")
        return _module_from_state(obj, path, input_shape, n_classes, arch, bounds, budget)
    if hasattr(obj, "predict_proba"):
        return SklearnTarget(obj, input_shape=input_shape, bounds=bounds, budget=budget, name=path.name)
    raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a model hoplon can audit.")


def _full_load(path: Path, framework: str) -> object:
    """The unrestricted loaders, reached only with ``trust`` and after the scan found nothing dangerous."""
    try:
        if framework == "torch":
            import torch

            return torch.load(path, map_location="cpu", weights_only=False)
        import joblib

        return joblib.load(path)
    except Exception as exc:  # unpickling raises arbitrary types
        raise ModelLoadError(
            f"Cannot load {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
