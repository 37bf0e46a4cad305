"""Robust Membership Inference Attack (RMIA) of Zarifzadeh et al.: pairwise likelihood ratios against a population."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hoplon.attacks.privacy._private import check_xy, log_probs, need_references, true_log_prob
from hoplon.attacks.privacy.registry import register_privacy
from hoplon.attacks.privacy.types import MEMBERSHIP_TAXONOMY, MembershipScores, PrivacyAttackInfo
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, require

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.privacy.types import ReferenceModels
    from hoplon.targets.types import Target

__all__ = ["RMIA"]

MIN_POPULATION = 20


@register_privacy("rmia")
@dataclass(frozen=True, kw_only=True)
class RMIA:
    """RMIA: a record is a member if the target raises its probability, relative to reference models, more
    than it raises the probability of most population records.

    Threat model: black-box scores on labelled records, plus reference models trained by the target's
    recipe and population data from the same distribution. Strong with few reference models (offline, OUT
    models only, with the paper's linear correction ``a`` for the missing IN models).

    References:
        Zarifzadeh, Liu, Mao, Shokri. Low-Cost High-Power Membership Inference Attacks. ICML 2024.
        https://arxiv.org/abs/2312.03262

    Args:
        online: average over all reference models (IN and OUT) for ``Pr(x)``; default False (offline).
        offline_a: the offline correction ``Pr(x) = ((1 + a) Pr_OUT(x) + 1 - a) / 2``, in [0, 1]; default 0.3.
        gamma: the pairwise likelihood-ratio threshold, > 0; default 1.

    Inputs ``x`` are ``(n, *shape)`` float32, ``y`` int64 labels; scores are ``(n,)`` float64 in [0, 1]:
    the share of population records the record dominates.

    Example:
        >>> from hoplon.attacks.privacy import RMIA
        >>> scores = RMIA().run(target, x, y, references=refs, rng=gen)  # doctest: +SKIP
    """

    info: ClassVar[PrivacyAttackInfo] = PrivacyAttackInfo(
        name="rmia",
        title="Robust Membership Inference Attack (RMIA)",
        citation="Zarifzadeh, Liu, Mao, Shokri. Low-Cost High-Power Membership Inference Attacks. ICML 2024.",
        url="https://arxiv.org/abs/2312.03262",
        threat_model="Black-box scores on labelled records; the attacker compares each record's likelihood ratio "
        "(target vs. reference models) with those of population records.",
        capability=Capability.SCORES,
        kind="membership",
        needs_references=True,
        taxonomy=MEMBERSHIP_TAXONOMY,
    )
    online: bool = False
    offline_a: float = 0.3
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.offline_a <= 1:
            raise InputError(f"The 'offline_a' parameter of RMIA must be in [0, 1]. Got {self.offline_a}.")
        if not self.gamma > 0:
            raise InputError(f"The 'gamma' parameter of RMIA must be > 0. Got {self.gamma}.")

    def _marginal(self, ref_p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        import torch

        if self.online:
            return ref_p.mean(0)
        out = (~mask).to(torch.float64)
        mean_out = (ref_p * out).sum(0) / out.sum(0).clamp_min(1)
        return 0.5 * ((1 + self.offline_a) * mean_out + (1 - self.offline_a))

    def run(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        references: ReferenceModels | None,
        rng: torch.Generator | None = None,
    ) -> MembershipScores:
        import torch

        require(target, Capability.SCORES, who="RMIA")
        check_xy("RMIA", target, x, y)
        refs = need_references("RMIA", references)
        population = refs.is_population if int(refs.is_population.sum()) >= MIN_POPULATION else None
        z_x = refs.pool_x if population is None else refs.pool_x[population]
        z_y = refs.pool_y if population is None else refs.pool_y[population]
        z_mask = refs.in_mask if population is None else refs.in_mask[:, population]

        def ratio(xs: torch.Tensor, ys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            p_target = true_log_prob(log_probs(target.predict(xs), target.score_kind), ys).exp()
            p_refs = true_log_prob(refs.predict(xs), ys).exp()
            return p_target / self._marginal(p_refs, mask).clamp_min(1e-30)

        lr_x = ratio(x, y, refs.membership_of(x))
        lr_z = torch.sort(ratio(z_x, z_y, z_mask)).values
        dominated = torch.searchsorted(lr_z, lr_x / self.gamma, right=True).to(torch.float64)
        return MembershipScores(self.info.name, dominated / len(lr_z), {"n_population": len(lr_z)})
