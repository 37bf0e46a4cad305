"""The extraction-attack registry: names → factories of configured extraction attacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from hoplon.core.registry import Registry

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.extraction.types import ExtractedModel
    from hoplon.attacks.types import AttackInfo
    from hoplon.targets.types import Target

__all__ = ["EXTRACTION_ATTACKS", "ExtractionAttack", "make_extraction_attack", "register_extraction"]


class ExtractionAttack(Protocol):
    """A configured extraction attack: ``run`` spends at most ``budget`` queries and returns a surrogate."""

    info: ClassVar[AttackInfo]

    @property
    def budget(self) -> int: ...

    def run(self, target: Target, x_attacker: torch.Tensor, *, seed: int) -> ExtractedModel: ...


EXTRACTION_ATTACKS: Registry[Callable[..., ExtractionAttack]] = Registry(
    "extraction attack", entry_point_group="hoplon.extraction_attacks"
)
register_extraction = EXTRACTION_ATTACKS.register


def make_extraction_attack(name: str, **config: Any) -> ExtractionAttack:
    """Build the extraction attack registered as ``name`` with ``config`` (validated by the attack)."""
    return EXTRACTION_ATTACKS.get(name)(**config)
