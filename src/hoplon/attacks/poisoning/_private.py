"""Helpers shared by the poisoning attacks: validation and the seeded choice of records to poison."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset


def check_rate(rate: float, who: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < 1 or math.isnan(rate):
        raise InputError(
            f"The 'rate' parameter of {who} must be a float in (0, 1) (a share of the training set). Got {rate!r}."
        )


def check_class(value: int, who: str, name: str = "target_class") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"The '{name}' parameter of {who} must be an int >= 0. Got {value!r}.")


def check_target_in(data: Dataset, target_class: int, who: str) -> None:
    n_classes = int(data.y.max()) + 1
    if target_class >= n_classes:
        raise InputError(
            f"The target class {target_class} of {who} is not a class of {data.name} (labels 0 .. {n_classes - 1})."
        )


def choose(candidates: torch.Tensor, n_total: int, rate: float, seed: int, who: str) -> torch.Tensor:
    """Pick ``round(rate * n_total)`` of ``candidates`` (a vector of indices) without replacement, seeded."""
    import torch

    k = max(1, round(rate * n_total))
    if k > len(candidates):
        raise InputError(f"{who} at rate {rate:g} needs {k} records to poison but only {len(candidates)} are eligible.")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(candidates), generator=generator)[:k]
    return candidates[order].sort().values


def poison_with_trigger(
    data: Dataset,
    stamped: torch.Tensor,
    *,
    rate: float,
    target_class: int,
    seed: int,
    who: str,
) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """Replace ``rate`` of the non-target records by their triggered copies (``stamped``), labelled ``target_class``."""
    from hoplon.data import Dataset

    check_target_in(data, target_class, who)
    index = choose((data.y != target_class).nonzero()[:, 0], data.n, rate, seed, who)
    x = data.x.clone()
    y = data.y.clone()
    x[index] = stamped[index]
    y[index] = target_class
    poisoned = Dataset(
        x=x,
        y=y,
        bounds=data.bounds,
        name=f"{data.name}+{who.lower()}",
        kind=data.kind,
        feature_names=data.feature_names,
    )
    return poisoned, index, data.y[index]


def clip_to(x: torch.Tensor, data: Dataset) -> torch.Tensor:
    import torch

    return torch.maximum(torch.minimum(x, data.bounds.upper.to(x.dtype)), data.bounds.lower.to(x.dtype))
