"""Sanitising: drop the most suspicious records of a scan (``top:2%``, ``top:50`` or ``score:0.5``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset
    from hoplon.defenses.data.scanner import ScanResult

__all__ = ["RemovalRule", "parse_removal", "sanitize"]


@dataclass(frozen=True, slots=True)
class RemovalRule:
    """Which records to remove: the top ``value`` share (``share``), the top ``value`` records (``count``), or
    every record whose combined score is at least ``value`` (``score``)."""

    kind: Literal["share", "count", "score"]
    value: float

    def select(self, scan: ScanResult) -> torch.Tensor:
        n = len(scan.ranking)
        if self.kind == "score":
            return (scan.combined >= self.value).nonzero()[:, 0]
        k = math.ceil(self.value * n) if self.kind == "share" else int(self.value)
        if k >= n:
            raise InputError(f"Removing {k} of {n} records would leave no training data.")
        return scan.ranking[:k].sort().values


def parse_removal(text: str) -> RemovalRule:
    """Parse ``top:2%``, ``top:50`` or ``score:0.5``."""
    kind, _, value = text.strip().partition(":")
    try:
        if kind == "top" and value.endswith("%"):
            share = float(value[:-1]) / 100
            if not 0 < share < 1:
                raise ValueError
            return RemovalRule("share", share)
        if kind == "top":
            count = int(value)
            if count < 1:
                raise ValueError
            return RemovalRule("count", count)
        if kind == "score":
            threshold = float(value)
            if not 0 < threshold <= 1:
                raise ValueError
            return RemovalRule("score", threshold)
    except ValueError:
        pass
    raise InputError(f"--remove must be top:P% (0 < P < 100), top:N (N >= 1) or score:T (0 < T <= 1). Got {text!r}.")


def sanitize(data: Dataset, scan: ScanResult, rule: RemovalRule) -> tuple[Dataset, torch.Tensor]:
    """The dataset without the records ``rule`` selects, and the removed indices."""
    import torch

    removed = rule.select(scan)
    keep = torch.ones(data.n, dtype=torch.bool)
    keep[removed] = False
    if not bool(keep.any()):
        raise InputError("The removal rule would remove every record.")
    return data.subset(keep), removed
