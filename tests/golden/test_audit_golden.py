"""A golden ``report.json`` from a real robustness audit (time, versions and timings normalised).

The model is a hand-set linear classifier on the bundled breast-cancer data, so the figures do not depend
on training and stay identical across machines; floats are rounded to 4 decimals before comparing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from hoplon.audit import parse_gate, robustness
from hoplon.data import demo
from hoplon.targets import TorchTarget
from tests.report.conftest import normalise

GOLDEN = Path(__file__).parent / "robustness_audit.json"


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _linear_target() -> TorchTarget:
    model = torch.nn.Linear(30, 2)
    with torch.no_grad():
        weights = torch.linspace(-1.0, 1.0, 30)
        model.weight.copy_(torch.stack([-weights, weights]))
        model.bias.zero_()
    return TorchTarget(model, input_shape=(30,), name="linear-golden")


def test_audit_report_matches_golden() -> None:
    data = demo("breast-cancer", split="test").subset(slice(0, 40))
    report = robustness(
        _linear_target(),
        data,
        norm="linf",
        eps=[0.1, 0.3],
        attacks=["fgsm", "pgd"],
        seed=0,
        gates=[parse_gate("robust_accuracy@0.1=0.5")],
        command="hoplon audit robustness (golden)",
    )
    produced = _round(normalise(report).to_dict())
    if os.environ.get("HOPLON_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(produced, indent=2, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert produced == expected
