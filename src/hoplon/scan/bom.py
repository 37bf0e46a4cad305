"""A CycloneDX 1.6 ML-BOM for a model folder, built with ``cyclonedx-python-lib``.

The model is the BOM's subject (a ``machine-learning-model`` component). Every file is a ``file`` component
with its SHA-256, its format as the scanner recognised it (from content), the framework, the scan verdict
and, where it can be read without executing anything (safetensors headers, PyTorch pickles walked
symbolically; GGUF headers), the number of tensor elements. A Hugging Face style model card (``README.md`` front
matter) and ``config.json`` give the licence, declared datasets (``data`` components referenced from the
model card), task and architecture. ``cyclonedx-python-lib`` has no model-card classes yet, so the
``modelCard`` object is added to the serialised document, which is then validated against the CycloneDX
1.6 JSON schema.
"""

from __future__ import annotations

import json
import re
import struct
import time
import zipfile
from pathlib import Path
from typing import Any, Final

from hoplon.core.errors import InputError
from hoplon.core.report import hoplon_version
from hoplon.scan._pickle_vm import walk_pickles
from hoplon.scan.scanner import file_sha256, iter_files, scan_file
from hoplon.scan.types import ScanLimits

__all__ = ["build_bom", "model_card_fields", "parameter_count", "validate_bom"]

_FRAMEWORK: Final = {
    "pytorch": "pytorch",
    "pytorch-legacy": "pytorch",
    "pytorch-tar": "pytorch",
    "torchscript": "pytorch",
    "safetensors": "safetensors",
    "onnx": "onnx",
    "gguf": "gguf",
    "keras": "keras",
    "keras-h5": "keras",
    "keras-config": "keras",
    "hdf5": "hdf5",
    "savedmodel": "tensorflow",
    "npy": "numpy",
    "npz": "numpy",
    "pickle": "pickle",
}
_SKIP_FILES: Final = frozenset({"model.sig"})


def parameter_count(path: Path, fmt: str) -> int | None:
    """Tensor elements in a safetensors, GGUF or PyTorch file, read from headers and pickles, never loaded."""
    try:
        if fmt == "safetensors":
            with path.open("rb") as handle:
                (n,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(n))
            total = 0
            for key, entry in header.items():
                if key != "__metadata__":
                    count = 1
                    for d in entry["shape"]:
                        count *= int(d)
                    total += count
            return total
        if fmt == "pytorch":
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                with archive.open(name) as member:
                    data = member.read()
            import io

            walk = walk_pickles(io.BytesIO(data), len(data), deadline=time.monotonic() + 30)
            return walk.tensor_elements
        if fmt == "gguf":
            from hoplon.scan._tensors import read_gguf

            with path.open("rb") as handle:
                return read_gguf(str(path), handle, path.stat().st_size, 100 << 20)[1]
        if fmt == "pytorch-legacy":
            with path.open("rb") as handle:
                walk = walk_pickles(handle, path.stat().st_size, deadline=time.monotonic() + 30)
            return walk.tensor_elements
    except (OSError, ValueError, KeyError, TypeError, StopIteration, struct.error, zipfile.BadZipFile):
        return None
    return None


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def model_card_fields(folder: Path) -> dict[str, Any]:
    """``license``, ``datasets``, ``pipeline_tag``, ``base_model``, ``library_name`` from README front matter."""
    readme = folder / "README.md"
    fields: dict[str, Any] = {}
    if not readme.is_file():
        return fields
    match = _FRONT_MATTER.match(readme.read_text(encoding="utf-8", errors="replace")[:200_000])
    if not match:
        return fields
    key: str | None = None
    for line in match.group(1).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = re.match(r"^\s*-\s*(.+)$", line)
        if item and key:
            fields.setdefault(key, [])
            if isinstance(fields[key], list):
                fields[key].append(item.group(1).strip().strip("'\""))
            continue
        kv = re.match(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$", line)
        if kv:
            key, value = kv.group(1), kv.group(2).strip().strip("'\"")
            if value.startswith("[") and value.endswith("]"):
                fields[key] = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
            elif value:
                fields[key] = value
    return fields


def build_bom(folder: str | Path, *, limits: ScanLimits | None = None) -> dict[str, Any]:
    """The ML-BOM of a model folder (or single file) as a CycloneDX 1.6 JSON document (a dict)."""
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import Tool
    from cyclonedx.output.json import JsonV1Dot6

    root = Path(folder)
    if not root.exists():
        raise InputError(f"The path {str(root)!r} does not exist.")
    base = root if root.is_dir() else root.parent
    card = model_card_fields(base) if root.is_dir() else {}
    config = _read_config(base / "config.json") if root.is_dir() else {}
    bom = Bom()
    bom.metadata.tools.tools.add(Tool(vendor="hoplon", name="hoplon", version=hoplon_version()))
    model_props: list[Any] = []
    licenses = []
    if isinstance(card.get("license"), str):
        licenses.append(LicenseFactory().make_from_string(card["license"]))
    model = Component(
        name=root.resolve().name,
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref="model",
        licenses=licenses,
    )
    bom.metadata.component = model
    files: list[Any] = []
    total_params = 0
    for path in iter_files(root):
        rel = path.relative_to(base).as_posix()
        if path.name in _SKIP_FILES:
            continue
        records = scan_file(path, limits=limits)
        fmt = records[0].format
        verdict = max((r for r in records), key=lambda r: r.severity).verdict
        props = [Property(name="hoplon:format", value=fmt), Property(name="hoplon:scan_verdict", value=verdict)]
        if fmt in _FRAMEWORK:
            props.append(Property(name="hoplon:framework", value=_FRAMEWORK[fmt]))
        params = parameter_count(path, fmt)
        if params is not None:
            total_params += params
            props.append(Property(name="hoplon:parameter_count", value=str(params)))
        component = Component(
            name=rel,
            type=ComponentType.FILE,
            bom_ref=f"file:{rel}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=file_sha256(path))],
            properties=props,
        )
        bom.components.add(component)
        files.append(component)
    if total_params:
        model_props.append(Property(name="hoplon:parameter_count", value=str(total_params)))
    datasets = card.get("datasets", [])
    dataset_refs: list[dict[str, str]] = []
    if isinstance(datasets, list):
        for i, name in enumerate(datasets):
            ref = f"dataset:{i}:{name}"
            bom.components.add(Component(name=str(name), type=ComponentType.DATA, bom_ref=ref))
            dataset_refs.append({"ref": ref})
    for key in ("library_name", "base_model"):
        if isinstance(card.get(key), str):
            model_props.append(Property(name=f"hoplon:{key}", value=card[key]))
    for prop in model_props:
        model.properties.add(prop)
    bom.register_dependency(model, files)
    doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    parameters: dict[str, Any] = {}
    if isinstance(card.get("pipeline_tag"), str):
        parameters["task"] = card["pipeline_tag"]
    if isinstance(config.get("model_type"), str):
        parameters["architectureFamily"] = config["model_type"]
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        parameters["modelArchitecture"] = archs[0]
    if dataset_refs:
        parameters["datasets"] = dataset_refs
    if parameters:
        doc["metadata"]["component"]["modelCard"] = {"modelParameters": parameters}
    return doc


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file() or path.stat().st_size > 16 << 20:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def validate_bom(doc: dict[str, Any]) -> str | None:
    """``None`` when ``doc`` is valid CycloneDX 1.6 JSON, else the validator's message."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))
    return None if error is None else str(error)
