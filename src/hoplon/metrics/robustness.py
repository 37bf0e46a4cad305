"""Robustness metrics: clean and robust accuracy, attack success rate, perturbation norms, the ε curve."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.evaluate import Evaluation
    from hoplon.attacks.types import Norm

__all__ = ["accuracy", "attack_success_rate", "perturbation_norms", "robust_accuracy", "robustness_rows"]


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``predictions`` equal to ``labels`` (0.0 for an empty batch)."""
    return float((predictions == labels).float().mean()) if len(labels) else 0.0


def robust_accuracy(clean_correct: torch.Tensor, is_adv: torch.Tensor) -> float:
    """Share of all samples classified correctly and not fooled by the attack."""
    return float((clean_correct & ~is_adv).float().mean()) if len(clean_correct) else 0.0


def attack_success_rate(clean_correct: torch.Tensor, is_adv: torch.Tensor) -> float:
    """Share of the initially correct samples the attack fooled (NaN when none was correct)."""
    correct = int(clean_correct.sum())
    return float((clean_correct & is_adv).sum()) / correct if correct else math.nan


def perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-sample norm of ``x_adv - x``."""
    from hoplon.attacks.evasion.ops import flat_norm

    return flat_norm(x_adv - x, norm)


def _stat(values: torch.Tensor, how: str) -> float:
    if values.numel() == 0:
        return math.nan
    return float(values.median()) if how == "median" else float(values.mean())


def robustness_rows(evaluation: Evaluation, x: torch.Tensor) -> list[dict[str, Any]]:
    """One row per ε in the documented ``results.robustness`` layout."""
    rows = []
    n = len(x)
    clean = evaluation.clean_correct
    for outcome in evaluation.outcomes:
        succeeded = clean & outcome.is_adv
        linf = perturbation_norms(x[succeeded], outcome.x_adv[succeeded], "linf")
        l2 = perturbation_norms(x[succeeded], outcome.x_adv[succeeded], "l2")
        rows.append(
            {
                "attack": evaluation.attack,
                "norm": evaluation.norm,
                "eps": outcome.eps,
                "n": n,
                "clean_accuracy": float(clean.float().mean()) if n else 0.0,
                "robust_accuracy": robust_accuracy(clean, outcome.is_adv),
                "attack_success_rate": attack_success_rate(clean, outcome.is_adv),
                "median_linf": _stat(linf, "median"),
                "median_l2": _stat(l2, "median"),
                "mean_linf": _stat(linf, "mean"),
                "mean_l2": _stat(l2, "mean"),
                "queries_per_sample": outcome.queries / n if n else 0.0,
                "cpu_s": outcome.cpu_s,
                "wall_s": outcome.wall_s,
                "components": list(evaluation.components),
                "partial": evaluation.partial,
            }
        )
    return rows
