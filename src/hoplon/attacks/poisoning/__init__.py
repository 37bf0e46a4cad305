"""Training-time attacks: label flipping and backdoors (BadNets, blended, tabular, clean-label).

``POISONING_ATTACKS`` maps names to attack classes (``make_poisoning("badnets", rate=0.05)``); every attack's
``run(data, seed=...)`` returns a :class:`PoisonedData` with the ground-truth poison indices.
"""

from hoplon.attacks.poisoning.badnets import BadNets
from hoplon.attacks.poisoning.blended import Blended
from hoplon.attacks.poisoning.clean_label import CleanLabel
from hoplon.attacks.poisoning.label_flip import LabelFlip
from hoplon.attacks.poisoning.registry import POISONING_ATTACKS, make_poisoning, register_poisoning
from hoplon.attacks.poisoning.tabular import TabularTrigger
from hoplon.attacks.poisoning.types import PoisonAttack, PoisonedData

__all__ = [
    "POISONING_ATTACKS",
    "BadNets",
    "Blended",
    "CleanLabel",
    "LabelFlip",
    "PoisonAttack",
    "PoisonedData",
    "TabularTrigger",
    "make_poisoning",
    "register_poisoning",
]
