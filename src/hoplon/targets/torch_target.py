"""`TorchTarget`: a PyTorch module (or TorchScript file) as a white-box target with gradients."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

from hoplon.core.errors import InputError, ModelLoadError
from hoplon.targets.types import Bounds, Budget, Capability, InputSpec, QueryCounter, ScoreKind, batches

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["MemoryFormat", "TorchTarget", "quiet_torchscript"]

MemoryFormat = Literal["auto", "contiguous", "channels_last"]
_MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
# The channels_last probe: its outputs must match the contiguous ones within these tolerances (float rounding).
_PROBE_RTOL, _PROBE_ATOL = 1e-4, 1e-5


def _channels_last_gradient(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    """A forward pre-hook for ``nn.Flatten`` in a channels_last model: the gradient of its input comes back
    channels_last.

    Flattening a channels_last batch copies it into the (N, C·H·W) order the next layer expects, and the
    backward hands the layer before it a gradient in the contiguous layout; PyTorch's CPU kernels for
    max-pooling and ReLU then convert or walk mismatched strides (about a fifth of a forward and input
    gradient of a LeNet-style CNN). One explicit conversion here keeps the backward in one layout. Values are
    unchanged: only the memory order of the gradient differs.
    """
    import torch

    x = args[0] if args else None
    if (
        isinstance(x, torch.Tensor)
        and x.requires_grad
        and x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        x.register_hook(lambda grad: grad.contiguous(memory_format=torch.channels_last))


def _is_plain_sequential(module: torch.jit.ScriptModule) -> bool:
    """Whether a TorchScript module is ``nn.Sequential``'s own forward: each child called once, in order, on
    the previous child's output (the graph torch.jit.script writes for ``nn.Sequential``), nothing else."""
    if getattr(module, "original_name", None) != "Sequential":
        return False
    names = [name for name, _ in module.named_children()]
    graph = module.graph
    inputs = list(graph.inputs())
    if len(inputs) != 2 or not names:
        return False
    children: dict[str, str] = {}  # value name of a GetAttr's output -> the child's attribute name
    previous, called = inputs[1], 0
    for node in graph.nodes():
        if node.kind() == "prim::GetAttr":
            children[node.output().debugName()] = node.s("name")
        elif node.kind() == "prim::CallMethod" and node.s("name") == "forward":
            args = list(node.inputs())
            if (
                called >= len(names)
                or len(args) != 2
                or children.get(args[0].debugName()) != names[called]
                or args[1] is not previous
            ):
                return False
            previous, called = node.output(), called + 1
        else:
            return False
    outputs = list(graph.outputs())
    return called == len(names) and len(outputs) == 1 and outputs[0] is previous


def _split_at_flatten(module: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """A TorchScript ``nn.Sequential`` with a ``Flatten`` child, as two TorchScript halves split before it.

    TorchScript takes no hooks, so :func:`_channels_last_gradient` cannot sit inside it; called between the
    halves it can. Only the ``Sequential`` container is compiled anew (from children that are TorchScript
    already, sharing their parameters): no Python code of the model runs. ``None`` for any other shape.
    """
    import torch
    from torch import nn

    if not isinstance(module, torch.jit.ScriptModule) or not _is_plain_sequential(module):
        return None
    children = [child for _, child in module.named_children()]
    kinds = [getattr(child, "original_name", None) for child in children]
    if "Flatten" not in kinds[1:]:
        return None
    cut = kinds.index("Flatten", 1)
    try:
        with quiet_torchscript():
            head = torch.jit.script(nn.Sequential(*children[:cut]))
            tail = torch.jit.script(nn.Sequential(*children[cut:]))
    except Exception:  # an unusual child TorchScript won't re-wrap: the whole module runs as it is
        return None
    return head, tail


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
        memory_format: how image batches are laid out in memory for the model. ``"channels_last"`` converts the
            module's 4-D weights to channels_last **in place** (values unchanged, like ``.eval()`` and the frozen
            parameters, the target owns the module from here on) and feeds every batch channels_last; convolutions
            and max-pooling run markedly faster that way on CPU (forward and input gradient of the demo digits CNN:
            about 0.55× and 0.85× the time). Inputs keep their layout for the caller: the conversion is one
            differentiable copy inside the forward, so gradients still reach the tensor an attack passes in, and
            the scores returned are ordinary ``(batch, n_classes)`` tensors. Each ``nn.Flatten`` of an ``nn.Module``
            also gets a forward pre-hook that hands its input's gradient back channels_last, so the backward does
            not switch layouts at the flatten; a TorchScript ``nn.Sequential`` (which takes no hooks) runs as two
            TorchScript halves split before its ``Flatten``, with the same conversion between them.
            ``"contiguous"`` leaves the module and the inputs alone. ``"auto"`` (default) picks channels_last for
            image inputs (``input_shape`` of 3 axes,
            ``(channels, height, width)``) when a probe on two rows runs and matches the contiguous outputs within
            float rounding, and otherwise (other shapes, or a model that reshapes with ``view`` or breaks on that
            layout) keeps the contiguous path and the module untouched. Results equal the contiguous path's up to
            float rounding.
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
        memory_format: MemoryFormat = "auto",
    ) -> None:
        import torch

        if memory_format not in _MEMORY_FORMATS:
            raise InputError(
                f"The 'memory_format' parameter of TorchTarget must be one of {', '.join(_MEMORY_FORMATS)}. "
                f"Got {memory_format!r}."
            )
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
        self.channels_last = False
        self._channels_last_format = torch.channels_last
        self._halves: tuple[nn.Module, nn.Module] | None = None  # a scripted Sequential split at its Flatten
        if memory_format == "channels_last" and len(self.input_spec.shape) != 3:
            raise InputError(
                f"memory_format='channels_last' needs image inputs of shape (channels, height, width); "
                f"{name} takes {self.input_spec.shape}."
            )
        if memory_format != "contiguous" and len(self.input_spec.shape) == 3:
            self.channels_last = self._try_channels_last(strict=memory_format == "channels_last")

    def _try_channels_last(self, *, strict: bool) -> bool:
        """Convert the module to channels_last if two probe rows give the contiguous outputs (up to rounding).

        On a mismatch or an error the module goes back to the contiguous layout; ``strict`` then raises instead.
        """
        import torch

        probe = torch.rand((2, *self.input_spec.shape), generator=torch.Generator().manual_seed(0))
        probe = probe.to(self.device)
        bounds = self.input_spec.bounds
        if bounds is not None:  # inside a finite box; an infinite one keeps the [0, 1) draw
            inside = bounds.lower.to(probe) + probe * (bounds.upper - bounds.lower).to(probe)
            probe = torch.where(torch.isfinite(inside), inside, probe)
        problem = ""
        with torch.no_grad():
            try:
                reference = self.module(probe)
                self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # nn.Module.to takes it
                converted = self.module(probe.contiguous(memory_format=torch.channels_last))
                if not torch.allclose(converted, reference, rtol=_PROBE_RTOL, atol=_PROBE_ATOL, equal_nan=True):
                    problem = "its outputs differ from the contiguous layout's beyond float rounding"
            except Exception as exc:  # a model that breaks on the layout keeps the contiguous path
                problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if not problem:
            # Gradients through nn.Flatten come back channels_last: a hook in an nn.Module; TorchScript takes
            # none, so a scripted Sequential runs as two halves with the hook between them (if they agree).
            for sub in self.module.modules():
                if isinstance(sub, torch.nn.Flatten):
                    sub.register_forward_pre_hook(_channels_last_gradient)
            halves = _split_at_flatten(self.module)
            if halves is not None:
                with torch.no_grad():
                    split = halves[1](halves[0](probe.contiguous(memory_format=torch.channels_last)))
                if torch.allclose(split, converted, rtol=_PROBE_RTOL, atol=_PROBE_ATOL, equal_nan=True):
                    self._halves = halves
            return True
        self.module.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        if strict:
            raise ModelLoadError(f"The model {self.name} cannot run channels_last: {problem}")
        return False

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        self.input_spec.check(x)
        self.counter.spend(int(x.shape[0]))
        try:
            batch = x.to(self.device)
            if self.channels_last:  # one differentiable copy: gradients reach the caller's tensor
                batch = batch.contiguous(memory_format=self._channels_last_format)
            if self._halves is None:
                out: torch.Tensor = self.module(batch)
            else:
                middle = self._halves[0](batch)
                _channels_last_gradient(self.module, (middle,))
                out = self._halves[1](middle)
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
