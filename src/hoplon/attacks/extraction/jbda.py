"""Jacobian-based dataset augmentation (JbDA): synthetic queries pushed towards the decision boundary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hoplon.attacks.extraction.knockoff import EXTRACTION_TAXONOMY
from hoplon.attacks.extraction.registry import register_extraction
from hoplon.attacks.extraction.surrogates import default_surrogate, labels_only, query, train_surrogate
from hoplon.attacks.extraction.types import ExtractedModel
from hoplon.attacks.types import AttackInfo
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, batches

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Target

__all__ = ["JacobianAugmentation"]


@register_extraction("jbda")
@dataclass(frozen=True, kw_only=True)
class JacobianAugmentation:
    """Papernot et al.'s Jacobian-based dataset augmentation, as used against PRADA.

    Threat model: black-box, labels suffice. The attacker holds a small natural seed set, labels it through
    the victim, trains a surrogate, then creates each new query as ``x + λ·sign(∇ₓ surrogate[label](x))``
    (clipped to the input box) around every point it already holds, doubling its set each round. The synthetic
    points sit at a fixed distance from their parents, which is the signature PRADA looks for.

    References:
        Papernot, McDaniel, Goodfellow, Jha, Celik, Swami. Practical Black-Box Attacks against Machine
        Learning. AsiaCCS 2017. https://arxiv.org/abs/1602.02697
        Juuti, Szyller, Marchal, Asokan. PRADA: Protecting against DNN Model Stealing Attacks. EuroS&P 2019.
        https://arxiv.org/abs/1805.02628

    Args:
        budget: queries (model rows) to spend, > 0 (the seed set counts).
        n_seed: natural seed inputs taken from ``x_attacker`` (default 50, at most ``budget``).
        step: λ, the augmentation step in input units, > 0 (default 0.1).
        tau: the step changes sign every ``tau`` rounds (default 3, Papernot's periodic step).
        blinding: standard deviation of Gaussian noise added to every synthetic query before it is sent
            ("query blinding", an adaptive attacker's way to blur the distance signature; default 0).
        train_steps: optimiser steps of the surrogate per round (default 300).

    Example:
        >>> copy = JacobianAugmentation(budget=500).run(target, seed_images, seed=0)  # doctest: +SKIP
    """

    info: ClassVar[AttackInfo] = AttackInfo(
        name="jbda",
        title="Jacobian-based dataset augmentation",
        citation="Papernot et al. Practical Black-Box Attacks against Machine Learning. AsiaCCS 2017.",
        url="https://arxiv.org/abs/1602.02697",
        threat_model="Black-box, labels only: a small natural seed set grown by synthetic near-boundary queries.",
        capability=Capability.LABELS,
        norms=(),
        taxonomy=EXTRACTION_TAXONOMY,
    )
    budget: int
    n_seed: int = 50
    step: float = 0.1
    tau: int = 3
    blinding: float = 0.0
    train_steps: int = 300

    def __post_init__(self) -> None:
        if self.budget <= 0:
            raise InputError(
                f"The 'budget' parameter of JacobianAugmentation must be a positive int. Got {self.budget}."
            )
        if self.n_seed <= 0:
            raise InputError(f"The 'n_seed' parameter of JacobianAugmentation must be positive. Got {self.n_seed}.")
        if not 0 < self.step <= 1:
            raise InputError(f"The 'step' parameter of JacobianAugmentation must be in (0, 1]. Got {self.step}.")
        if self.tau <= 0 or self.train_steps <= 0 or self.blinding < 0:
            raise InputError("'tau' and 'train_steps' must be positive and 'blinding' non-negative.")

    def run(self, target: Target, x_attacker: torch.Tensor, *, seed: int) -> ExtractedModel:
        import torch

        bounds = target.input_spec.bounds
        label_only = labels_only(target)
        generator = torch.Generator().manual_seed(seed)
        n_seed = min(self.n_seed, self.budget, len(x_attacker))
        pick = torch.randperm(len(x_attacker), generator=generator)[:n_seed]
        held = x_attacker[pick].float()
        answers = self._ask(target, held, label_only)
        torch.manual_seed(seed)
        surrogate = default_surrogate(tuple(target.input_spec.shape), target.n_classes)
        rnd = 0
        while len(held) < self.budget:
            train_surrogate(surrogate, held, answers, steps=self.train_steps, seed=seed + rnd)
            sign = 1.0 if (rnd // self.tau) % 2 == 0 else -1.0
            room = self.budget - len(held)
            parents = held[torch.randperm(len(held), generator=generator)[:room]] if room < len(held) else held
            labels = surrogate(parents).argmax(1) if label_only else None
            new = self._augment(surrogate, parents, labels, sign)
            if self.blinding > 0:
                new = new + self.blinding * torch.randn(new.shape, generator=generator)
            if bounds is not None:
                new = bounds.clip(new)
            held = torch.cat([held, new])
            answers = torch.cat([answers, self._ask(target, new, label_only)])
            rnd += 1
        train_surrogate(surrogate, held, answers, steps=self.train_steps, seed=seed + rnd)
        return ExtractedModel(surrogate, held, answers, len(held), label_only)

    @staticmethod
    def _ask(target: Target, x: torch.Tensor, label_only: bool) -> torch.Tensor:
        import torch

        return torch.cat([query(target, x[s], label_only=label_only) for s in batches(len(x), 256)])

    def _augment(
        self, surrogate: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor | None, sign: float
    ) -> torch.Tensor:
        import torch

        xg = x.clone().requires_grad_(True)
        logits = surrogate(xg)
        chosen = logits.argmax(1) if labels is None else labels
        grad = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), xg)[0]
        return (x + sign * self.step * grad.sign()).detach()
