"""Privacy attacks, one file each: membership inference (loss, LiRA, RMIA, shadow models), model inversion
and attribute inference. Membership attacks are registered by name in :data:`PRIVACY_ATTACKS`."""

from hoplon.attacks.privacy.attribute import ATTRIBUTE_TAXONOMY, AttributeInference, AttributeResult
from hoplon.attacks.privacy.inversion import INVERSION_TAXONOMY, InversionResult, MIFace
from hoplon.attacks.privacy.lira import LiRA
from hoplon.attacks.privacy.loss import LossAttack
from hoplon.attacks.privacy.references import balanced_masks, matched_n_in, train_references, train_shadow_models
from hoplon.attacks.privacy.registry import PRIVACY_ATTACKS, make_privacy_attack, register_privacy
from hoplon.attacks.privacy.rmia import RMIA
from hoplon.attacks.privacy.shadow import ShadowModelAttack, shadow_features
from hoplon.attacks.privacy.types import (
    MEMBERSHIP_TAXONOMY,
    MembershipAttack,
    MembershipScores,
    PrivacyAttackInfo,
    PrivacyKind,
    ReferenceModels,
)

__all__ = [
    "ATTRIBUTE_TAXONOMY",
    "INVERSION_TAXONOMY",
    "MEMBERSHIP_TAXONOMY",
    "PRIVACY_ATTACKS",
    "RMIA",
    "AttributeInference",
    "AttributeResult",
    "InversionResult",
    "LiRA",
    "LossAttack",
    "MIFace",
    "MembershipAttack",
    "MembershipScores",
    "PrivacyAttackInfo",
    "PrivacyKind",
    "ReferenceModels",
    "ShadowModelAttack",
    "balanced_masks",
    "make_privacy_attack",
    "matched_n_in",
    "register_privacy",
    "shadow_features",
    "train_references",
    "train_shadow_models",
]
