"""The Likelihood Ratio Attack (LiRA) of Carlini et al.: a per-record hypothesis test against reference models."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from hoplon.attacks.privacy._private import check_xy, log_probs, logit_confidence, need_references
from hoplon.attacks.privacy.registry import PRIVACY_ATTACKS
from hoplon.attacks.privacy.types import MEMBERSHIP_TAXONOMY, MembershipScores, PrivacyAttackInfo
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, require

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.privacy.types import ReferenceModels
    from hoplon.targets.types import Target

__all__ = ["LiRA"]

_MIN_STD = 1e-3


@dataclass(frozen=True, kw_only=True)
class LiRA:
    """Likelihood Ratio Attack: fit Gaussians to a record's logit-scaled confidence under reference models
    that did (IN) and did not (OUT) train on it, and test the target's confidence against them.

    Threat model: black-box scores on labelled records, plus the ability to train reference models the
    way the target was trained (the user's recipe) on data from the same distribution. Online LiRA uses IN
    and OUT models (strongest); offline LiRA uses OUT models only (no retraining per audited record). The
    confidence is ``φ = log(p_y / (1 - p_y))``; queries are augmentation-free by default.

    References:
        Carlini, Chien, Nasr, Song, Terzis, Tramèr. Membership Inference Attacks From First Principles.
        IEEE S&P 2022. https://arxiv.org/abs/2112.03570

    Args:
        online: use IN and OUT models (default True); False for offline LiRA (OUT models only).
        variance: ``global`` (default; one variance pooled over records, what the paper advises under ~64
            reference models) or ``per-example``.
        augment: ``none`` (default) or ``hflip`` (also query the horizontally flipped image; images only).

    Inputs ``x`` are ``(n, *shape)`` float32, ``y`` int64 labels; scores are ``(n,)`` float64 log
    likelihood ratios (online) or one-sided Gaussian log-CDFs (offline).

    Example:
        >>> from hoplon.attacks.privacy import LiRA, train_references
        >>> refs = train_references(recipe, pool_x, pool_y, n_models=8, n_classes=10)  # doctest: +SKIP
        >>> scores = LiRA(online=True).run(target, x, y, references=refs, rng=gen)  # doctest: +SKIP
    """

    info: ClassVar[PrivacyAttackInfo] = PrivacyAttackInfo(
        name="lira",
        title="Likelihood Ratio Attack (LiRA)",
        citation="Carlini, Chien, Nasr, Song, Terzis, Tramèr. Membership Inference Attacks From First Principles. "
        "IEEE S&P 2022.",
        url="https://arxiv.org/abs/2112.03570",
        threat_model="Black-box scores on labelled records; the attacker trains reference models by the target's "
        "recipe and tests each record's confidence against their IN/OUT Gaussians.",
        capability=Capability.SCORES,
        kind="membership",
        needs_references=True,
        taxonomy=MEMBERSHIP_TAXONOMY,
    )
    online: bool = True
    variance: Literal["global", "per-example"] = "global"
    augment: Literal["none", "hflip"] = "none"

    def __post_init__(self) -> None:
        if self.variance not in ("global", "per-example"):
            raise InputError(
                f"The 'variance' parameter of LiRA must be 'global' or 'per-example'. Got {self.variance!r}."
            )
        if self.augment not in ("none", "hflip"):
            raise InputError(f"The 'augment' parameter of LiRA must be 'none' or 'hflip'. Got {self.augment!r}.")

    @property
    def label(self) -> str:
        return "lira-online" if self.online else "lira-offline"

    def _views(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.augment == "none":
            return [x]
        if x.ndim != 4:
            raise InputError("LiRA's 'hflip' augmentation needs images (n, C, H, W).")
        return [x, x.flip(-1)]

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

        require(target, Capability.SCORES, who="LiRA")
        check_xy("LiRA", target, x, y)
        refs = need_references("LiRA", references, minimum=2 if self.online else 1)
        mask = refs.membership_of(x)
        total = torch.zeros(len(x), dtype=torch.float64)
        details: dict[str, object] = {}
        for view in self._views(x):
            observed = logit_confidence(log_probs(target.predict(view), target.score_kind), y)
            ref_conf = logit_confidence(refs.predict(view), y)
            out_mu, out_sd = _fit(ref_conf, ~mask, self.variance)
            if self.online:
                in_mu, in_sd = _fit(ref_conf, mask, self.variance, fallback_shift=out_mu)
                total += _normal_logpdf(observed, in_mu, in_sd) - _normal_logpdf(observed, out_mu, out_sd)
                details = {"mean_in": in_mu, "mean_out": out_mu}
            else:
                total += torch.special.log_ndtr((observed - out_mu) / out_sd)
                details = {"mean_out": out_mu}
        return MembershipScores(self.label, total, details)


def _fit(
    conf: torch.Tensor, mask: torch.Tensor, variance: str, fallback_shift: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-record mean and std of ``conf`` (``(m, n)``) over the models where ``mask`` holds."""
    import torch

    w = mask.to(torch.float64)
    count = w.sum(0)
    mean = (conf * w).sum(0) / count.clamp_min(1)
    if bool((count == 0).any()):
        if fallback_shift is None:
            raise InputError("Offline LiRA needs at least one OUT reference model for every record.")
        have = count > 0
        # Records no IN model saw (outside the reference pool): shift their OUT mean by the average IN–OUT gap.
        gap = float((mean[have] - fallback_shift[have]).mean()) if bool(have.any()) else 0.0
        mean = torch.where(have, mean, fallback_shift + gap)
    resid = (conf - mean) * w
    if variance == "global" or bool((count < 2).any()):
        pooled = math.sqrt(float((resid**2).sum()) / max(float(count.sum()) - float((count > 0).sum()), 1.0))
        std = torch.full_like(mean, max(pooled, _MIN_STD))
    else:
        std = ((resid**2).sum(0) / (count - 1)).sqrt().clamp_min(_MIN_STD)
    return mean, std


def _normal_logpdf(value: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    import torch

    return -0.5 * ((value - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)


def _offline(**config: object) -> LiRA:
    return LiRA(online=False, **config)  # type: ignore[arg-type]


def _online(**config: object) -> LiRA:
    return LiRA(online=True, **config)  # type: ignore[arg-type]


# One registry name per variant of the paper (online, offline); the class itself is not registered twice.
PRIVACY_ATTACKS.add("lira-online", _online)
PRIVACY_ATTACKS.add("lira-offline", _offline)
