"""Knockoff Nets: steal a model's functionality with natural queries from another distribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hoplon.attacks.extraction.registry import register_extraction
from hoplon.attacks.extraction.surrogates import default_surrogate, labels_only, query, train_surrogate
from hoplon.attacks.extraction.types import ExtractedModel
from hoplon.attacks.types import AttackInfo
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, batches

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Target

__all__ = ["EXTRACTION_TAXONOMY", "KnockoffNets"]

EXTRACTION_TAXONOMY = ("atlas:AML.T0024.002", "atlas:AML.T0005.001", "owasp-ml:ML05", "nist-ai-rmf:MEASURE-2.7")


@register_extraction("knockoff")
@dataclass(frozen=True, kw_only=True)
class KnockoffNets:
    """Knockoff Nets (random strategy): query natural inputs the attacker owns, train a copy on the answers.

    Threat model: black-box; the attacker sees the victim's scores (or labels only, then trains on one-hot
    labels) and holds unlabelled natural data from *another* distribution (the transfer set). No synthetic
    queries: each query looks like an ordinary input, which is why distance-based detectors struggle.

    References:
        Orekondy, Schiele, Fritz. Knockoff Nets: Stealing Functionality of Black-Box Models. CVPR 2019.
        https://arxiv.org/abs/1812.02766

    Args:
        budget: queries (model rows) to spend, > 0; the first ``budget`` rows of the transfer set are used.
        train_steps: optimiser steps of the surrogate (default 400).
        batch_size: rows per query batch (default 64).

    Inputs: ``x_attacker`` is the transfer set, ``(n, *shape)`` float32 within the victim's input box.

    Example:
        >>> copy = KnockoffNets(budget=1000).run(target, transfer_set, seed=0)  # doctest: +SKIP
    """

    info: ClassVar[AttackInfo] = AttackInfo(
        name="knockoff",
        title="Knockoff Nets",
        citation="Orekondy, Schiele, Fritz. Knockoff Nets: Stealing Functionality of Black-Box Models. CVPR 2019.",
        url="https://arxiv.org/abs/1812.02766",
        threat_model="Black-box: natural queries from another distribution, scores or labels, no gradients.",
        capability=Capability.LABELS,
        norms=(),
        taxonomy=EXTRACTION_TAXONOMY,
    )
    budget: int
    train_steps: int = 400
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.budget <= 0:
            raise InputError(f"The 'budget' parameter of KnockoffNets must be a positive int. Got {self.budget}.")
        if self.train_steps <= 0 or self.batch_size <= 0:
            raise InputError("The 'train_steps' and 'batch_size' parameters of KnockoffNets must be positive.")

    def run(self, target: Target, x_attacker: torch.Tensor, *, seed: int) -> ExtractedModel:
        import torch

        if len(x_attacker) < self.budget:
            raise InputError(
                f"KnockoffNets needs a transfer set of at least budget={self.budget} inputs; got {len(x_attacker)}."
            )
        label_only = labels_only(target)
        x = x_attacker[: self.budget].float()
        answers = torch.cat([query(target, x[s], label_only=label_only) for s in batches(len(x), self.batch_size)])
        torch.manual_seed(seed)
        surrogate = default_surrogate(tuple(target.input_spec.shape), target.n_classes)
        train_surrogate(surrogate, x, answers, steps=self.train_steps, seed=seed)
        return ExtractedModel(surrogate, x, answers, len(x), label_only)
