"""`OnnxTarget`: an ONNX model run by onnxruntime, as a black-box target (scores, no gradients)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hoplon.core.errors import InputError, ModelLoadError
from hoplon.targets.types import Bounds, Budget, Capability, InputSpec, QueryCounter, ScoreKind, batches

if TYPE_CHECKING:
    import torch

__all__ = ["OnnxTarget"]


class OnnxTarget:
    """An ONNX classifier. The first input takes the batch; the first output gives the scores.

    Args:
        path: the ``.onnx`` file (external data must sit beside it).
        input_shape: one sample's shape; read from the model when every axis but the batch is fixed.
        score_kind: ``logits`` or ``probabilities`` (what the model's first output holds).
    """

    def __init__(
        self,
        path: str,
        *,
        input_shape: tuple[int, ...] | None = None,
        bounds: Bounds | None = None,
        budget: Budget | None = None,
        batch_size: int = 1024,
        score_kind: ScoreKind = "logits",
        name: str | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError("ONNX models need onnxruntime: pip install 'hoplon[onnx]'.") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelLoadError(f"Cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
        model_input = self.session.get_inputs()[0]
        self._input_name = model_input.name
        if input_shape is None:
            dims = model_input.shape[1:]
            if not all(isinstance(d, int) for d in dims):
                raise ModelLoadError(
                    f"The ONNX model {path} has a dynamic sample shape {dims}; pass input_shape explicitly."
                )
            input_shape = tuple(int(d) for d in dims)
        self.name = name or path
        self.score_kind: ScoreKind = score_kind
        self.input_spec = InputSpec(tuple(input_shape), "float32", bounds)
        self.capabilities = frozenset({Capability.SCORES, Capability.LABELS})
        self.counter = QueryCounter(budget)
        self.batch_size = batch_size
        self.n_classes = int(self._run_raw(_zeros((1, *self.input_spec.shape))).shape[1])

    def _run_raw(self, x_np: object) -> torch.Tensor:
        import torch

        try:
            out = self.session.run(None, {self._input_name: x_np})[0]
        except Exception as exc:  # onnxruntime raises untyped errors for bad inputs
            raise InputError(f"The ONNX model {self.name} failed on its input: {str(exc).splitlines()[0]}") from None
        return torch.as_tensor(out, dtype=torch.float32).reshape(len(out), -1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        self.input_spec.check(x)
        parts = []
        for s in batches(int(x.shape[0]), self.batch_size):
            chunk = x[s]
            self.counter.spend(int(chunk.shape[0]))
            parts.append(self._run_raw(chunk.detach().cpu().to(torch.float32).numpy()))
        return torch.cat(parts) if parts else torch.empty((0, self.n_classes))


def _zeros(shape: tuple[int, ...]) -> object:
    import numpy as np

    return np.zeros(shape, dtype=np.float32)
