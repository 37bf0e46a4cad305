"""Attribute inference (Fredrikson et al. 2014; Yeom et al. 2018): recover a sensitive feature from the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hoplon.attacks.privacy._private import check_xy, log_probs, true_log_prob
from hoplon.attacks.privacy.types import PrivacyAttackInfo
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, require

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Target

__all__ = ["ATTRIBUTE_TAXONOMY", "AttributeInference", "AttributeResult"]

ATTRIBUTE_TAXONOMY = ("atlas:AML.T0024.001", "owasp-ml:ML03", "nist-ai-rmf:MEASURE-2.10")


@dataclass(frozen=True, slots=True)
class AttributeResult:
    """Per-record outcomes: the bin guessed by the attack and by the marginal baseline, and the true bin.

    ``values`` are the candidate values (one per bin) the attack tried.
    """

    feature: int
    values: torch.Tensor
    true_bin: torch.Tensor
    guess: torch.Tensor
    baseline_guess: torch.Tensor

    @property
    def accuracy(self) -> float:
        return float((self.guess == self.true_bin).double().mean())

    @property
    def baseline_accuracy(self) -> float:
        return float((self.baseline_guess == self.true_bin).double().mean())

    @property
    def advantage(self) -> float:
        return self.accuracy - self.baseline_accuracy


@dataclass(frozen=True, kw_only=True)
class AttributeInference:
    """Infer one sensitive feature of a record from everything else about it plus the model's confidence.

    Threat model: black-box scores; the attacker knows a record's label and all its features but the
    sensitive one, and the feature's marginal distribution (from ``prior``). For each candidate value it
    queries the model with the value filled in and picks the one maximising ``p(y | x) · prior(value)``
    (Fredrikson et al.'s estimator). Continuous features are cut into ``n_bins`` quantile bins; a feature
    with at most ``n_bins`` distinct values is treated as categorical. The baseline guesses the most
    frequent bin of the marginal.

    References:
        Fredrikson, Lantz, Jha, Lin, Page, Ristenpart. Privacy in Pharmacogenetics: An End-to-End Case Study
        of Personalized Warfarin Dosing. USENIX Security 2014.
        https://www.usenix.org/conference/usenixsecurity14/technical-sessions/presentation/
        fredrikson_matthew
        Yeom, Giacomelli, Fredrikson, Jha. Privacy Risk in Machine Learning. IEEE CSF 2018.
        https://arxiv.org/abs/1709.01604

    Args:
        feature: index of the sensitive feature in a flat (tabular) sample.
        n_bins: quantile bins for a continuous feature (default 4, >= 2).

    Inputs ``x`` are ``(n, d)`` float32, ``y`` int64 labels; ``prior`` is ``(m, d)`` data from the same
    distribution (for the marginal and the bins).

    Example:
        >>> from hoplon.attacks.privacy import AttributeInference
        >>> result = AttributeInference(feature=0).run(target, x, y, prior=population_x)  # doctest: +SKIP
    """

    info: ClassVar[PrivacyAttackInfo] = PrivacyAttackInfo(
        name="attribute",
        title="Attribute inference",
        citation="Fredrikson, Lantz, Jha, Lin, Page, Ristenpart. Privacy in Pharmacogenetics. USENIX Security 2014.",
        url="https://www.usenix.org/conference/usenixsecurity14/technical-sessions/presentation/fredrikson_matthew",
        threat_model="Black-box scores; the attacker knows every feature but the sensitive one and the label, and "
        "picks the value the model is most confident about, weighted by the marginal.",
        capability=Capability.SCORES,
        kind="attribute",
        taxonomy=ATTRIBUTE_TAXONOMY,
    )
    feature: int
    n_bins: int = 4

    def __post_init__(self) -> None:
        if self.feature < 0:
            raise InputError(f"The 'feature' parameter of AttributeInference must be >= 0. Got {self.feature}.")
        if self.n_bins < 2:
            raise InputError(f"The 'n_bins' parameter of AttributeInference must be >= 2. Got {self.n_bins}.")

    def run(self, target: Target, x: torch.Tensor, y: torch.Tensor, *, prior: torch.Tensor) -> AttributeResult:
        import torch

        require(target, Capability.SCORES, who="AttributeInference")
        check_xy("AttributeInference", target, x, y)
        if x.ndim != 2 or self.feature >= x.shape[1]:
            raise InputError(
                f"AttributeInference needs tabular samples (n, d) with feature {self.feature} < d; "
                f"got {tuple(x.shape)}."
            )
        column = prior[:, self.feature].to(torch.float64)
        distinct = torch.unique(column)
        if len(distinct) <= self.n_bins:
            values = distinct
            edges = (values[1:] + values[:-1]) / 2
        else:
            qs = torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float64)
            edges = torch.quantile(column, qs[1:-1])
            values = torch.stack([column[_bin(column, edges) == b].median() for b in range(self.n_bins)])
        prior_bins = _bin(column, edges)
        counts = torch.bincount(prior_bins, minlength=len(values)).to(torch.float64)
        log_prior = torch.log((counts + 1) / (counts.sum() + len(values)))
        scores = []
        for v in values.tolist():
            filled = x.clone()
            filled[:, self.feature] = v
            scores.append(true_log_prob(log_probs(target.predict(filled), target.score_kind), y))
        posterior = torch.stack(scores, 1) + log_prior
        truth = _bin(x[:, self.feature].to(torch.float64), edges)
        baseline = torch.full_like(truth, int(counts.argmax()))
        return AttributeResult(self.feature, values.to(torch.float32), truth, posterior.argmax(1), baseline)


def _bin(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.bucketize(values, edges.contiguous(), right=False).to(torch.long)
