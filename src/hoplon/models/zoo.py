"""Small, well-behaved reference architectures, and :func:`build` for names and factory paths."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ARCHITECTURES", "build", "digits_cnn", "tabular_mlp"]


def digits_cnn(input_shape: tuple[int, ...] = (1, 8, 8), n_classes: int = 10) -> nn.Module:
    """A two-convolution CNN for 8×8 greyscale digits (about 40k parameters)."""
    from torch import nn

    channels, height, width = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (height // 2) * (width // 2), 64),
        nn.ReLU(),
        nn.Linear(64, n_classes),
    )


def tabular_mlp(input_shape: tuple[int, ...] = (30,), n_classes: int = 2, hidden: int = 64) -> nn.Module:
    """A two-hidden-layer MLP for tabular features."""
    from torch import nn

    (n_features,) = input_shape
    return nn.Sequential(
        nn.Linear(n_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_classes),
    )


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"digits-cnn": digits_cnn, "tabular-mlp": tabular_mlp}


def _import_factory(spec: str) -> Callable[..., nn.Module]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(
            f"An architecture must be one of {', '.join(ARCHITECTURES)} or 'package.module:function'. Got {spec!r}."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"Cannot import the architecture module {module_name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"{module_name!r} has no callable {attr!r}.")
    return factory  # type: ignore[no-any-return]


def build(spec: str, *, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Build a fresh module from a demo name or a ``package.module:function`` factory.

    The factory receives ``input_shape`` and ``n_classes`` if its signature accepts them.
    """
    from torch import nn

    factory = ARCHITECTURES.get(spec) or _import_factory(spec)
    accepted = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in {"input_shape": input_shape, "n_classes": n_classes}.items() if k in accepted}
    module = factory(**kwargs)
    if not isinstance(module, nn.Module):
        raise InputError(f"The architecture {spec!r} returned {type(module).__name__}, not a torch.nn.Module.")
    return module
