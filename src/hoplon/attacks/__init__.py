"""Attacks and the framework function that evaluates them.

``ATTACKS`` maps names to factories (``make("pgd", norm="l2")``); :func:`evaluate` runs any of them with
projection, success re-checking, running-best tracking and query counting.
"""

from hoplon.attacks import evasion as evasion
from hoplon.attacks.evaluate import EpsilonOutcome, Evaluation, evaluate, merge
from hoplon.attacks.evasion import APGD, FGSM, PGD, CarliniWagnerL2, HopSkipJump, SquareAttack
from hoplon.attacks.registry import ATTACKS, AttackFactory, make, register
from hoplon.attacks.types import AdversarialBatch, Attack, AttackInfo, AttackKind, Norm

__all__ = [
    "APGD",
    "ATTACKS",
    "FGSM",
    "PGD",
    "AdversarialBatch",
    "Attack",
    "AttackFactory",
    "AttackInfo",
    "AttackKind",
    "CarliniWagnerL2",
    "EpsilonOutcome",
    "Evaluation",
    "HopSkipJump",
    "Norm",
    "SquareAttack",
    "evaluate",
    "make",
    "merge",
    "register",
]
