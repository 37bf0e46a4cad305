"""Formats that store no pickle: their headers are validated and their code-carrying features flagged."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.scan.conftest import ScanBytes


def _ids(records) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.id for r in records for f in r.findings}


def _safetensors(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize(
    ("header", "data"),
    [
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 4),  # past the end
        ({"w": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8),  # bad dtype
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8),  # size mismatch
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}}, b"\x00" * 8),  # bad shape
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\x00" * 12,
        ),  # overlap
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 4 + b"hidden payload"),
        ({"__metadata__": {"k": 1}}, b""),
    ],
)
def test_safetensors_header_problems(scan_bytes: ScanBytes, header: dict[str, object], data: bytes) -> None:
    records = scan_bytes(_safetensors(header, data), "m.safetensors")
    assert records[0].format == "safetensors"
    assert records[0].verdict == "suspicious"


def test_safetensors_header_over_limit(scan_bytes: ScanBytes) -> None:
    data = struct.pack("<Q", 1 << 40) + b"{" + b" " * 100
    records = scan_bytes(data, "m.safetensors")
    assert records[0].verdict != "clean"


def test_gguf_chat_template_injection(scan_bytes: ScanBytes) -> None:
    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text.encode())) + text.encode()

    template = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    kv = s("tokenizer.chat_template") + struct.pack("<I", 8) + s(template)
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv
    records = scan_bytes(data, "m.gguf")
    assert "scan.gguf.template-injection" in _ids(records)
    assert records[0].verdict == "unsafe"


def test_gguf_bad_counts(scan_bytes: ScanBytes) -> None:
    data = b"GGUF" + struct.pack("<IQQ", 3, 1 << 60, 1) + b"\x00" * 16
    assert scan_bytes(data, "m.gguf")[0].verdict == "suspicious"


def _onnx_model(location: str | None = None, domain: str = "") -> bytes:
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [2], [0.0, 0.0])
    if location is not None:
        w.data_location = TensorProto.EXTERNAL
        w.ClearField("float_data")
        entry = w.external_data.add()
        entry.key, entry.value = "location", location
    node = helper.make_node("Custom" if domain else "Add", ["x", "w"], ["y"], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [w],
    )
    return bytes(helper.make_model(graph).SerializeToString())


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "C:\\secrets.bin"])
def test_onnx_external_data_escaping_the_folder(scan_bytes: ScanBytes, location: str) -> None:
    records = scan_bytes(_onnx_model(location), "m.onnx")
    assert "scan.onnx.external-data-escape" in _ids(records)


def test_onnx_external_data_inside_the_folder_is_fine(scan_bytes: ScanBytes) -> None:
    assert scan_bytes(_onnx_model("weights/w.bin"), "m.onnx")[0].verdict == "clean"


def test_onnx_custom_domain(scan_bytes: ScanBytes) -> None:
    records = scan_bytes(_onnx_model(domain="evil.ops"), "m.onnx")
    assert "scan.onnx.custom-domain" in _ids(records)


def test_onnx_truncated(scan_bytes: ScanBytes) -> None:
    data = _onnx_model()
    assert scan_bytes(data[: len(data) // 2], "m.onnx")[0].verdict == "suspicious"


def _keras(layer: Mapping[str, object]) -> bytes:
    config = {"class_name": "Sequential", "config": {"layers": [layer]}}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    return buf.getvalue()


def test_keras_lambda_with_bytecode(scan_bytes: ScanBytes) -> None:
    layer = {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {"name": "l", "function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAA"}}},
    }
    records = scan_bytes(_keras(layer), "m.keras")
    assert records[0].format == "keras"
    assert any(r.verdict == "unsafe" for r in records)


def test_keras_custom_object(scan_bytes: ScanBytes) -> None:
    layer = {"module": "my_pkg.layers", "class_name": "Mine", "config": {}}
    assert "scan.keras.custom-object" in _ids(scan_bytes(_keras(layer), "m.keras"))


def test_h5_lambda_layer(tmp_path: Path) -> None:
    import h5py  # type: ignore[import-untyped]

    from hoplon.scan import scan_file

    config = {"class_name": "Functional", "config": {"layers": [{"class_name": "Lambda", "config": {
        "function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda"}}]}}  # fmt: skip
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config)
        h5.attrs["keras_version"] = "2.15.0"
    records = scan_file(path)
    assert records[0].format == "keras-h5"
    assert records[0].verdict == "unsafe"


def test_savedmodel_python_and_file_ops(scan_bytes: ScanBytes) -> None:
    graph = b"\x08\x01\x12\x20" + b"\x0a\x04node\x12\x06PyFunc" + b"\x0a\x02rf\x12\x08ReadFile"
    records = scan_bytes(graph, "export/saved_model.pb")
    assert records[0].format == "savedmodel"
    assert {"scan.savedmodel.python-op", "scan.savedmodel.file-op"} <= _ids(records)


def test_npy_bad_header(scan_bytes: ScanBytes) -> None:
    header = b"{'descr': __import__('os').system('id'), 'shape': (1,)}\n"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    assert scan_bytes(data, "a.npy")[0].verdict == "suspicious"


def test_text_files_are_not_mistaken_for_pickles(scan_bytes: ScanBytes) -> None:
    for name, text in (("vocab.txt", "cat\ndog\nbird\n"), ("README.md", "# Model\n"), ("merges.txt", "c a\n")):
        assert scan_bytes(text.encode(), name)[0].verdict == "clean", name
