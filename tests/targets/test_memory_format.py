"""TorchTarget's memory layout: channels_last for image models gives the contiguous path's results."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from hoplon.attacks import evaluate
from hoplon.attacks.evasion.ops import input_gradient
from hoplon.attacks.registry import make
from hoplon.core import InputError, ModelLoadError
from hoplon.targets import TorchTarget
from hoplon.targets.types import Bounds


def _tiny_cnn(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    )


class _Viewing(nn.Module):
    """A model that flattens with ``view``, which fails on a channels_last activation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.conv(x).view(x.shape[0], -1))
        return out


def _scripted(module: nn.Module) -> torch.jit.ScriptModule:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    buffer.seek(0)
    loaded: torch.jit.ScriptModule = torch.jit.load(buffer)
    return loaded


def _pair(channels: int, scripted: bool) -> tuple[TorchTarget, TorchTarget]:
    module_a, module_b = _tiny_cnn(channels), _tiny_cnn(channels)
    if scripted:
        module_a, module_b = _scripted(module_a), _scripted(module_b)
    shape = (channels, 8, 8)
    plain = TorchTarget(module_a, input_shape=shape, n_classes=5, memory_format="contiguous")
    fast = TorchTarget(module_b, input_shape=shape, n_classes=5)
    return plain, fast


@pytest.mark.parametrize(("channels", "scripted"), [(3, False), (1, False), (3, True), (1, True)])
def test_channels_last_matches_contiguous(channels: int, scripted: bool) -> None:
    plain, fast = _pair(channels, scripted)
    assert fast.channels_last and not plain.channels_last
    conv_weight = next(p for p in fast.module.parameters() if p.ndim == 4)
    assert conv_weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand((6, channels, 8, 8), generator=torch.Generator().manual_seed(1))
    scores_plain, scores_fast = plain.predict(x), fast.predict(x)
    torch.testing.assert_close(scores_fast, scores_plain, rtol=0, atol=1e-5)
    assert scores_fast.is_contiguous() and scores_fast.shape == (6, 5) and not scores_fast.requires_grad
    assert torch.equal(scores_fast.argmax(1), scores_plain.argmax(1))
    grads = []
    for target in (plain, fast):
        leaf = x.clone().requires_grad_(True)
        logits = target.logits(leaf)
        assert logits.is_contiguous() and logits.shape == (6, 5)
        grads.append(input_gradient(logits[:, 0].sum(), leaf))
    assert grads[1].shape == x.shape
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-5)
    assert float(grads[1].abs().sum()) > 0
    assert fast.counter.queries == plain.counter.queries == 12


def test_flatten_hands_its_gradient_back_channels_last() -> None:
    plain, fast = _pair(1, scripted=False)
    seen: list[tuple[bool, bool]] = []

    def watch(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:  # runs after the target's own hook
        if args[0].requires_grad:
            args[0].register_hook(
                lambda g: seen.append((g.is_contiguous(), g.is_contiguous(memory_format=torch.channels_last)))
            )

    for target in (plain, fast):
        flatten = next(m for m in target.module.modules() if isinstance(m, nn.Flatten))
        flatten.register_forward_pre_hook(watch)
    x = torch.rand((5, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    grads = []
    for target in (plain, fast):
        leaf = x.clone().requires_grad_(True)
        grads.append(input_gradient(target.logits(leaf)[:, 1].sum(), leaf))
    # contiguous model: the gradient at the flatten is plain NCHW; channels_last model: converted back
    assert seen == [(True, False), (False, True)]
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-5)
    with torch.no_grad():  # no gradient, no hook: predictions take the plain path
        fast.predict(x)
    assert len(seen) == 2


def test_evaluate_hands_back_contiguous_adversarials() -> None:
    plain, fast = _pair(3, scripted=False)
    x = torch.rand((10, 3, 8, 8), generator=torch.Generator().manual_seed(2))
    y = plain.predict(x).argmax(1)
    bounds = Bounds.scalar(0.0, 1.0)
    for attack in (
        make("fgsm"),
        make("pgd"),
        make("apgd-ce", steps=10),
        make("cw-l2", steps=20, binary_search_steps=2),
    ):
        outs = [evaluate(attack, t, x, y, eps=[0.05, 0.2], bounds=bounds, seed=0) for t in (plain, fast)]
        for before, after in zip(outs[0].outcomes, outs[1].outcomes, strict=True):
            assert after.x_adv.is_contiguous()
            assert torch.equal(after.is_adv, before.is_adv)
            torch.testing.assert_close(after.x_adv, before.x_adv, rtol=0, atol=1e-5)
            assert after.queries == before.queries


def test_auto_leaves_tabular_models_and_view_models_contiguous() -> None:
    mlp = nn.Sequential(nn.Linear(4, 3))
    assert not TorchTarget(mlp, input_shape=(4,), n_classes=3).channels_last
    viewing = _Viewing()
    target = TorchTarget(viewing, input_shape=(3, 8, 8), n_classes=3)
    assert not target.channels_last
    assert viewing.conv.weight.is_contiguous()
    assert target.predict(torch.rand(4, 3, 8, 8)).shape == (4, 3)


def test_memory_format_fails_closed() -> None:
    with pytest.raises(ModelLoadError, match="cannot run channels_last"):
        TorchTarget(_Viewing(), input_shape=(3, 8, 8), n_classes=3, memory_format="channels_last")
    with pytest.raises(InputError, match="image inputs"):
        TorchTarget(nn.Linear(4, 3), input_shape=(4,), n_classes=3, memory_format="channels_last")
    with pytest.raises(InputError, match="memory_format"):
        TorchTarget(nn.Linear(4, 3), input_shape=(4,), n_classes=3, memory_format="nhwc")  # type: ignore[arg-type]


def test_scripted_sequential_runs_split_at_its_flatten() -> None:
    plain, fast = _pair(1, scripted=True)
    assert fast._halves is not None and plain._halves is None
    head, tail = fast._halves
    assert [c.original_name for _, c in head.named_children()] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert [c.original_name for _, c in tail.named_children()] == ["Flatten", "Linear"]
    x = torch.rand((7, 1, 8, 8), generator=torch.Generator().manual_seed(4))
    grads = []
    for target in (plain, fast):
        leaf = x.clone().requires_grad_(True)
        grads.append(input_gradient(target.logits(leaf)[:, 2].sum(), leaf))
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.predict(x), plain.predict(x), rtol=0, atol=1e-5)
    assert fast.counter.queries == plain.counter.queries == 14


class _Twice(nn.Module):
    """Not a plain Sequential: a child called twice (its TorchScript graph is no chain)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.flat = nn.Flatten()
        self.head = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.flat(self.conv(self.conv(x))))
        return out


class Sequential(nn.Module):  # a user's class that happens to share the name
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1)
        self.b = nn.Flatten()
        self.c = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.c(self.b(self.a(x) + x))
        return out


@pytest.mark.parametrize("module", [_Twice, Sequential])
def test_other_scripted_models_run_whole(module: type[nn.Module]) -> None:
    torch.manual_seed(0)
    scripted = _scripted(module().eval())
    x = torch.rand((3, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = scripted(x)
    target = TorchTarget(scripted, input_shape=(1, 8, 8), n_classes=3)
    assert target.channels_last and target._halves is None
    torch.testing.assert_close(target.predict(x), reference, rtol=0, atol=1e-5)
