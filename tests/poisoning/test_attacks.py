"""The poisoning attacks: validation, ground truth, bounds, determinism."""

from __future__ import annotations

import pytest
import torch

from hoplon.attacks.poisoning import (
    POISONING_ATTACKS,
    BadNets,
    Blended,
    LabelFlip,
    TabularTrigger,
    make_poisoning,
)
from hoplon.core.errors import InputError
from hoplon.data import Dataset, demo


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1, 1.5, float("nan")])
@pytest.mark.parametrize("name", ["label-flip", "badnets", "blended", "tabular"])
def test_rate_outside_zero_one_is_refused(name: str, rate: float) -> None:
    with pytest.raises(InputError, match=r"rate.*\(0, 1\)"):
        make_poisoning(name, rate=rate)


def test_registry_lists_every_attack() -> None:
    assert {"label-flip", "badnets", "blended", "tabular"} <= set(POISONING_ATTACKS.names())


def test_trigger_larger_than_input_is_refused(train_set: Dataset) -> None:
    with pytest.raises(InputError, match=r"larger than the input \(8×8\)"):
        BadNets(rate=0.05, patch_size=9).run(train_set)


def test_tabular_trigger_outside_features_is_refused() -> None:
    with pytest.raises(InputError, match="larger than the input"):
        TabularTrigger(rate=0.05, features=(40,)).run(demo("breast-cancer", split="train"))


def test_label_flip_changes_exactly_the_reported_records(train_set: Dataset) -> None:
    poisoned = LabelFlip(rate=0.1).run(train_set, seed=3)
    changed = (poisoned.data.y != train_set.y).nonzero()[:, 0]
    assert torch.equal(changed, poisoned.poison_index)
    assert len(changed) == round(0.1 * train_set.n)
    assert torch.equal(poisoned.source_labels, train_set.y[changed])


def test_targeted_label_flip_moves_one_class_to_another(train_set: Dataset) -> None:
    poisoned = LabelFlip(rate=0.05, mode="targeted", source_class=7, target_class=1).run(train_set)
    assert bool((train_set.y[poisoned.poison_index] == 7).all())
    assert bool((poisoned.data.y[poisoned.poison_index] == 1).all())


@pytest.mark.parametrize("attack", [BadNets(rate=0.05, target_class=2), Blended(rate=0.05, target_class=2)])
def test_backdoor_poison_is_relabelled_and_stays_in_bounds(attack: BadNets | Blended, train_set: Dataset) -> None:
    poisoned = attack.run(train_set, seed=1)
    assert len(poisoned.poison_index) == round(0.05 * train_set.n)
    assert bool((poisoned.data.y[poisoned.poison_index] == 2).all())
    assert bool((train_set.y[poisoned.poison_index] != 2).all())
    assert bool(train_set.bounds.contains(poisoned.data.x).all())
    clean = ~poisoned.is_poison
    assert torch.equal(poisoned.data.x[clean], train_set.x[clean])


def test_badnets_patch_is_the_corner_checkerboard(train_set: Dataset) -> None:
    stamped = BadNets(rate=0.05, patch_size=2).apply_trigger(train_set.x[:4], train_set)
    assert torch.equal(stamped[:, 0, 6:, 6:], torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(4, 2, 2))
    assert torch.equal(stamped[:, :, :6], train_set.x[:4, :, :6])


def test_tabular_trigger_is_a_corner_of_the_box() -> None:
    data = demo("breast-cancer", split="train")
    poisoned = TabularTrigger(rate=0.1, features=(0, 5)).run(data)
    rows = poisoned.data.x[poisoned.poison_index]
    assert bool((rows[:, 0] == 3.0).all()) and bool((rows[:, 5] == -3.0).all())


def test_same_seed_same_poison(train_set: Dataset) -> None:
    a = BadNets(rate=0.05).run(train_set, seed=7)
    b = BadNets(rate=0.05).run(train_set, seed=7)
    c = BadNets(rate=0.05).run(train_set, seed=8)
    assert torch.equal(a.poison_index, b.poison_index)
    assert not torch.equal(a.poison_index, c.poison_index)


def test_clean_label_keeps_labels_and_the_perturbation_budget(train_set: Dataset) -> None:
    from hoplon.attacks.poisoning import CleanLabel
    from hoplon.recipes import Recipe

    attack = CleanLabel(rate=0.03, eps=0.2, steps=5, surrogate_recipe=Recipe(factory="digits-cnn", epochs=1))
    poisoned = attack.run(train_set, seed=0)
    assert torch.equal(poisoned.data.y, train_set.y)
    assert bool((train_set.y[poisoned.poison_index] == 0).all())
    idx = poisoned.poison_index
    unpatched = (slice(None), slice(None), slice(0, 5))  # rows above the 3×3 corner patch
    delta = (poisoned.data.x[idx] - train_set.x[idx])[unpatched].abs().max()
    assert float(delta) <= 0.2 + 1e-6
    assert bool(train_set.bounds.contains(poisoned.data.x).all())
