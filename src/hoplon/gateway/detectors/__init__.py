"""Stateful, per-identity detectors of model extraction and black-box adversarial search.

PRADA (distance-distribution normality), stateful k-NN similarity (per identity), shared quantised
fingerprints (across identities, against Sybil attacks), query volume and the low-margin rate; an
escalation policy (log → alert → throttle → degrade → block) and a worker that keeps them off the hot path.
The state lives in memory, or in Redis when several gateway workers share it (``redis_state``).
"""

from hoplon.gateway.detectors.engine import ACTIONS, Action, Containment, DetectionEngine, DetectionWorker, Policy
from hoplon.gateway.detectors.prada import PRADA
from hoplon.gateway.detectors.redis_state import RedisDetectionEngine, RedisState
from hoplon.gateway.detectors.signals import LowMargin, QueryVolume
from hoplon.gateway.detectors.similarity import SharedFingerprints, StatefulSimilarity, quantise
from hoplon.gateway.detectors.stage import (
    DETECT_DEFAULTS,
    DetectorUnavailable,
    DetectStage,
    build_detectors,
    build_policy,
    probabilities_of,
)
from hoplon.gateway.detectors.types import Alarm, Detector, IdentityLRU, PortableDetector

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
    "DetectorUnavailable",
    "IdentityLRU",
    "LowMargin",
    "Policy",
    "PortableDetector",
    "QueryVolume",
    "RedisDetectionEngine",
    "RedisState",
    "SharedFingerprints",
    "StatefulSimilarity",
    "build_detectors",
    "build_policy",
    "probabilities_of",
    "quantise",
]
