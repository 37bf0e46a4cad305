"""Hardening by training: each recipe returns a new model plus its training record."""

from hoplon.defenses.training.adversarial import AdversarialConfig, AdversarialRecord, adversarial
from hoplon.defenses.training.dp import DPConfig, DPRecord, dp_epsilon, privacy_problems, train_private

__all__ = [
    "AdversarialConfig",
    "AdversarialRecord",
    "DPConfig",
    "DPRecord",
    "adversarial",
    "dp_epsilon",
    "privacy_problems",
    "train_private",
]
