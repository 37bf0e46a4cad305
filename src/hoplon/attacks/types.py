"""Shared types of attacks: the `Attack` protocol, its metadata and its result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

from hoplon.targets.types import Capability

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Bounds, Target

__all__ = ["AdversarialBatch", "Attack", "AttackInfo", "AttackKind", "Norm"]

Norm = Literal["linf", "l2", "l1"]
AttackKind = Literal["bounded", "minimum-norm"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttackInfo:
    """What a report and the contract tests need to know about an attack.

    Args:
        name: registry name (``pgd``).
        title: the literature's name (``Projected Gradient Descent``).
        citation: the paper (authors, title, venue, year).
        url: arXiv or DOI link.
        threat_model: one sentence: knowledge, capability, norm.
        capability: what the target must offer (:class:`Capability`).
        norms: the norms this attack supports.
        kind: ``bounded`` (works inside an ε-ball) or ``minimum-norm`` (finds the smallest perturbation).
        taxonomy: taxonomy ids for findings from this attack.
    """

    name: str
    title: str
    citation: str
    url: str
    threat_model: str
    capability: Capability
    norms: tuple[Norm, ...]
    kind: AttackKind = "bounded"
    taxonomy: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AdversarialBatch:
    """An attack's raw output: candidate adversarial inputs, and target classes if it was targeted.

    The framework (:func:`hoplon.attacks.evaluate`) projects these onto the ε-ball and the box and re-checks
    success by querying the target; an attack's own notion of success is never trusted.
    """

    x_adv: torch.Tensor
    y_target: torch.Tensor | None = None


@runtime_checkable
class Attack(Protocol):
    """A configured attack. Its fields are its configuration; ``run`` has no side effects beyond queries."""

    info: ClassVar[AttackInfo]

    @property
    def norm(self) -> Norm: ...

    def run(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: float,
        bounds: Bounds,
        rng: torch.Generator,
    ) -> AdversarialBatch: ...
