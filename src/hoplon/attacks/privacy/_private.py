"""Helpers shared by privacy attacks: log-probabilities and logit-scaled confidences from any target."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.privacy.types import ReferenceModels
    from hoplon.targets.types import ScoreKind, Target

__all__ = ["check_xy", "log_probs", "logit_confidence", "need_references", "true_log_prob"]

_TINY = 1e-30


def log_probs(scores: torch.Tensor, kind: ScoreKind) -> torch.Tensor:
    """Log-probabilities (float64) from a target's scores, whether logits or probabilities."""
    import torch

    s = scores.detach().to(torch.float64)
    if kind == "logits":
        return torch.log_softmax(s, dim=1)
    p = s.clamp_min(_TINY)
    return torch.log(p / p.sum(1, keepdim=True))


def true_log_prob(lp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log p_y`` along the last two axes (``(..., n, c)`` with labels ``(n,)``)."""
    index = y.reshape(*([1] * (lp.ndim - 2)), -1, 1).expand(*lp.shape[:-1], 1)
    return lp.gather(-1, index).squeeze(-1)


def logit_confidence(lp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini et al.'s logit-scaled confidence ``log(p_y / (1 - p_y))``, computed stably from log-probabilities."""
    import torch

    index = y.reshape(*([1] * (lp.ndim - 2)), -1, 1).expand(*lp.shape[:-1], 1)
    others = lp.scatter(-1, index, float("-inf"))
    return true_log_prob(lp, y) - torch.logsumexp(others, dim=-1)


def check_xy(who: str, target: Target, x: torch.Tensor, y: torch.Tensor) -> None:
    target.input_spec.check(x, what=f"input of {who}")
    if y.ndim != 1 or len(y) != len(x):
        raise InputError(f"{who} needs one label per record; got {tuple(y.shape)} for {len(x)} records.")
    if len(y) and int(y.max()) >= target.n_classes:
        raise InputError(f"{who}: label {int(y.max())} is not a class of {target.name} ({target.n_classes} classes).")


def need_references(who: str, references: ReferenceModels | None, *, minimum: int = 1) -> ReferenceModels:
    if references is None or references.n_models < minimum:
        have = 0 if references is None else references.n_models
        raise InputError(
            f"{who} needs at least {minimum} reference models trained by a recipe (got {have}); "
            "build them with hoplon.attacks.privacy.train_references."
        )
    return references
