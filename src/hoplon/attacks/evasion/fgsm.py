"""Fast Gradient Sign Method (and its L2 form, the Fast Gradient Method)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hoplon.attacks.evasion.ops import (
    Loss,
    check_eps,
    input_gradient,
    random_target_classes,
    summed_loss,
    unit_step,
)
from hoplon.attacks.registry import register
from hoplon.attacks.types import AdversarialBatch, AttackInfo, Norm
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, require

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Bounds, Target

__all__ = ["FGSM"]


@register("fgsm")
@dataclass(frozen=True, kw_only=True)
class FGSM:
    """Fast Gradient Sign Method: one step of size ε along the sign of the loss gradient.

    Threat model: white-box (needs gradients), untargeted or targeted, perturbation bounded in L∞ (sign
    step) or L2 (normalised-gradient step, the "fast gradient method"). A single step: cheap, and a weak
    baseline that any robustness claim must beat by a wide margin. The step's direction does not depend
    on ε: :func:`hoplon.attacks.evaluate` computes it once per sample for a whole ε list (with the clean
    predictions from the same forward pass) and only re-checks each ε's candidates; with ``targeted`` the
    target classes are drawn once per evaluation, the same at every ε.

    References:
        Goodfellow, Shlens, Szegedy. Explaining and Harnessing Adversarial Examples. ICLR 2015.
        https://arxiv.org/abs/1412.6572

    Args:
        norm: ``linf`` (default) or ``l2``.
        loss: ``ce`` (default) or ``margin``.
        targeted: push towards a random other class instead of away from the true one.

    Inputs ``x`` are ``(n, *shape)`` float32 inside the dataset's bounds; ``y`` are int64 labels.

    Example:
        >>> from hoplon.attacks import FGSM, evaluate
        >>> result = evaluate(FGSM(), target, x, y, eps=[0.1])  # doctest: +SKIP
    """

    info: ClassVar[AttackInfo] = AttackInfo(
        name="fgsm",
        title="Fast Gradient Sign Method",
        citation="Goodfellow, Shlens, Szegedy. Explaining and Harnessing Adversarial Examples. ICLR 2015.",
        url="https://arxiv.org/abs/1412.6572",
        threat_model="White-box: one gradient step of size eps in the L-inf (sign) or L2 norm.",
        capability=Capability.GRADIENTS,
        norms=("linf", "l2"),
        taxonomy=("atlas:AML.T0043.000", "atlas:AML.T0015", "owasp-ml:ML01"),
    )
    norm: Norm = "linf"
    loss: Loss = "ce"
    targeted: bool = False

    def __post_init__(self) -> None:
        if self.norm not in self.info.norms:
            raise InputError(f"The 'norm' parameter of FGSM must be one of linf, l2. Got {self.norm!r}.")
        if self.loss not in ("ce", "margin"):
            raise InputError(f"The 'loss' parameter of FGSM must be 'ce' or 'margin'. Got {self.loss!r}.")

    def direction(
        self, target: Target, x: torch.Tensor, y: torch.Tensor, rng: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The step of unit size (sign, or normalised gradient), the target classes, and the logits at ``x``.

        The gradient does not depend on ε, so :func:`hoplon.attacks.evaluate` computes it once per sample for
        a whole ε list, and reads the clean predictions off the same forward pass.
        """

        require(target, Capability.GRADIENTS, who="FGSM")
        y_target = random_target_classes(y, target.n_classes, rng) if self.targeted else None
        point = x.detach().requires_grad_(True)
        logits = target.logits(point)  # type: ignore[attr-defined]
        # The summed loss has the per-sample gradients (one fused op for the untargeted cross-entropy).
        grad = input_gradient(summed_loss(logits, y, self.loss, y_target), point)
        return unit_step(grad, self.norm), y_target, logits.detach()

    def run(
        self, target: Target, x: torch.Tensor, y: torch.Tensor, *, eps: float, bounds: Bounds, rng: torch.Generator
    ) -> AdversarialBatch:
        check_eps("FGSM", eps)
        step, y_target, _ = self.direction(target, x, y, rng)
        x_adv = bounds.clip(x + eps * step)
        return AdversarialBatch(x_adv.detach(), y_target)
