"""Shared types of model-extraction attacks: their metadata and their result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ExtractedModel"]


@dataclass(frozen=True, slots=True)
class ExtractedModel:
    """What an extraction attack obtained.

    Args:
        surrogate: the attacker's trained copy (eval mode, ``(batch, n_classes)`` logits).
        queries: ``(n, *shape)`` every input sent to the victim, in order (the query log a detector sees).
        answers: ``(n, n_classes)`` what the victim returned for them (hardened scores, or one-hot labels).
        n_queries: model rows spent (``len(queries)``).
        label_only: whether the attacker trained on labels only (the victim gave no scores).
    """

    surrogate: nn.Module
    queries: torch.Tensor
    answers: torch.Tensor
    n_queries: int
    label_only: bool
