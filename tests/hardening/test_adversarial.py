"""Adversarial training (PGD-AT, TRADES, Gaussian) and ``hoplon harden adversarial`` end to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from hoplon.attacks import PGD, evaluate
from hoplon.cli.main import main
from hoplon.core import InputError
from hoplon.data import Dataset, save_npz
from hoplon.defenses.training import AdversarialConfig, adversarial
from hoplon.targets import TorchTarget, load_target
from hoplon.targets.torch_target import quiet_torchscript


def _pgd_robust(module: torch.nn.Module, data: Dataset, eps: float) -> float:
    target = TorchTarget(module, input_shape=(1, 8, 8), bounds=data.bounds)
    ev = evaluate(PGD(steps=20), target, data.x[:150], data.y[:150], eps=[eps])
    return float((ev.clean_correct & ~ev.outcomes[0].is_adv).float().mean())


def test_pgd_at_raises_robust_accuracy_in_two_epochs(
    digits_model: torch.nn.Module, digits_train: Dataset, digits_test: Dataset
) -> None:
    before = _pgd_robust(digits_model, digits_test, 0.2)
    model = copy.deepcopy(digits_model)
    config = AdversarialConfig(method="pgd-at", eps=0.2, epochs=2, steps=5, eval_samples=50, eval_steps=5)
    model, record = adversarial(model, digits_train.x, digits_train.y, bounds=digits_train.bounds, config=config)
    after = _pgd_robust(model, digits_test, 0.2)
    # Measured: 1.3 % -> 20.7 % PGD-20 robust accuracy after two epochs of fine-tuning at eps=0.2.
    assert after >= before + 0.10
    assert len(record.epochs) == 2 and record.eval_split == "train-subset"
    assert record.data_fingerprint == digits_train.fingerprint()
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method", ["trades", "gaussian"])
def test_trades_and_gaussian_train_and_record(
    method: str, digits_model: torch.nn.Module, digits_train: Dataset, digits_test: Dataset
) -> None:
    model = copy.deepcopy(digits_model)
    config = AdversarialConfig(method=method, eps=0.1, sigma=0.25, epochs=1, steps=3, eval_samples=40)  # type: ignore[arg-type]
    model, record = adversarial(
        model,
        digits_train.x[:400],
        digits_train.y[:400],
        bounds=digits_train.bounds,
        config=config,
        x_val=digits_test.x,
        y_val=digits_test.y,
    )
    assert record.eval_split == "validation" and record.epochs[0]["clean_accuracy"] > 0.8
    assert record.to_dict()["config"]["method"] == method
    assert record.train_s > 0


def test_a_model_without_parameters_is_refused(digits_train: Dataset) -> None:
    with pytest.raises(InputError, match="no parameters to train"):
        adversarial(torch.nn.Flatten(), digits_train.x, digits_train.y, bounds=digits_train.bounds)


@pytest.mark.parametrize(
    "bad", [{"sigma": 0.0}, {"sigma": -1.0}, {"eps": 0.0}, {"method": "fgsm"}, {"epochs": 0}, {"beta": -1.0}]
)
def test_configuration_is_validated(bad: dict[str, object]) -> None:
    with pytest.raises(InputError, match="parameter"):
        AdversarialConfig(**bad)  # type: ignore[arg-type]


class _NoParams(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10]


def test_cli_trains_saves_torchscript_and_a_record(
    digits_train: Dataset, digits_test: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_npz(digits_train.subset(slice(0, 300)), tmp_path / "train.npz")
    out = tmp_path / "hardened.pt"
    args = ["harden", "adversarial", "--model", "digits-cnn", "--data", str(tmp_path / "train.npz")]
    code = main([*args, "--method", "pgd-at", "--eps", "0.1", "--epochs", "1", "--steps", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "hardened.training.json").read_text())
    assert record["config"]["method"] == "pgd-at" and record["seed"] == 0
    assert record["data_fingerprint"].startswith("merkle:") and len(record["epochs"]) == 1
    assert {"clean_accuracy", "robust_accuracy"} <= set(record["epochs"][0])
    target = load_target(out, input_shape=(1, 8, 8), bounds=digits_test.bounds)
    assert target.predict(digits_test.x[:5]).shape == (5, 10)


def test_cli_errors_exit_2(digits_train: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_npz(digits_train.subset(slice(0, 50)), tmp_path / "train.npz")
    with quiet_torchscript():
        torch.jit.save(torch.jit.trace(_NoParams(), digits_train.x[:1]), str(tmp_path / "frozen.pt"))
    base = ["harden", "adversarial", "--data", str(tmp_path / "train.npz"), "--out", str(tmp_path / "o.pt")]
    assert main([*base, "--model", str(tmp_path / "frozen.pt"), "--epochs", "1"]) == 2
    assert "no parameters to train" in capsys.readouterr().err
    assert main([*base, "--model", "digits-cnn", "--method", "gaussian", "--sigma", "0"]) == 2
    assert "'sigma'" in capsys.readouterr().err
    assert main([*base, "--model", "nosuch.module:factory"]) == 2
    assert not (tmp_path / "o.pt").exists()
