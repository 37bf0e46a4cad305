"""DP-SGD through Opacus: the reported ε equals Opacus's accountant, bad input is refused clearly, and an
audit of a DP model stays within what its (ε, δ) allows."""

from __future__ import annotations

import math

import pytest
import torch

from hoplon.core.errors import InputError
from hoplon.recipes import Recipe

pytest.importorskip("opacus")

from hoplon.defenses.training import DPConfig, dp_epsilon, train_private

TABULAR = Recipe(factory="tabular-mlp", args={"hidden": 16}, epochs=2, batch_size=32, lr=0.05, seed=0)


def _tabular(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 30, generator=torch.Generator().manual_seed(0)).clamp(-3, 3)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def test_reported_epsilon_equals_opacus_accountant() -> None:
    """Reference: Opacus's PRVAccountant fed the same (σ, q) step by step, as Opacus's own optimiser hook does."""
    from opacus.accountants import PRVAccountant, RDPAccountant  # type: ignore[import-untyped, import-not-found, unused-ignore]

    x, y = _tabular()
    _, record = train_private(TABULAR, x, y, n_classes=2, config=DPConfig(noise_multiplier=1.1, delta=1e-3))
    assert record.accountant == "prv" and record.sampling == "poisson"
    assert record.sample_rate == pytest.approx(1 / math.ceil(200 / 32))
    assert record.steps == record.epochs * math.ceil(200 / 32)
    reference = PRVAccountant()
    for _ in range(record.steps):
        reference.step(noise_multiplier=1.1, sample_rate=record.sample_rate)
    assert record.epsilon == pytest.approx(reference.get_epsilon(delta=1e-3), abs=1e-6)
    assert dp_epsilon(noise_multiplier=1.1, sample_rate=record.sample_rate, steps=record.steps, delta=1e-3) == (
        pytest.approx(record.epsilon, abs=1e-6)
    )
    rdp = RDPAccountant()
    rdp.history = [(1.1, record.sample_rate, record.steps)]
    assert dp_epsilon(
        noise_multiplier=1.1, sample_rate=record.sample_rate, steps=record.steps, delta=1e-3, accountant="rdp"
    ) == pytest.approx(rdp.get_epsilon(delta=1e-3), abs=1e-6)


def test_target_epsilon_is_met_with_ghost_clipping() -> None:
    x, y = _tabular()
    module, record = train_private(TABULAR, x, y, n_classes=2, config=DPConfig(epsilon=2.0, delta=1e-3))
    assert record.epsilon <= 2.0 + 1e-2
    assert record.ghost_clipped_layers == ("0", "2", "4")
    assert not any(hasattr(p, "grad_sample") for p in module.parameters())
    fixed = DPConfig(noise_multiplier=record.noise_multiplier, delta=1e-3)
    first, _ = train_private(TABULAR, x, y, n_classes=2, config=fixed)
    again, _ = train_private(TABULAR, x, y, n_classes=2, config=fixed)
    torch.testing.assert_close(first(x), again(x), rtol=0, atol=0)  # same seed, same model
    torch.testing.assert_close(first(x), module(x), rtol=0, atol=0)  # solving for σ changes nothing else


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"epsilon": 0.0}, "'epsilon'"),
        ({"epsilon": -1.0}, "'epsilon'"),
        ({"epsilon": math.inf}, "'epsilon'"),
        ({"delta": 1.5}, "'delta'"),
    ],
)
def test_bad_budgets_are_refused(config: dict[str, float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        DPConfig(epsilon=config.get("epsilon", 1.0), delta=config.get("delta", 1e-5))


def test_delta_of_one_over_n_is_refused() -> None:
    x, y = _tabular(100)
    with pytest.raises(InputError, match=r"below 1/n"):
        train_private(TABULAR, x, y, n_classes=2, config=DPConfig(epsilon=1.0, delta=0.01))


def test_a_layer_opacus_cannot_handle_is_named_and_the_fixer_offered() -> None:
    recipe = TABULAR.replace(factory="tests.privacy.factories:with_batchnorm", args={})
    x, y = _tabular()
    with pytest.raises(InputError, match=r"layer '1' \(BatchNorm1d\).*fix"):
        train_private(recipe, x, y, n_classes=2, config=DPConfig(epsilon=3.0, delta=1e-3))
    config = DPConfig(noise_multiplier=1.0, delta=1e-3)
    module, record = train_private(recipe, x, y, n_classes=2, config=config, fix=True)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in module.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in module.modules())
    assert record.epsilon > 0
