"""Real files written by torch, scikit-learn/joblib, numpy, safetensors, ONNX and h5py come out clean."""

from __future__ import annotations

from pathlib import Path

from hoplon.scan import scan_paths


def test_benign_corpus_is_clean(benign_corpus: Path) -> None:
    records = scan_paths([benign_corpus])
    flagged = {r.path: [f.id for f in r.findings] for r in records if r.verdict != "clean"}
    assert flagged == {}
    assert len({r.path.split("!")[0] for r in records}) == len(list(benign_corpus.iterdir()))


def test_benign_formats_are_recognised_from_content(benign_corpus: Path) -> None:
    formats = {Path(r.path).name: r.format for r in scan_paths([benign_corpus]) if "!" not in r.path}
    assert formats["mlp_state.pt"] == "pytorch"
    assert formats["legacy_state.bin"] == "pytorch-legacy"
    assert formats["model.safetensors"] == "safetensors"
    assert formats["forest.joblib"] == "pickle"
    assert formats["forest_z.joblib"] == "zlib"
    assert formats["forest.joblib.gz"] == "gzip"
    assert formats["matmul.onnx"] == "onnx"
    assert formats["weights.h5"] == "hdf5"
    assert formats["tiny.gguf"] == "gguf"
    assert formats["arrays.npz"] == "npz"
    assert formats["float.npy"] == "npy"
