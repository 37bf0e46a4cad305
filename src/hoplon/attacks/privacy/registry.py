"""The privacy-attack registry: names → factories of configured membership attacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hoplon.attacks.privacy.types import MembershipAttack
from hoplon.core.registry import Registry

__all__ = ["PRIVACY_ATTACKS", "make_privacy_attack", "register_privacy"]

PRIVACY_ATTACKS: Registry[Callable[..., MembershipAttack]] = Registry(
    "privacy attack", entry_point_group="hoplon.privacy_attacks"
)
register_privacy = PRIVACY_ATTACKS.register


def make_privacy_attack(name: str, **config: Any) -> MembershipAttack:
    """Build the membership attack registered as ``name`` with ``config`` (validated by the attack)."""
    return PRIVACY_ATTACKS.get(name)(**config)
