"""`SklearnTarget`: a fitted scikit-learn classifier's ``predict_proba`` as a black-box target."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hoplon.core.errors import ModelLoadError
from hoplon.targets.types import Bounds, Budget, Capability, InputSpec, QueryCounter, ScoreKind, batches

if TYPE_CHECKING:
    import torch

__all__ = ["SklearnTarget"]


class SklearnTarget:
    """A fitted estimator with ``predict_proba``; samples are flattened to ``(batch, n_features)``.

    Class indices are positions in ``estimator.classes_``; labels given to hoplon must be those positions
    (``0 .. n_classes-1``), which is what scikit-learn's encoders produce for integer labels.
    """

    def __init__(
        self,
        estimator: Any,
        *,
        input_shape: tuple[int, ...] | None = None,
        bounds: Bounds | None = None,
        budget: Budget | None = None,
        batch_size: int = 4096,
        name: str = "sklearn-model",
    ) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise ModelLoadError(f"{type(estimator).__name__} has no predict_proba; hoplon needs class scores.")
        n_features = getattr(estimator, "n_features_in_", None)
        if input_shape is None:
            if n_features is None:
                raise ModelLoadError("The estimator is not fitted (no n_features_in_); pass input_shape.")
            input_shape = (int(n_features),)
        self.estimator = estimator
        self.name = name
        self.score_kind: ScoreKind = "probabilities"
        self.input_spec = InputSpec(tuple(input_shape), "float32", bounds)
        self.capabilities = frozenset({Capability.SCORES, Capability.LABELS})
        self.counter = QueryCounter(budget)
        self.batch_size = batch_size
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise ModelLoadError("The estimator is not fitted (no classes_).")
        self.n_classes = len(classes)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        import numpy as np
        import torch

        self.input_spec.check(x)
        parts = []
        for s in batches(int(x.shape[0]), self.batch_size):
            chunk = x[s].detach().cpu().reshape(x[s].shape[0], -1).to(torch.float64).numpy()
            self.counter.spend(int(chunk.shape[0]))
            parts.append(torch.as_tensor(np.asarray(self.estimator.predict_proba(chunk)), dtype=torch.float32))
        return torch.cat(parts) if parts else torch.empty((0, self.n_classes))
