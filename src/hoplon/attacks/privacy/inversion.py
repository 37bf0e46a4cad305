"""MI-Face model inversion (Fredrikson et al.): reconstruct a class representative by gradient ascent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from hoplon.attacks.privacy.types import PrivacyAttackInfo
from hoplon.core.errors import InputError
from hoplon.targets.types import Capability, DifferentiableTarget, require

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Bounds, Target

__all__ = ["INVERSION_TAXONOMY", "InversionResult", "MIFace"]

INVERSION_TAXONOMY = ("atlas:AML.T0024.001", "owasp-ml:ML03", "nist-ai-rmf:MEASURE-2.10")


@dataclass(frozen=True, slots=True)
class InversionResult:
    """Reconstructions ``(k, *shape)`` for ``classes`` and the target's confidence in each (``(k,)``)."""

    classes: tuple[int, ...]
    reconstructions: torch.Tensor
    confidence: torch.Tensor


@dataclass(frozen=True, kw_only=True)
class MIFace:
    """MI-Face: for each class, find the input the model is most confident belongs to it, by projected
    gradient descent on ``-log p_c(x)`` (optionally plus a total-variation prior), inside the input box.

    Threat model: white-box (needs gradients) access to an image classifier; the attacker knows the class
    labels and the input box, but no training record. What comes out is a class representative: if it
    resembles the class's training images, the model has memorised recognisable features of them.

    References:
        Fredrikson, Jha, Ristenpart. Model Inversion Attacks that Exploit Confidence Information and Basic
        Countermeasures. ACM CCS 2015. https://doi.org/10.1145/2810103.2813677

    Args:
        steps: gradient steps per class (default 200, >= 1).
        lr: Adam step size in input units (default 0.05, > 0).
        tv_weight: weight of an optional total-variation prior (default 0, >= 0; smooths the image, but on
            the digits demo it lowers the reconstructions' similarity to their class means).
        init: start from the box's ``midpoint`` (default) or ``zeros`` (the box's lower corner).

    Inputs are the class indices; outputs are ``(k, *shape)`` float32 inside ``bounds``.

    Example:
        >>> from hoplon.attacks.privacy import MIFace
        >>> result = MIFace().run(target, classes=range(10), bounds=data.bounds)  # doctest: +SKIP
    """

    info: ClassVar[PrivacyAttackInfo] = PrivacyAttackInfo(
        name="mi-face",
        title="MI-Face model inversion",
        citation="Fredrikson, Jha, Ristenpart. Model Inversion Attacks that Exploit Confidence Information and "
        "Basic Countermeasures. ACM CCS 2015.",
        url="https://doi.org/10.1145/2810103.2813677",
        threat_model="White-box: gradient ascent on the model's confidence in a class, from a blank input, inside "
        "the input box.",
        capability=Capability.GRADIENTS,
        kind="inversion",
        taxonomy=INVERSION_TAXONOMY,
    )
    steps: int = 200
    lr: float = 0.05
    tv_weight: float = 0.0
    init: Literal["midpoint", "zeros"] = "midpoint"

    def __post_init__(self) -> None:
        if self.steps < 1 or not self.lr > 0 or self.tv_weight < 0:
            raise InputError(
                f"MIFace needs steps >= 1, lr > 0 and tv_weight >= 0. Got {self.steps}, {self.lr}, {self.tv_weight}."
            )
        if self.init not in ("midpoint", "zeros"):
            raise InputError(f"The 'init' parameter of MIFace must be 'midpoint' or 'zeros'. Got {self.init!r}.")

    def run(self, target: Target, *, classes: Sequence[int], bounds: Bounds) -> InversionResult:
        import torch

        require(target, Capability.GRADIENTS, who="MIFace")
        if not isinstance(target, DifferentiableTarget):
            raise InputError(f"MIFace needs a target with gradients (logits); {target.name} has none.")
        chosen = tuple(int(c) for c in classes)
        if not chosen or min(chosen) < 0 or max(chosen) >= target.n_classes:
            raise InputError(f"MIFace classes must be in 0 .. {target.n_classes - 1}. Got {list(chosen)}.")
        shape = (len(chosen), *target.input_spec.shape)
        lower = bounds.lower.to(torch.float32).expand(target.input_spec.shape)
        upper = bounds.upper.to(torch.float32).expand(target.input_spec.shape)
        start = (lower + upper) / 2 if self.init == "midpoint" else lower
        x = start.expand(shape).clone().requires_grad_(True)
        labels = torch.tensor(chosen)
        optimiser = torch.optim.Adam([x], lr=self.lr)
        for _ in range(self.steps):
            optimiser.zero_grad()
            lp = torch.log_softmax(target.logits(x), dim=1)
            loss = -lp.gather(1, labels[:, None]).sum() + self.tv_weight * _total_variation(x)
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                x.copy_(bounds.clip(x))
        final = x.detach()
        with torch.no_grad():
            conf = torch.softmax(target.predict(final), dim=1).gather(1, labels[:, None]).squeeze(1)
        return InversionResult(chosen, final, conf)


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    import torch

    if x.ndim < 4:
        return torch.zeros((), dtype=x.dtype)
    return (x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., :, 1:] - x[..., :, :-1]).abs().sum()
