"""CW-L2's fused Adam step equals the written-out update, and is used only where its kernel applies."""

from __future__ import annotations

import pytest
import torch

from hoplon.attacks import CarliniWagnerL2
from hoplon.attacks.evasion import cw
from hoplon.data import Dataset
from hoplon.targets import TorchTarget

BETA1, BETA2, EPS, LR = 0.9, 0.999, 1e-8, 0.025
ADAM = {"lr": LR, "beta1": BETA1, "beta2": BETA2, "weight_decay": 0.0, "eps": EPS, "amsgrad": False, "maximize": False}


def test_fused_step_matches_the_written_out_update() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn((7, 5), generator=g)
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    fused = cw._fused_adam(w, m, v)
    assert fused is not None
    w_ref, m_ref, v_ref, start = w.clone(), m.clone(), v.clone(), w.clone()
    step = torch.zeros(())
    for t in range(1, 31):
        grad = torch.randn((7, 5), generator=g)
        step += 1
        fused([w], [grad], [m], [v], [], [step], **ADAM)
        m_ref.mul_(BETA1).add_(grad, alpha=1 - BETA1)
        v_ref.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
        w_ref.addcdiv_(m_ref, (v_ref / (1 - BETA2**t)).sqrt_().add_(EPS), value=-LR / (1 - BETA1**t))
    torch.testing.assert_close(w, w_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(v, v_ref, rtol=1e-5, atol=1e-7)
    assert float((w - start).abs().min()) > 0  # every coordinate moved


def test_fused_adam_only_for_contiguous_cpu_floats() -> None:
    w = torch.zeros((2, 3, 4, 4))
    assert cw._fused_adam(w, w.clone(), w.clone()) is not None
    strided = w.contiguous(memory_format=torch.channels_last)
    assert cw._fused_adam(strided, w.clone(), w.clone()) is None
    half = w.to(torch.bfloat16)
    assert cw._fused_adam(half, half.clone(), half.clone()) is None


def test_attack_with_and_without_the_fused_step(
    cancer_target: TorchTarget, cancer_test: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = cancer_test.x[:30], cancer_test.y[:30]
    attack = CarliniWagnerL2(steps=60, binary_search_steps=3)

    def run() -> tuple[torch.Tensor, int]:
        before = cancer_target.counter.queries
        out = attack.run(cancer_target, x, y, eps=1.0, bounds=cancer_test.bounds, rng=torch.Generator())
        return out.x_adv, cancer_target.counter.queries - before

    fused_adv, fused_queries = run()
    monkeypatch.setattr(cw, "_fused_adam", lambda *tensors: None)
    plain_adv, plain_queries = run()
    assert fused_queries == plain_queries
    torch.testing.assert_close(fused_adv, plain_adv, rtol=0, atol=1e-4)
    assert bool((fused_adv != x).any())
