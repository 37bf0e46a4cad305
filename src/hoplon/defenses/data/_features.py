"""Penultimate-layer features of a torch classifier (the input of its last linear layer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["penultimate_features"]


def penultimate_features(module: nn.Module, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """``(n, d)`` inputs of ``module``'s last ``nn.Linear`` for ``x`` (the representation scanners cluster)."""
    import torch
    from torch import nn

    if isinstance(module, torch.jit.ScriptModule):
        return _scripted_features(module, x, batch_size)
    last = None
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            last = sub
    if last is None:
        raise InputError(
            "Feature-based scanners need a model whose last layer is torch.nn.Linear (to read its inputs); "
            "give a torch model or let the recipe train one."
        )
    captured: list[torch.Tensor] = []

    def hook(_mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].detach().reshape(len(inputs[0]), -1))

    handle = last.register_forward_pre_hook(hook)
    module.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                module(x[i : i + batch_size])
    finally:
        handle.remove()
    return torch.cat(captured).float()


def _scripted_features(module: torch.jit.ScriptModule, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """TorchScript takes no hooks: for a scripted ``Sequential``, run every child but the last ``Linear``."""
    import torch

    children = list(module.children())
    if (
        getattr(module, "original_name", "") != "Sequential"
        or not children
        or (getattr(children[-1], "original_name", "") != "Linear")
    ):
        raise InputError(
            "Feature-based scanners read a TorchScript model only when it is an nn.Sequential ending in a Linear "
            "layer; save the weights (with --arch) or let the recipe train a model."
        )
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            h = x[i : i + batch_size]
            for child in children[:-1]:
                h = child(h)
            out.append(h.reshape(len(h), -1))
    return torch.cat(out).float()
