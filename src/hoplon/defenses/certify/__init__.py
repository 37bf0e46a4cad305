"""Certifiers: per-sample certified radii with a stated confidence (randomized smoothing)."""

from hoplon.defenses.certify.smoothing import (
    ABSTAIN,
    Certificate,
    Smooth,
    certified_accuracy,
    clopper_pearson_lower,
    max_certifiable_radius,
)

__all__ = ["ABSTAIN", "Certificate", "Smooth", "certified_accuracy", "clopper_pearson_lower", "max_certifiable_radius"]
