"""Contract tests over the whole attack registry (citation, threat model, norms, invariants)."""

from __future__ import annotations

import pytest

from hoplon.attacks import ATTACKS, make
from hoplon.data import Dataset
from hoplon.targets import TorchTarget
from hoplon.testing import check_attack, check_attack_metadata

NAMES = ATTACKS.names()
FAST = {"steps": 5}


def _fast(name: str) -> dict[str, int]:
    attack = make(name)
    fields = getattr(type(attack), "__dataclass_fields__", {})
    config = {k: v for k, v in FAST.items() if k in fields}
    if "binary_search_steps" in fields:
        config["binary_search_steps"] = 2
    return config


def test_the_registry_has_the_issue_attacks() -> None:
    assert {"fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "cw-l2"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_and_docstring(name: str) -> None:
    check_attack_metadata(make(name))


@pytest.mark.parametrize("name", NAMES)
def test_invariants_on_the_digits_cnn(name: str, digits_target: TorchTarget, digits_test: Dataset) -> None:
    attack = make(name, **_fast(name))
    eps = 1.0 if attack.norm == "l2" else 0.1
    check_attack(attack, digits_target, digits_test.x[:16], digits_test.y[:16], eps=eps, bounds=digits_test.bounds)


@pytest.mark.parametrize("name", NAMES)
def test_invariants_on_the_tabular_box(name: str, cancer_target: TorchTarget, cancer_test: Dataset) -> None:
    attack = make(name, **_fast(name))
    if getattr(attack, "loss", "ce") == "dlr":
        pytest.skip("the DLR loss needs at least 3 classes; the tabular model has 2 (refusal is tested elsewhere)")
    eps = 1.0 if attack.norm == "l2" else 0.3
    check_attack(attack, cancer_target, cancer_test.x[:16], cancer_test.y[:16], eps=eps, bounds=cancer_test.bounds)
