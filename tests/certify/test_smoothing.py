"""Randomized smoothing: the Clopper–Pearson bound, the radius cap, honesty under attack, and ``hoplon certify``."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from scipy.stats import norm
from torch.nn import functional as F

from hoplon.cli.main import main
from hoplon.core import InputError
from hoplon.data import Dataset, save_npz
from hoplon.defenses.certify import ABSTAIN, Smooth, clopper_pearson_lower, max_certifiable_radius
from hoplon.defenses.training import AdversarialConfig, adversarial
from hoplon.targets import TorchTarget
from hoplon.targets.torch_target import quiet_torchscript

SIGMA = 0.25


@pytest.fixture(scope="module")
def noisy_model(digits_model: torch.nn.Module, digits_train: Dataset) -> torch.nn.Module:
    """The demo CNN fine-tuned for three epochs on Gaussian noise (sigma = 0.25)."""
    model = copy.deepcopy(digits_model)
    config = AdversarialConfig(method="gaussian", sigma=SIGMA, epochs=3, eval_samples=0)
    model, _ = adversarial(model, digits_train.x, digits_train.y, bounds=digits_train.bounds, config=config)
    return model


def test_clopper_pearson_reference_values() -> None:
    # All n successes: the one-sided bound is alpha**(1/n) (closed form of the Beta(n, 1) quantile).
    assert clopper_pearson_lower(1000, 1000, 0.001) == pytest.approx(0.001 ** (1 / 1000), rel=1e-9)
    # statsmodels.proportion_confint(60, 100, alpha=0.1, method="beta")[0] = 0.5129 (one-sided at 0.05).
    assert clopper_pearson_lower(60, 100, 0.05) == pytest.approx(0.5129, abs=2e-4)
    assert clopper_pearson_lower(0, 100, 0.05) == 0.0


def test_the_largest_certifiable_radius() -> None:
    # The issue: with 1,000 samples it is about 2.5 sigma.
    assert max_certifiable_radius(1000, 0.001, 1.0) == pytest.approx(2.46, abs=0.01)
    assert max_certifiable_radius(100_000, 0.001, 0.5) > max_certifiable_radius(1000, 0.001, 0.5)


class _Constant(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), 3) + torch.tensor([0.0, 5.0, 0.0])


def test_a_constant_classifier_is_certified_up_to_the_cap() -> None:
    target = TorchTarget(_Constant(), input_shape=(4,))
    cert = Smooth(sigma=0.5).certify(target, torch.zeros(3, 4), n0=10, n=200, alpha=0.01)
    assert cert.prediction.tolist() == [1, 1, 1]
    assert cert.radius.tolist() == pytest.approx([max_certifiable_radius(200, 0.01, 0.5)] * 3, rel=1e-5)
    assert target.counter.queries == 3 * 210  # n0 + n draws per sample, counted by the target


@pytest.mark.parametrize("sigma", [0.0, -0.25, math.inf])
def test_sigma_must_be_positive(sigma: float) -> None:
    with pytest.raises(InputError, match="'sigma'"):
        Smooth(sigma=sigma)


def _eot_pgd_l2(
    module: torch.nn.Module, x: torch.Tensor, label: torch.Tensor, radius: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """PGD-L2 on the smoothed classifier's base model (expectation over 16 noise draws), inside ``radius``."""
    x_adv = x.clone()
    step = radius / 4
    for _ in range(20):
        x_adv.requires_grad_(True)
        noisy = x_adv.repeat_interleave(16, 0) + SIGMA * torch.randn((len(x) * 16, *x.shape[1:]), generator=gen)
        loss = F.cross_entropy(module(noisy), label.repeat_interleave(16))
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            g = grad / (grad.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1) + 1e-12)
            delta = x_adv + step.reshape(-1, 1, 1, 1) * g - x
            scale = torch.clamp(radius / (delta.flatten(1).norm(dim=1) + 1e-12), max=1.0)
            x_adv = (x + delta * scale.reshape(-1, 1, 1, 1)).detach()
    return x_adv


def test_certificates_are_honest_under_attack(noisy_model: torch.nn.Module, digits_test: Dataset) -> None:
    target = TorchTarget(noisy_model, input_shape=(1, 8, 8), name="noisy")
    x = digits_test.x[:16]
    smooth = Smooth(sigma=SIGMA)
    cert = smooth.certify(target, x, n0=50, n=500, alpha=0.001, seed=0)
    certified = (cert.prediction != ABSTAIN).nonzero().squeeze(1)
    assert certified.numel() >= 8  # a useful model: most samples get a certificate
    assert bool((cert.radius[certified] > 0).all())
    module = copy.deepcopy(noisy_model)
    for p in module.parameters():
        p.requires_grad_(False)
    x_adv = _eot_pgd_l2(
        module, x[certified], cert.prediction[certified], cert.radius[certified], torch.Generator().manual_seed(1)
    )
    assert bool(((x_adv - x[certified]).flatten(1).norm(dim=1) <= cert.radius[certified] + 1e-5).all())
    after = smooth.predict(target, x_adv, n=500, alpha=0.001, seed=2)
    changed = (after != ABSTAIN) & (after != cert.prediction[certified])
    assert int(changed.sum()) == 0, f"certified predictions changed inside the radius: {changed.nonzero().tolist()}"
    # The attack has teeth: allowed four times the radius, it does change certified predictions.
    far = _eot_pgd_l2(
        module, x[certified], cert.prediction[certified], 4 * cert.radius[certified], torch.Generator().manual_seed(1)
    )
    assert int((smooth.predict(target, far, n=500, alpha=0.001, seed=2) != cert.prediction[certified]).sum()) >= 2


def test_radius_follows_the_bound(noisy_model: torch.nn.Module, digits_test: Dataset) -> None:
    target = TorchTarget(noisy_model, input_shape=(1, 8, 8))
    cert = Smooth(sigma=SIGMA).certify(target, digits_test.x[:6], n0=20, n=200, alpha=0.01, seed=3)
    for p, r in zip(cert.p_lower.tolist(), cert.radius.tolist(), strict=True):
        expected = SIGMA * norm.ppf(p) if p > 0.5 else 0.0
        assert r == pytest.approx(expected, abs=1e-5)


@pytest.fixture()
def cli_files(noisy_model: torch.nn.Module, digits_test: Dataset, tmp_path: Path) -> dict[str, Path]:
    with quiet_torchscript():
        torch.jit.save(torch.jit.trace(noisy_model, digits_test.x[:1]), str(tmp_path / "m.pt"))
    save_npz(digits_test.subset(slice(0, 20)), tmp_path / "d.npz")
    return {"model": tmp_path / "m.pt", "data": tmp_path / "d.npz"}


def test_cli_certify_writes_the_curve(
    cli_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rep"
    args = ["certify", "--model", str(cli_files["model"]), "--data", str(cli_files["data"]), "--sigma", "0.25"]
    code = main([*args, "--n0", "20", "--n", "200", "--alpha", "0.001", "--radii", "0,0.25,0.5,1", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "n=200" in stdout and "alpha=0.001" in stdout and "sigma=0.25" in stdout
    report = json.loads((out / "report.json").read_text())
    rows = report["results"]["certified"]
    assert [r["radius"] for r in rows] == [0.0, 0.25, 0.5, 1.0]
    for row in rows:
        assert {"certified_accuracy", "abstain_rate", "n", "alpha", "sigma", "max_certifiable_radius"} <= set(row)
    accs = [r["certified_accuracy"] for r in rows]
    assert accs == sorted(accs, reverse=True) and accs[-1] == 0.0  # 1.0 is beyond the cap for n=200
    assert rows[-1]["beyond_cap"] and not rows[0]["beyond_cap"]
    assert report["findings"][0]["id"] == "certify.smoothing.l2"
    assert (out / "report.html").exists()


def test_cli_certify_bad_input_and_budget(
    cli_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["certify", "--model", str(cli_files["model"]), "--data", str(cli_files["data"])]
    assert main([*args, "--sigma", "0"]) == 2
    assert "'sigma'" in capsys.readouterr().err
    out = tmp_path / "partial"
    code = main([*args, "--sigma", "0.25", "--n0", "10", "--n", "100", "--max-queries", "2000", "--out", str(out)])
    assert code == 2
    assert "budget ran out" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["results"]["partial"] and 0 < report["results"]["certified_samples"] < 20
