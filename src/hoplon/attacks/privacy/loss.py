"""The loss (confidence) threshold attack of Yeom et al.: a record the model fits well was probably trained on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from hoplon.attacks.privacy._private import check_xy, log_probs, logit_confidence, true_log_prob
from hoplon.attacks.privacy.registry import register_privacy
from hoplon.attacks.privacy.types import MEMBERSHIP_TAXONOMY, MembershipScores, PrivacyAttackInfo
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, require

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.privacy.types import ReferenceModels
    from hoplon.targets.types import Target

__all__ = ["LossAttack"]


@register_privacy("loss")
@dataclass(frozen=True, kw_only=True)
class LossAttack:
    """Loss threshold membership inference: score each record by the negative cross-entropy loss.

    Threat model: black-box, the attacker sees the model's scores for a record and knows its label; no
    reference models. It is the baseline every other membership attack must beat, and it is strong only
    on models with a large train–test gap.

    References:
        Yeom, Giacomelli, Fredrikson, Jha. Privacy Risk in Machine Learning: Analyzing the Connection to
        Overfitting. IEEE CSF 2018. https://arxiv.org/abs/1709.01604

    Args:
        statistic: ``loss`` (default: ``log p_y``, i.e. minus the cross-entropy) or ``logit`` (Carlini et
            al.'s ``log(p_y / (1 - p_y))``, which separates confident records better).

    Inputs ``x`` are ``(n, *shape)`` float32, ``y`` int64 labels; scores are ``(n,)`` float64.

    Example:
        >>> from hoplon.attacks.privacy import LossAttack
        >>> scores = LossAttack().run(target, x, y, references=None, rng=gen)  # doctest: +SKIP
    """

    info: ClassVar[PrivacyAttackInfo] = PrivacyAttackInfo(
        name="loss",
        title="Loss threshold attack",
        citation="Yeom, Giacomelli, Fredrikson, Jha. Privacy Risk in Machine Learning: Analyzing the Connection "
        "to Overfitting. IEEE CSF 2018.",
        url="https://arxiv.org/abs/1709.01604",
        threat_model="Black-box: the attacker queries the model's scores on a labelled record and thresholds its loss.",
        capability=Capability.SCORES,
        kind="membership",
        taxonomy=MEMBERSHIP_TAXONOMY,
    )
    statistic: Literal["loss", "logit"] = "loss"

    def __post_init__(self) -> None:
        if self.statistic not in ("loss", "logit"):
            raise InputError(
                f"The 'statistic' parameter of LossAttack must be 'loss' or 'logit'. Got {self.statistic!r}."
            )

    def run(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        references: ReferenceModels | None = None,
        rng: torch.Generator | None = None,
    ) -> MembershipScores:
        require(target, Capability.SCORES, who="LossAttack")
        check_xy("LossAttack", target, x, y)
        lp = log_probs(target.predict(x), target.score_kind)
        score = true_log_prob(lp, y) if self.statistic == "loss" else logit_confidence(lp, y)
        return MembershipScores(self.info.name, score)
