"""Pure metric functions: one definition of each figure, used everywhere hoplon reports it."""

from hoplon.metrics.robustness import (
    accuracy,
    attack_success_rate,
    perturbation_norms,
    robust_accuracy,
    robustness_rows,
)

__all__ = ["accuracy", "attack_success_rate", "perturbation_norms", "robust_accuracy", "robustness_rows"]
