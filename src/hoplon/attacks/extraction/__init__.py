"""Model-extraction attacks: Knockoff Nets (natural queries) and JbDA (synthetic near-boundary queries).

``run(target, x_attacker, seed=...)`` spends at most ``budget`` queries and returns an
:class:`ExtractedModel` (the surrogate and the ordered query log a gateway detector would see).
"""

from hoplon.attacks.extraction.jbda import JacobianAugmentation
from hoplon.attacks.extraction.knockoff import EXTRACTION_TAXONOMY, KnockoffNets
from hoplon.attacks.extraction.metrics import agreement, fidelity
from hoplon.attacks.extraction.registry import (
    EXTRACTION_ATTACKS,
    ExtractionAttack,
    make_extraction_attack,
    register_extraction,
)
from hoplon.attacks.extraction.surrogates import transformed_digits
from hoplon.attacks.extraction.types import ExtractedModel

__all__ = [
    "EXTRACTION_ATTACKS",
    "EXTRACTION_TAXONOMY",
    "ExtractedModel",
    "ExtractionAttack",
    "JacobianAugmentation",
    "KnockoffNets",
    "agreement",
    "fidelity",
    "make_extraction_attack",
    "register_extraction",
    "transformed_digits",
]
