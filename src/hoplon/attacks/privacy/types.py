"""Shared types of privacy attacks: metadata, the membership-attack protocol, results and reference models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from hoplon.core.errors import InputError
from hoplon.targets.types import Capability

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Target

__all__ = [
    "MEMBERSHIP_TAXONOMY",
    "MembershipAttack",
    "MembershipScores",
    "PrivacyAttackInfo",
    "PrivacyKind",
    "ReferenceModels",
]

PrivacyKind = Literal["membership", "inversion", "attribute"]
MEMBERSHIP_TAXONOMY = ("atlas:AML.T0024.000", "owasp-ml:ML04", "nist-ai-rmf:MEASURE-2.10")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacyAttackInfo:
    """What a report and the contract tests need to know about a privacy attack.

    Args:
        name: registry name (``lira-online``).
        title: the literature's name.
        citation: the paper (authors, title, venue, year).
        url: arXiv or DOI link.
        threat_model: one sentence: what the attacker knows and queries.
        capability: what the target must offer.
        kind: ``membership``, ``inversion`` or ``attribute``.
        needs_references: whether ``run`` needs reference (shadow) models trained by a recipe.
        taxonomy: taxonomy ids for findings from this attack.
    """

    name: str
    title: str
    citation: str
    url: str
    threat_model: str
    capability: Capability
    kind: PrivacyKind
    needs_references: bool = False
    taxonomy: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MembershipScores:
    """A membership attack's output: one score per queried record, higher meaning "more likely a member".

    ``details`` holds attack-specific per-record figures (e.g. LiRA's fitted means), never a model.
    """

    attack: str
    scores: torch.Tensor
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReferenceModels:
    """Models trained by the user's recipe on known subsets of a data pool (LiRA's and RMIA's reference
    models, Shokri's shadow models).

    Args:
        targets: the trained models, as targets.
        pool_x: ``(n_pool, *shape)`` the pool they were trained on subsets of.
        pool_y: ``(n_pool,)`` labels.
        in_mask: ``(n_models, n_pool)`` bool, ``in_mask[m, j]`` when model ``m`` trained on pool row ``j``.
        is_population: ``(n_pool,)`` bool, rows that are not audited records (never trained on; population).
    """

    targets: tuple[Target, ...]
    pool_x: torch.Tensor
    pool_y: torch.Tensor
    in_mask: torch.Tensor
    is_population: torch.Tensor

    def __post_init__(self) -> None:
        if not self.targets:
            raise InputError("ReferenceModels needs at least one model.")
        if tuple(self.in_mask.shape) != (len(self.targets), len(self.pool_x)):
            raise InputError(
                f"in_mask must be (n_models, n_pool) = ({len(self.targets)}, {len(self.pool_x)}); "
                f"got {tuple(self.in_mask.shape)}."
            )

    @property
    def n_models(self) -> int:
        return len(self.targets)

    def membership_of(self, x: torch.Tensor) -> torch.Tensor:
        """``(n_models, len(x))`` bool: which reference models trained on each row of ``x`` (found by value)."""
        import torch

        index = _row_index(self.pool_x)
        rows = [index.get(_row_key(r), -1) for r in x]
        mask = torch.zeros((self.n_models, len(x)), dtype=torch.bool)
        for i, j in enumerate(rows):
            if j >= 0:
                mask[:, i] = self.in_mask[:, j]
        return mask

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``(n_models, len(x), n_classes)`` log-probabilities of every reference model on ``x``."""
        import torch

        from hoplon.attacks.privacy._private import log_probs

        return torch.stack([log_probs(t.predict(x), t.score_kind) for t in self.targets])


def _row_key(row: torch.Tensor) -> bytes:
    return bytes(row.detach().cpu().contiguous().numpy().astype("<f4").tobytes())


def _row_index(x: torch.Tensor) -> dict[bytes, int]:
    index: dict[bytes, int] = {}
    for j, row in enumerate(x):
        index.setdefault(_row_key(row), j)
    return index


@runtime_checkable
class MembershipAttack(Protocol):
    """A configured membership-inference attack; ``run`` scores each record of ``(x, y)``."""

    info: ClassVar[PrivacyAttackInfo]

    def run(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        references: ReferenceModels | None,
        rng: torch.Generator,
    ) -> MembershipScores: ...
