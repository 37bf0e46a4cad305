"""Gradient-masking checks: each symptom becomes a finding with an explanation; a sound model raises none."""

from __future__ import annotations

import torch

from hoplon.audit import robustness
from hoplon.audit.masking import blackbox_beats_whitebox, box_size_check, non_monotone_curves, zero_gradient_check
from hoplon.data import Dataset
from hoplon.targets import TorchTarget


def _row(attack: str, eps: float, robust: float) -> dict[str, object]:
    return {"attack": attack, "eps": eps, "robust_accuracy": robust}


def test_black_box_beating_white_box_is_flagged() -> None:
    rows = [_row("pgd", 0.1, 0.80), _row("fgsm", 0.1, 0.85), _row("square", 0.1, 0.30), _row("worst-case", 0.1, 0.3)]
    (finding,) = blackbox_beats_whitebox(rows, asset="m")
    assert finding.id == "evasion.masking.blackbox-beats-whitebox" and finding.metrics["gap"] == 0.5
    assert "white-box attacker knows strictly more" in finding.summary
    assert blackbox_beats_whitebox([_row("pgd", 0.1, 0.2), _row("square", 0.1, 0.21)], asset="m") == []


def test_a_rising_curve_is_flagged() -> None:
    rows = [_row("pgd", 0.05, 0.5), _row("pgd", 0.1, 0.6), _row("pgd", 0.2, 0.1), _row("fgsm", 0.1, 0.4)]
    (finding,) = non_monotone_curves(rows, asset="m")
    assert finding.id == "evasion.masking.non-monotone.pgd" and finding.metrics["eps_to"] == 0.1


class _Saturated(torch.nn.Module):
    """The digits CNN with its logits multiplied by 10^4: softmax saturates and input gradients vanish."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x) * 1e4
        return out


def test_a_masked_model_raises_the_masking_findings(digits_model: torch.nn.Module, digits_test: Dataset) -> None:
    target = TorchTarget(_Saturated(digits_model), input_shape=(1, 8, 8), bounds=digits_test.bounds, name="masked")
    data = digits_test.subset(slice(0, 40))
    report = robustness(target, data, eps=[0.15], attacks=["pgd", "square"], command="test")
    ids = {f.id for f in report.findings}
    assert "evasion.masking.zero-gradients" in ids
    assert "evasion.masking.blackbox-beats-whitebox" in ids


def test_a_sound_model_raises_none(digits_target: TorchTarget, digits_test: Dataset) -> None:
    data = digits_test.subset(slice(0, 40))
    report = robustness(digits_target, data, eps=[0.2], attacks=["pgd", "square"], command="test")
    assert not [f for f in report.findings if f.id.startswith("evasion.masking")]
    findings, figures = box_size_check(digits_target, data, norm="linf")
    assert findings == [] and figures["robust_accuracy"] <= 0.1
    assert zero_gradient_check(digits_target, data)[1] < 0.2


class _Constant(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), 10) + torch.arange(10.0).flip(0) + 0 * x.flatten(1)[:, :1]


def test_no_collapse_at_the_box_size_is_flagged(digits_test: Dataset) -> None:
    zeros = digits_test.subset((digits_test.y == 0).nonzero().squeeze(1)[:10])
    target = TorchTarget(_Constant(), input_shape=(1, 8, 8), bounds=digits_test.bounds, name="constant")
    findings, figures = box_size_check(target, zeros, norm="linf")
    assert figures["robust_accuracy"] == 1.0
    assert findings[0].id == "evasion.masking.no-collapse-at-box-size"
