"""The CycloneDX 1.6 ML-BOM validates against the CycloneDX schema and carries what the folder declares."""

from __future__ import annotations

from pathlib import Path

from hoplon.scan.bom import build_bom, validate_bom


def test_bom_of_the_benign_corpus_validates(benign_corpus: Path) -> None:
    doc = build_bom(benign_corpus)
    assert validate_bom(doc) is None
    assert doc["specVersion"] == "1.6"
    model = doc["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert model["licenses"][0]["license"]["id"] == "Apache-2.0"
    params = model["modelCard"]["modelParameters"]
    assert params["modelArchitecture"] == "MLP"
    dataset = next(c for c in doc["components"] if c["type"] == "data")
    assert dataset["name"] == "digits" and params["datasets"] == [{"ref": dataset["bom-ref"]}]
    files = {c["name"]: c for c in doc["components"] if c["type"] == "file"}
    st = files["model.safetensors"]
    assert st["hashes"][0]["alg"] == "SHA-256" and len(st["hashes"][0]["content"]) == 64
    props = {p["name"]: p["value"] for p in st["properties"]}
    assert props["hoplon:format"] == "safetensors" and props["hoplon:parameter_count"] == "20"
    torch_props = {p["name"]: p["value"] for p in files["mlp_state.pt"]["properties"]}
    assert torch_props["hoplon:framework"] == "pytorch"
    assert torch_props["hoplon:parameter_count"] == str(4 * 8 + 8 + 8 * 2 + 2)
    gguf_props = {p["name"]: p["value"] for p in files["tiny.gguf"]["properties"]}
    assert gguf_props["hoplon:parameter_count"] == "16"


def test_schema_validation_catches_a_broken_bom(benign_corpus: Path) -> None:
    doc = build_bom(benign_corpus)
    doc["components"][0]["type"] = "not-a-type"
    assert validate_bom(doc) is not None
