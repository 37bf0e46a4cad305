"""Runtime defenses: callables the gateway composes in front of a model (detectors, input transformations)."""

from hoplon.defenses.runtime.squeezing import FeatureSqueezing, SqueezingDetector

__all__ = ["FeatureSqueezing", "SqueezingDetector"]
