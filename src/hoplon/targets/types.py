"""The `Target` protocol: the model under test, behind one small interface.

Attacks ask for a :class:`Capability`, never for a concrete class. Every target counts the model rows it
evaluates (its queries) in a :class:`QueryCounter`, which may carry a :class:`Budget`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from hoplon.core.errors import BudgetExceeded, InputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "Bounds",
    "Budget",
    "Capability",
    "DifferentiableTarget",
    "InputSpec",
    "QueryCounter",
    "ScoreKind",
    "Target",
]

ScoreKind = Literal["logits", "probabilities"]


class Capability(enum.Enum):
    """What a target lets an attacker see."""

    GRADIENTS = "gradients"
    SCORES = "scores"
    LABELS = "labels_only"


@dataclass(frozen=True, slots=True)
class Budget:
    """A cap on the model rows a target may evaluate; exceeding it raises :class:`BudgetExceeded`."""

    max_queries: int

    def __post_init__(self) -> None:
        if self.max_queries <= 0:
            raise InputError(f"The 'max_queries' parameter of Budget must be a positive int. Got {self.max_queries}.")


class QueryCounter:
    """Counts model rows (one row = one input evaluated once) and enforces an optional budget."""

    __slots__ = ("budget", "calls", "queries")

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget
        self.queries = 0
        self.calls = 0

    def spend(self, rows: int) -> None:
        """Record ``rows`` model rows, or raise :class:`BudgetExceeded` before they would pass the cap."""
        if self.budget is not None and self.queries + rows > self.budget.max_queries:
            raise BudgetExceeded(
                f"The query budget of {self.budget.max_queries} model rows is spent "
                f"({self.queries} used, {rows} more asked).",
                used=self.queries,
                limit=self.budget.max_queries,
            )
        self.queries += rows
        self.calls += 1

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget.max_queries - self.queries


@dataclass(frozen=True, slots=True)
class Bounds:
    """The box inputs live in: ``lower <= x <= upper`` elementwise, broadcastable to one sample's shape.

    ``source`` says where it came from (``declared`` in the data, ``cli``, or ``data-range``).
    """

    lower: torch.Tensor
    upper: torch.Tensor
    source: str = "declared"

    def __post_init__(self) -> None:
        import torch

        if bool(torch.any(self.lower > self.upper)):
            raise InputError("Input bounds are invalid: some lower bound is above its upper bound.")

    @classmethod
    def scalar(cls, lower: float, upper: float, *, source: str = "declared") -> Bounds:
        import torch

        if not lower < upper:
            raise InputError(f"Input bounds must satisfy LO < HI. Got {lower}, {upper}.")
        return cls(torch.tensor(float(lower)), torch.tensor(float(upper)), source)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.lower.numel() == 1 and self.upper.numel() == 1:
            return x.clamp(float(self.lower), float(self.upper))
        lower = self.lower.to(device=x.device, dtype=x.dtype)
        upper = self.upper.to(device=x.device, dtype=x.dtype)
        return torch.minimum(torch.maximum(x, lower), upper)

    def contains(self, x: torch.Tensor, *, tol: float = 1e-6) -> torch.Tensor:
        """Per-sample bool: every element of the sample lies within the box (with tolerance)."""
        lower = self.lower.to(device=x.device, dtype=x.dtype)
        upper = self.upper.to(device=x.device, dtype=x.dtype)
        inside = (x >= lower - tol) & (x <= upper + tol)
        return inside.flatten(1).all(dim=1) if x.ndim > 1 else inside

    @property
    def width(self) -> float:
        """The largest side of the box (used to sanity-check epsilons)."""
        return float((self.upper - self.lower).max())

    def describe(self) -> str:
        if self.lower.numel() == 1 and self.upper.numel() == 1:
            return f"[{float(self.lower):g}, {float(self.upper):g}]"
        return f"per-feature box, {float(self.lower.min()):g} .. {float(self.upper.max()):g}"

    def to_dict(self) -> dict[str, object]:
        return {"lower": self.lower.tolist(), "upper": self.upper.tolist(), "source": self.source}


@dataclass(frozen=True, slots=True)
class InputSpec:
    """Shape of one sample (without the batch axis), dtype name, and the optional input box."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    bounds: Bounds | None = None

    def check(self, x: torch.Tensor, *, what: str = "input") -> None:
        """Raise :class:`InputError` when a batch does not match the model's sample shape."""
        if x.ndim == 0 or tuple(x.shape[1:]) != tuple(self.shape):
            raise InputError(
                f"The {what} has shape {tuple(x.shape)}, but the model takes samples of shape "
                f"{tuple(self.shape)} (batch axis first)."
            )


@runtime_checkable
class Target(Protocol):
    """A model under test. ``predict`` returns a ``(batch, n_classes)`` float tensor of scores."""

    name: str
    n_classes: int
    input_spec: InputSpec
    capabilities: frozenset[Capability]
    score_kind: ScoreKind
    counter: QueryCounter

    def predict(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class DifferentiableTarget(Target, Protocol):
    """A target that also gives gradients: ``logits`` keeps the autograd graph."""

    def logits(self, x: torch.Tensor) -> torch.Tensor: ...


def require(target: Target, capability: Capability, *, who: str) -> None:
    """Raise :class:`InputError` if ``target`` lacks ``capability`` (used by attacks and audits)."""
    if capability not in target.capabilities:
        have = ", ".join(sorted(c.value for c in target.capabilities)) or "none"
        raise InputError(
            f"{who} needs a target with '{capability.value}', but {target.name} offers only: {have}. "
            "Use a black-box attack for this target."
        )


def batches(n: int, batch_size: int) -> Sequence[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
