"""Stateful, per-identity detectors of model extraction and black-box adversarial search.

PRADA (distance-distribution normality), stateful k-NN similarity (per identity), shared quantised
fingerprints (across identities, against Sybil attacks), query volume and the low-margin rate; an
escalation policy (log → alert → throttle → degrade → block) and a worker that keeps them off the hot path.
"""

from hoplon.gateway.detectors.engine import ACTIONS, Action, Containment, DetectionEngine, DetectionWorker, Policy
from hoplon.gateway.detectors.prada import PRADA
from hoplon.gateway.detectors.signals import LowMargin, QueryVolume
from hoplon.gateway.detectors.similarity import SharedFingerprints, StatefulSimilarity, quantise
from hoplon.gateway.detectors.stage import DETECT_DEFAULTS, DetectStage, build_detectors, probabilities_of
from hoplon.gateway.detectors.types import Alarm, Detector, IdentityLRU

__all__ = [
    "ACTIONS",
    "DETECT_DEFAULTS",
    "PRADA",
    "Action",
    "Alarm",
    "Containment",
    "DetectStage",
    "DetectionEngine",
    "DetectionWorker",
    "Detector",
    "IdentityLRU",
    "LowMargin",
    "Policy",
    "QueryVolume",
    "SharedFingerprints",
    "StatefulSimilarity",
    "build_detectors",
    "probabilities_of",
    "quantise",
]
