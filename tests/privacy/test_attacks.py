"""Membership attacks: metadata contract, determinism, and Carlini et al.'s central claim at small scale."""

from __future__ import annotations

import inspect

import pytest
import torch

from hoplon.attacks.privacy import (
    PRIVACY_ATTACKS,
    AttributeInference,
    LossAttack,
    MIFace,
    ReferenceModels,
    make_privacy_attack,
)
from hoplon.core.errors import InputError
from hoplon.core.taxonomy import validate_ids
from hoplon.metrics import bootstrap_interval, privacy_row, tpr_at_fpr
from hoplon.targets import TorchTarget

from .conftest import Splits

NAMES = PRIVACY_ATTACKS.names()


def test_the_registry_has_the_issue_attacks() -> None:
    assert {"loss", "lira-online", "lira-offline", "rmia", "shadow"} <= set(NAMES)


@pytest.mark.parametrize("cls", [type(make_privacy_attack(n)) for n in NAMES] + [MIFace, AttributeInference])
def test_metadata_and_docstring(cls: type) -> None:
    info = cls.info  # type: ignore[attr-defined]
    assert info.title and len(info.citation) > 20 and info.url.startswith("https://")
    assert len(info.threat_model) > 20
    validate_ids(info.taxonomy)
    assert info.taxonomy
    doc = inspect.getdoc(cls) or ""
    for section in ("References:", "Args:", "Example", "Threat model"):
        assert section in doc, f"{cls.__name__} docstring lacks {section}"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_scores(
    name: str, splits: Splits, overfit_target: TorchTarget, overfit_references: ReferenceModels
) -> None:
    attack = make_privacy_attack(name)
    first = attack.run(
        overfit_target, splits.x, splits.y, references=overfit_references, rng=torch.Generator().manual_seed(0)
    )
    again = attack.run(
        overfit_target, splits.x, splits.y, references=overfit_references, rng=torch.Generator().manual_seed(0)
    )
    assert first.scores.shape == (len(splits.x),)
    assert torch.equal(first.scores, again.scores)
    assert bool(torch.isfinite(first.scores).all())


def test_reference_attacks_refuse_to_run_without_references(splits: Splits, overfit_target: TorchTarget) -> None:
    with pytest.raises(InputError, match="reference models"):
        make_privacy_attack("lira-online").run(
            overfit_target, splits.x, splits.y, references=None, rng=torch.Generator()
        )


def test_every_audited_record_has_half_in_half_out(overfit_references: ReferenceModels) -> None:
    counts = overfit_references.in_mask.sum(0)
    assert bool((counts == overfit_references.n_models // 2).all())


def test_lira_beats_the_loss_attack_at_low_fpr(
    splits: Splits, overfit_target: TorchTarget, overfit_references: ReferenceModels
) -> None:
    """Carlini et al. (2022), Fig. 1 and Table 1: LiRA's TPR at low FPR is far above the loss attack's."""
    labels = splits.is_member
    loss = LossAttack().run(overfit_target, splits.x, splits.y)
    lira = make_privacy_attack("lira-online").run(
        overfit_target, splits.x, splits.y, references=overfit_references, rng=torch.Generator().manual_seed(0)
    )
    lira_tpr = tpr_at_fpr(lira.scores, labels, 0.01)
    loss_tpr = tpr_at_fpr(loss.scores, labels, 0.01)
    assert lira_tpr >= loss_tpr
    # And by more than the loss attack's own bootstrap interval reaches:
    _, loss_hi = bootstrap_interval(loss.scores, labels, lambda s, m: tpr_at_fpr(s, m, 0.01), n_boot=100)
    assert lira_tpr > loss_hi, (lira_tpr, loss_tpr, loss_hi)
    rows = [privacy_row(r.attack, r.scores, labels, n_boot=20) for r in (loss, lira)]
    assert rows[1]["auc"] > rows[0]["auc"]
