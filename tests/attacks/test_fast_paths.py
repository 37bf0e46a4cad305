"""The attacks' CPU shortcuts give the results of the plain computations they replace."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hoplon.attacks import FGSM, CarliniWagnerL2, evaluate
from hoplon.attacks.evasion import cw as cw_module
from hoplon.attacks.evasion.ops import BallBox, ascent_direction, clip_to_ball_and_box, flat_norm, unit_step
from hoplon.data import Dataset
from hoplon.targets import Bounds, TorchTarget


@settings(max_examples=25, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.01, 3.0),
    per_feature=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_ball_box_projection_matches_the_framework_projection(
    norm: str, eps: float, per_feature: bool, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    bounds = (
        Bounds(torch.linspace(-2.0, -0.5, 6), torch.linspace(0.5, 2.0, 6)) if per_feature else Bounds.scalar(-1.0, 1.0)
    )
    x = bounds.clip(torch.randn(9, 6, generator=g))
    point = x + 3 * torch.randn(9, 6, generator=g)
    ball = BallBox(x, norm, eps, bounds)  # type: ignore[arg-type]
    projected = ball.project(point)
    expected = clip_to_ball_and_box(x, point, norm, eps, bounds)  # type: ignore[arg-type]
    assert torch.allclose(projected, expected, atol=1e-5)
    assert bool((flat_norm(projected - x, norm) <= eps + 1e-6).all())  # type: ignore[arg-type]
    assert bool(bounds.contains(projected, tol=1e-6).all())
    rows = torch.tensor([0, 4, 8])
    assert torch.allclose(ball.keep(rows).project(point[rows]), expected[rows], atol=1e-5)
    assert torch.allclose(unit_step(point, norm), ascent_direction(point, norm), atol=1e-6)  # type: ignore[arg-type]


def test_fgsm_sweep_reuses_one_gradient_per_sample(digits_target: TorchTarget, digits_test: Dataset) -> None:
    x, y, bounds = digits_test.x[:60], digits_test.y[:60], digits_test.bounds
    eps = [0.05, 0.1, 0.2]
    sweep = evaluate(FGSM(), digits_target, x, y, eps=eps, bounds=bounds)
    singles = [evaluate(FGSM(), digits_target, x, y, eps=[e], bounds=bounds) for e in eps]
    clean = digits_target.predict(x).argmax(1) == y
    assert torch.equal(sweep.clean_correct, clean)
    for outcome, single in zip(sweep.outcomes, singles, strict=True):
        assert torch.equal(single.clean_correct, clean)
        # The sweep's running best fools at least what the attack alone fools at that ε.
        assert bool((single.outcomes[0].is_adv <= outcome.is_adv).all())
    # At the first ε both ran the same candidates.
    assert torch.equal(sweep.outcomes[0].is_adv, singles[0].outcomes[0].is_adv)
    assert torch.allclose(sweep.outcomes[0].x_adv, singles[0].outcomes[0].x_adv, atol=1e-6)
    # One gradient row per sample (which also gives the clean predictions) plus one re-check per attacked row.
    first = sweep.outcomes[0]
    assert first.queries == len(x) + int(clean.sum())
    assert sum(o.queries for o in sweep.outcomes) < sum(s.outcomes[0].queries for s in singles)


def test_targeted_fgsm_keeps_its_target_classes_across_epsilons(
    digits_target: TorchTarget, digits_test: Dataset
) -> None:
    x, y, bounds = digits_test.x[:40], digits_test.y[:40], digits_test.bounds
    runs = [evaluate(FGSM(targeted=True), digits_target, x, y, eps=[0.1, 0.3], bounds=bounds, seed=5) for _ in range(2)]
    assert torch.equal(runs[0].outcomes[1].x_adv, runs[1].outcomes[1].x_adv)
    assert bool((runs[0].outcomes[0].is_adv <= runs[0].outcomes[1].is_adv).all())


def test_cw_search_exit_keeps_its_strength(
    cancer_target: TorchTarget, cancer_test: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ending a sample's binary search once it stops improving costs rows, not strength (median L2 within 2 %)."""
    x, y, bounds = cancer_test.x[:40], cancer_test.y[:40], cancer_test.bounds
    attack = CarliniWagnerL2(steps=60, binary_search_steps=6, learning_rate=0.05)

    def run() -> tuple[torch.Tensor, int]:
        before = cancer_target.counter.queries
        out = attack.run(cancer_target, x, y, eps=1.0, bounds=bounds, rng=torch.Generator()).x_adv
        return out, cancer_target.counter.queries - before

    quick, quick_rows = run()
    monkeypatch.setattr(cw_module, "_STALE_STEPS", attack.binary_search_steps + 1)  # the search never ends early
    full, full_rows = run()
    fooled_quick = cancer_target.predict(quick).argmax(1) != y
    fooled_full = cancer_target.predict(full).argmax(1) != y
    assert torch.equal(fooled_quick, fooled_full)
    l2_quick, l2_full = flat_norm(quick - x, "l2")[fooled_full], flat_norm(full - x, "l2")[fooled_full]
    assert float(l2_quick.median()) <= 1.02 * float(l2_full.median())
    assert quick_rows < full_rows
