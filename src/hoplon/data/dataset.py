"""`Dataset`: inputs, labels and the input box they live in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Bounds

__all__ = ["DataKind", "Dataset"]

DataKind = Literal["image", "tabular"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dataset:
    """Labelled samples with their declared input bounds.

    Args:
        x: ``(n, *sample_shape)`` float32 inputs.
        y: ``(n,)`` int64 labels in ``0 .. n_classes-1``.
        bounds: the input box; attacks never leave it.
        name: how reports refer to the data.
        kind: ``image`` (``(n, C, H, W)``) or ``tabular`` (``(n, d)``); decides how reports draw examples.
        feature_names: names of tabular features, when known.
    """

    x: torch.Tensor
    y: torch.Tensor
    bounds: Bounds
    name: str
    kind: DataKind = "tabular"
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        import torch

        if self.x.ndim < 2:
            raise InputError(
                f"Data 'x' must have a batch axis and at least one feature; got shape {tuple(self.x.shape)}."
            )
        if self.y.ndim != 1 or len(self.y) != len(self.x):
            raise InputError(f"Labels 'y' must be a vector of {len(self.x)} labels; got shape {tuple(self.y.shape)}.")
        if len(self.x) == 0:
            raise InputError(f"The dataset {self.name} is empty.")
        if not torch.isfinite(self.x).all():
            bad = int((~torch.isfinite(self.x)).reshape(len(self.x), -1).any(1).nonzero()[0, 0])
            raise InputError(f"The dataset {self.name} has NaN or infinite values (first in sample {bad}).")
        if int(self.y.min()) < 0:
            raise InputError(f"The dataset {self.name} has negative labels; labels must be 0 .. n_classes-1.")
        outside = ~self.bounds.contains(self.x)
        if bool(outside.any()):
            first = int(outside.nonzero()[0, 0])
            raise InputError(
                f"The dataset {self.name} has {int(outside.sum())} samples outside its declared bounds "
                f"{self.bounds.describe()} (first: sample {first}). Fix the data or pass the right --bounds."
            )

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    def check_labels(self, n_classes: int) -> None:
        """Raise :class:`InputError` if a label is not a class of a model with ``n_classes`` outputs."""
        top = int(self.y.max())
        if top >= n_classes:
            raise InputError(
                f"The dataset {self.name} has label {top}, but the model has only {n_classes} classes "
                f"(labels must be 0 .. {n_classes - 1})."
            )

    def subset(self, index: torch.Tensor | slice) -> Dataset:
        return Dataset(
            x=self.x[index],
            y=self.y[index],
            bounds=self.bounds,
            name=self.name,
            kind=self.kind,
            feature_names=self.feature_names,
        )

    def fingerprint(self) -> str:
        """``merkle:<hex>``: the RFC 9162 Merkle root over the records, in order (see :mod:`hoplon.data.fingerprint`).

        The same root ``hoplon data fingerprint`` records in the ledger, so a report's dataset digest can be
        checked against it, and membership of a record proved.
        """
        from hoplon.data.fingerprint import records_root

        return records_root(self.x, self.y)
