"""Hardening by training: each recipe returns a new model plus its training record."""

from hoplon.defenses.training.dp import DPConfig, DPRecord, dp_epsilon, privacy_problems, train_private

__all__ = ["DPConfig", "DPRecord", "dp_epsilon", "privacy_problems", "train_private"]
