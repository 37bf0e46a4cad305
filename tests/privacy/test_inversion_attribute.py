"""Model inversion (MI-Face) and attribute inference against oracles that know the answer."""

from __future__ import annotations

import pytest
import torch

from hoplon.attacks.privacy import AttributeInference, MIFace
from hoplon.core.errors import InputError
from hoplon.metrics import reconstruction_similarity
from hoplon.recipes import Recipe, train
from hoplon.targets import Bounds, SklearnTarget, TorchTarget

from .conftest import Splits


def test_mi_face_reconstructs_recognisable_class_representatives(splits: Splits, overfit_target: TorchTarget) -> None:
    classes = list(range(10))
    result = MIFace(steps=150).run(overfit_target, classes=classes, bounds=splits.members.bounds)
    assert result.reconstructions.shape == (10, 1, 8, 8)
    assert bool(splits.members.bounds.contains(result.reconstructions).all())
    assert bool((result.confidence > 0.9).all())
    means = torch.stack([splits.members.x[splits.members.y == c].mean(0) for c in classes])
    similarity = reconstruction_similarity(result.reconstructions, means)
    # Chance is 10 %: a reconstruction is nearest its own class mean far more often than that.
    assert similarity["identification_rate"] >= 0.5, similarity
    assert similarity["mean_gap"] > 0.05


def test_mi_face_needs_gradients(splits: Splits) -> None:
    from sklearn.linear_model import LogisticRegression

    flat = splits.members.x.reshape(splits.members.n, -1).numpy()
    target = SklearnTarget(LogisticRegression(max_iter=200).fit(flat, splits.members.y.numpy()))
    with pytest.raises(InputError, match="gradients"):
        MIFace().run(target, classes=[0], bounds=Bounds.scalar(0, 1))


def _leaky_tabular(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature 0 decides the label; the other features are noise: the model's confidence reveals feature 0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(400, 6, generator=g).clamp(-3, 3)
    return x, (x[:, 0] > 0).long()


def test_attribute_inference_beats_the_marginal_baseline() -> None:
    x, y = _leaky_tabular()
    recipe = Recipe(factory="tabular-mlp", args={"hidden": 16}, epochs=20, batch_size=32, lr=1e-2)
    module, _ = train(recipe, x[:200], y[:200], n_classes=2, seed=0)
    target = TorchTarget(module, input_shape=(6,), n_classes=2)
    leaky = AttributeInference(feature=0, n_bins=2).run(target, x[:200], y[:200], prior=x[200:])
    # Oracle: with two bins split at the median (~0), the label gives the bin away; the marginal gives 50 %.
    assert leaky.accuracy >= 0.9
    assert leaky.baseline_accuracy == pytest.approx(0.5, abs=0.1)
    assert leaky.advantage >= 0.35
    noise = AttributeInference(feature=3, n_bins=2).run(target, x[:200], y[:200], prior=x[200:])
    assert abs(noise.advantage) < 0.15  # a feature the model ignores cannot be recovered from it


def test_attribute_inference_refuses_images(splits: Splits, overfit_target: TorchTarget) -> None:
    with pytest.raises(InputError, match="tabular"):
        AttributeInference(feature=0).run(overfit_target, splits.x[:4], splits.y[:4], prior=splits.x)
