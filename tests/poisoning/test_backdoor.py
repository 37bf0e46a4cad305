"""Neural Cleanse and STRIP on a BadNets-backdoored digits CNN and a clean one (same recipe and seed)."""

from __future__ import annotations

import pytest
import torch

from hoplon.attacks.poisoning import BadNets
from hoplon.audit.poisoning import backdoor_audit
from hoplon.core.errors import InputError
from hoplon.data import Dataset
from hoplon.defenses.backdoor import STRIP, NeuralCleanse
from hoplon.recipes import Recipe, train

ATTACK = BadNets(rate=0.05, target_class=0)


@pytest.fixture(scope="module")
def models(train_set: Dataset, recipe: Recipe) -> tuple[torch.nn.Module, torch.nn.Module]:
    poisoned = ATTACK.run(train_set, seed=0)
    backdoored, _ = train(recipe, poisoned.data.x, poisoned.data.y, n_classes=10)
    clean, _ = train(recipe, train_set.x, train_set.y, n_classes=10)
    return backdoored, clean


def test_neural_cleanse_flags_the_backdoor_and_not_the_clean_model(
    models: tuple[torch.nn.Module, torch.nn.Module], test_set: Dataset
) -> None:
    # Issue target: anomaly index > 2 for the backdoored model only (measured: 17.1 on class 0 vs 1.1 clean).
    backdoored, clean = models
    sample = test_set.subset(slice(0, 150))
    nc = NeuralCleanse(steps=60)
    bad = nc.run(backdoored, sample.x, sample.y, sample.bounds, n_classes=10)
    good = nc.run(clean, sample.x, sample.y, sample.bounds, n_classes=10)
    assert bad.flagged == (0,)
    assert bad.max_anomaly_index > 2
    assert good.flagged == ()
    assert good.max_anomaly_index <= 2


def test_strip_detects_triggered_inputs_at_five_percent_fpr(
    models: tuple[torch.nn.Module, torch.nn.Module], test_set: Dataset
) -> None:
    # Issue target: >= 80 % of triggered inputs at 5 % FPR on clean inputs (measured: 99.6 %).
    backdoored, _ = models
    detector = STRIP().calibrate(backdoored, test_set.x[:200], test_set.bounds, fpr=0.05)
    rest = test_set.subset(slice(200, None))
    triggered = ATTACK.apply_trigger(rest.x[rest.y != 0], rest)
    assert float(detector(triggered).float().mean()) >= 0.8
    assert float(detector(rest.x).float().mean()) <= 0.1


def test_backdoor_report_carries_triggers_and_strip(
    models: tuple[torch.nn.Module, torch.nn.Module], test_set: Dataset
) -> None:
    backdoored, _ = models
    sample = test_set.subset(slice(0, 120))
    report = backdoor_audit(
        backdoored, sample, n_classes=10, fpr=0.1, trigger=ATTACK, neural_cleanse=NeuralCleanse(steps=40)
    )
    assert len(report.results["neural_cleanse"]) == 10
    assert len(report.figures["neural_cleanse"]["triggers"]) == 10
    assert report.results["strip"]["detection_rate"] >= 0.8


def test_too_few_clean_samples_say_how_many_are_needed(
    models: tuple[torch.nn.Module, torch.nn.Module], test_set: Dataset
) -> None:
    with pytest.raises(InputError, match="at least 20 clean samples"):
        NeuralCleanse().run(models[0], test_set.x[:10], test_set.y[:10], test_set.bounds, n_classes=10)
    with pytest.raises(InputError, match="needs at least 40 clean samples"):
        STRIP().calibrate(models[0], test_set.x[:10], test_set.bounds, fpr=0.05)
