"""`TorchTarget`: a PyTorch module (or TorchScript file) as a white-box target with gradients."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hoplon.core.errors import InputError, ModelLoadError
from hoplon.targets.types import Bounds, Budget, Capability, InputSpec, QueryCounter, ScoreKind, batches

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["TorchTarget", "quiet_torchscript"]


@contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence torch 2.13's deprecation warnings for TorchScript, which hoplon reads and writes on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.", category=DeprecationWarning)
        yield


class TorchTarget:
    """A classifier given as a ``torch.nn.Module`` (eval mode); gives scores and gradients.

    Args:
        module: the model; its output must be ``(batch, n_classes)`` logits (or probabilities, then set
            ``score_kind``).
        input_shape: shape of one sample, without the batch axis.
        n_classes: number of classes; inferred from one forward pass when omitted.
        bounds: the input box, if the model declares one (datasets usually carry it).
        budget: optional query budget.
        batch_size: rows per forward pass in :meth:`predict`.
        name: how reports refer to the model.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        input_shape: tuple[int, ...],
        n_classes: int | None = None,
        bounds: Bounds | None = None,
        budget: Budget | None = None,
        batch_size: int = 1024,
        score_kind: ScoreKind = "logits",
        name: str = "model",
    ) -> None:
        import torch

        self.module = module.eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.name = name
        self.score_kind: ScoreKind = score_kind
        self.input_spec = InputSpec(tuple(int(s) for s in input_shape), "float32", bounds)
        self.capabilities = frozenset({Capability.GRADIENTS, Capability.SCORES, Capability.LABELS})
        self.counter = QueryCounter(budget)
        self.batch_size = batch_size
        try:
            first = next(iter(self.module.parameters()), None)
            self.device = first.device if first is not None else torch.device("cpu")
        except (RuntimeError, AttributeError):  # TorchScript modules without parameters
            self.device = torch.device("cpu")
        if n_classes is None:
            with torch.no_grad():
                probe = torch.zeros((1, *self.input_spec.shape), device=self.device)
                try:
                    out = self.module(probe)
                except Exception as exc:  # a model that can't run is a user error, reported in one line
                    raise ModelLoadError(
                        f"The model {name} does not accept inputs of shape {(1, *self.input_spec.shape)}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    ) from None
            if not isinstance(out, torch.Tensor) or out.ndim != 2:
                raise ModelLoadError(
                    f"The model {name} must return a (batch, n_classes) tensor; got "
                    f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}."
                )
            n_classes = int(out.shape[1])
        if n_classes < 2:
            raise ModelLoadError(f"A classifier needs at least 2 classes; {name} has {n_classes}.")
        self.n_classes = n_classes

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        self.input_spec.check(x)
        self.counter.spend(int(x.shape[0]))
        try:
            out: torch.Tensor = self.module(x.to(self.device))
        except RuntimeError as exc:
            raise InputError(f"The model {self.name} failed on a batch of shape {tuple(x.shape)}: {exc}") from None
        return out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Scores for ``x`` (``(batch, *shape)`` float32), without gradients."""
        import torch

        with torch.no_grad():
            if 0 < x.shape[0] <= self.batch_size:  # one batch: no slicing, no concatenated copy
                return self._forward(x)
            parts = [self._forward(x[s]) for s in batches(int(x.shape[0]), self.batch_size)]
        return torch.cat(parts) if parts else torch.empty((0, self.n_classes))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores for ``x`` with the autograd graph kept, for gradient-based attacks."""
        return self._forward(x)

    @classmethod
    def from_torchscript(cls, path: str, *, input_shape: tuple[int, ...], **kwargs: object) -> TorchTarget:
        """Load a TorchScript archive (no Python code runs; TorchScript is interpreted by torch)."""
        import torch

        try:
            with quiet_torchscript():
                module = torch.jit.load(path, map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"Cannot load TorchScript model {path}: {str(exc).splitlines()[0]}") from None
        return cls(module, input_shape=input_shape, **kwargs)  # type: ignore[arg-type]
