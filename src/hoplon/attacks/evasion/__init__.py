"""Evasion attacks (white-box and black-box), one file each, registered by name."""

from hoplon.attacks.evasion.apgd import APGD
from hoplon.attacks.evasion.cw import CarliniWagnerL2
from hoplon.attacks.evasion.fgsm import FGSM
from hoplon.attacks.evasion.hsja import HopSkipJump
from hoplon.attacks.evasion.pgd import PGD
from hoplon.attacks.evasion.square import SquareAttack

__all__ = ["APGD", "FGSM", "PGD", "CarliniWagnerL2", "HopSkipJump", "SquareAttack"]
