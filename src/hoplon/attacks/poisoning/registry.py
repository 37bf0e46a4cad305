"""The poisoning-attack registry: names → configured poisoning attacks (``make_poisoning("badnets", rate=0.05)``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hoplon.attacks.poisoning.types import PoisonAttack
from hoplon.core.registry import Registry

__all__ = ["POISONING_ATTACKS", "make_poisoning", "register_poisoning"]

POISONING_ATTACKS: Registry[Callable[..., PoisonAttack]] = Registry(
    "poisoning attack", entry_point_group="hoplon.poisoning_attacks"
)
register_poisoning = POISONING_ATTACKS.register


def make_poisoning(name: str, **config: Any) -> PoisonAttack:
    """Build the poisoning attack registered as ``name`` with ``config`` (validated by the attack)."""
    return POISONING_ATTACKS.get(name)(**config)
