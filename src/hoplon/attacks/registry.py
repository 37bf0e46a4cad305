"""The attack registry: names → factories that build configured attacks.

A factory is the attack class itself or a preset of it from the literature (``apgd-t`` is APGD with the
targeted DLR loss). Third-party attacks register through the ``hoplon.attacks`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hoplon.attacks.types import Attack
from hoplon.core.registry import Registry

__all__ = ["ATTACKS", "AttackFactory", "make", "register"]

AttackFactory = Callable[..., Attack]

ATTACKS: Registry[AttackFactory] = Registry("attack", entry_point_group="hoplon.attacks")
register = ATTACKS.register


def make(name: str, **config: Any) -> Attack:
    """Build the attack registered as ``name`` with ``config`` (validated by the attack)."""
    return ATTACKS.get(name)(**config)
