"""The shadow-model attack of Shokri et al.: learn what "member" looks like from models whose members are known."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from hoplon.attacks.privacy._private import check_xy, log_probs, logit_confidence, need_references, true_log_prob
from hoplon.attacks.privacy.registry import register_privacy
from hoplon.attacks.privacy.types import MEMBERSHIP_TAXONOMY, MembershipScores, PrivacyAttackInfo
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, require

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.privacy.types import ReferenceModels
    from hoplon.targets.types import Target

__all__ = ["ShadowModelAttack", "shadow_features"]

MIN_SHADOW_ROWS = 20


def shadow_features(lp: torch.Tensor, y: torch.Tensor, *, top_k: int = 3) -> torch.Tensor:
    """Attack features of ``(..., n, c)`` log-probabilities: ``log p_y``, the logit-scaled confidence, the
    entropy, whether the top class is right, and the ``top_k`` largest log-probabilities (sorted)."""
    import torch

    k = min(top_k, lp.shape[-1])
    entropy = -(lp.exp() * lp).sum(-1)
    correct = (lp.argmax(-1) == y).to(torch.float64)
    top = lp.sort(-1, descending=True).values[..., :k].clamp_min(-50.0)
    parts = [true_log_prob(lp, y).clamp_min(-50.0), logit_confidence(lp, y).clamp(-50.0, 50.0), entropy, correct]
    return torch.cat([torch.stack(parts, -1), top], -1)


@register_privacy("shadow")
@dataclass(frozen=True, kw_only=True)
class ShadowModelAttack:
    """Shadow-model membership inference: train a classifier on shadow models' outputs for records whose
    membership is known, then apply it to the target's outputs.

    Threat model: black-box scores on labelled records, plus shadow models trained by the target's recipe
    on data the attacker owns, each on a known subset of it. The attack classifier learns from the shadow
    models' outputs on their own members and non-members; it never sees the target's membership labels.
    In the paper the attacker's data are disjoint from the target's training data: build the shadow models
    with :func:`~hoplon.attacks.privacy.train_shadow_models` on such data (``hoplon audit privacy
    --population``) and set ``disjoint=True`` to refuse queries that overlap them. Without disjoint data,
    reference models trained on halves of the audited records serve as shadow models (a stronger
    assumption than the paper's: the attacker holds the audited records); ``details`` says which.

    References:
        Shokri, Stronati, Song, Shmatikov. Membership Inference Attacks against Machine Learning Models.
        IEEE S&P 2017. https://arxiv.org/abs/1610.05820

    Args:
        per_class: one attack classifier per class, as in the paper (default False: one for all classes,
            with the label as a feature; more robust with little shadow data).
        top_k: how many sorted log-probabilities enter the features (default 3).
        max_iter: boosting rounds of the attack classifier (scikit-learn's HistGradientBoostingClassifier).
        disjoint: refuse to score records that any shadow model trained on (Shokri et al.'s setting: the
            shadow data are disjoint from the audited records); default False.

    Inputs ``x`` are ``(n, *shape)`` float32, ``y`` int64 labels; scores are ``(n,)`` float64 member
    probabilities from the attack classifier; ``details`` holds ``n_shadow_models``, ``n_shadow_rows`` and
    ``n_queried_in_shadow_data`` (queried records some shadow model trained on: 0 on disjoint shadow data).

    Example:
        >>> from hoplon.attacks.privacy import ShadowModelAttack
        >>> scores = ShadowModelAttack().run(target, x, y, references=refs, rng=gen)  # doctest: +SKIP
    """

    info: ClassVar[PrivacyAttackInfo] = PrivacyAttackInfo(
        name="shadow",
        title="Shadow-model attack",
        citation="Shokri, Stronati, Song, Shmatikov. Membership Inference Attacks against Machine Learning Models. "
        "IEEE S&P 2017.",
        url="https://arxiv.org/abs/1610.05820",
        threat_model="Black-box scores on labelled records; an attack classifier learns member vs. non-member "
        "outputs from shadow models trained by the target's recipe.",
        capability=Capability.SCORES,
        kind="membership",
        needs_references=True,
        taxonomy=MEMBERSHIP_TAXONOMY,
    )
    per_class: bool = False
    top_k: int = 3
    max_iter: int = 60
    disjoint: bool = False

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.max_iter < 1:
            raise InputError(
                f"ShadowModelAttack needs top_k >= 1 and max_iter >= 1. Got {self.top_k}, {self.max_iter}."
            )

    def run(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        references: ReferenceModels | None,
        rng: torch.Generator | None = None,
    ) -> MembershipScores:
        import numpy as np
        import torch

        require(target, Capability.SCORES, who="ShadowModelAttack")
        check_xy("ShadowModelAttack", target, x, y)
        refs = need_references("ShadowModelAttack", references, minimum=2)
        rows = ~refs.is_population  # the rows whose shadow membership varies across models
        if int(rows.sum()) < MIN_SHADOW_ROWS:
            raise InputError(f"ShadowModelAttack needs at least {MIN_SHADOW_ROWS} shadow-training rows.")
        n_overlap = int(refs.membership_of(x).any(0).sum())
        if self.disjoint and n_overlap:
            raise InputError(
                f"ShadowModelAttack(disjoint=True): {n_overlap} of the {len(x)} queried records are in the shadow "
                "models' training data; shadow models must train on data disjoint from the audited records."
            )
        sx, sy, smask = refs.pool_x[rows], refs.pool_y[rows], refs.in_mask[:, rows]
        feats = shadow_features(refs.predict(sx), sy, top_k=self.top_k)  # (m, n_s, f)
        train_x = feats.reshape(-1, feats.shape[-1]).numpy()
        train_y = smask.reshape(-1).numpy().astype(np.int64)
        train_c = sy.repeat(refs.n_models).numpy()
        test_x = shadow_features(log_probs(target.predict(x), target.score_kind), y, top_k=self.top_k).numpy()
        seed = 0 if rng is None else int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
        scores = np.zeros(len(x))
        if self.per_class:
            for c in np.unique(y.numpy()):
                sel, sel_t = train_c == c, y.numpy() == c
                if len(np.unique(train_y[sel])) < 2:
                    scores[sel_t] = 0.5
                    continue
                scores[sel_t] = self._fit(train_x[sel], train_y[sel], seed).predict_proba(test_x[sel_t])[:, 1]
        else:
            train_x = np.concatenate([train_x, train_c[:, None].astype(np.float64)], 1)
            test_x = np.concatenate([test_x, y.numpy()[:, None].astype(np.float64)], 1)
            scores = self._fit(train_x, train_y, seed).predict_proba(test_x)[:, 1]
        details = {
            "n_shadow_models": refs.n_models,
            "n_shadow_rows": int(rows.sum()),
            "n_queried_in_shadow_data": n_overlap,
        }
        return MembershipScores(self.info.name, torch.as_tensor(scores, dtype=torch.float64), details)

    def _fit(self, features: Any, labels: Any, seed: int) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            max_leaf_nodes=15,
            learning_rate=0.1,
            early_stopping=False,
            class_weight="balanced",  # shadow models with n_in < n_models / 2 see more non-members than members
            random_state=seed,
        )
        return model.fit(features, labels)
