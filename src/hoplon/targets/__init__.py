"""Model adapters behind one protocol: :class:`Target` (scores) and :class:`DifferentiableTarget` (gradients)."""

from hoplon.targets.http_target import (
    EndpointConfig,
    EndpointError,
    EndpointUnavailable,
    HttpTarget,
    load_endpoint_config,
)
from hoplon.targets.loading import ModelFormat, detect_format, file_digest, load_target
from hoplon.targets.onnx_target import OnnxTarget
from hoplon.targets.sklearn_target import SklearnTarget
from hoplon.targets.torch_target import TorchTarget
from hoplon.targets.types import (
    Bounds,
    Budget,
    Capability,
    DifferentiableTarget,
    InputSpec,
    QueryCounter,
    ScoreKind,
    Target,
    require,
)

__all__ = [
    "Bounds",
    "Budget",
    "Capability",
    "DifferentiableTarget",
    "EndpointConfig",
    "EndpointError",
    "EndpointUnavailable",
    "HttpTarget",
    "InputSpec",
    "ModelFormat",
    "OnnxTarget",
    "QueryCounter",
    "ScoreKind",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "detect_format",
    "file_digest",
    "load_endpoint_config",
    "load_target",
    "require",
]
