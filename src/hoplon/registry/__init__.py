"""The model registry: content-addressed, scanned and signature-checked model versions, aliases, kill switch."""

from hoplon.registry.store import (
    IntegrityError,
    KillSwitch,
    ModelRegistry,
    ModelVersion,
    RegistryState,
    open_registry,
)

__all__ = ["IntegrityError", "KillSwitch", "ModelRegistry", "ModelVersion", "RegistryState", "open_registry"]
