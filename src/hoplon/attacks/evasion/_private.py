"""Helpers shared by the evasion attacks: norms, projections, random starts, step directions, losses.

All functions are batched over the first axis and torch-native.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.types import Norm
    from hoplon.targets.types import Bounds, Target

Loss = Literal["ce", "margin", "dlr"]

_TINY = 1e-12


def flat_norm(delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-sample norm of ``delta`` (shape ``(n,)``)."""
    flat = delta.flatten(1)
    if norm == "linf":
        result: torch.Tensor = (
            flat.abs().amax(dim=1) if flat.shape[0] and flat.shape[1] else flat.new_zeros(flat.shape[0])
        )
        return result
    if norm == "l2":
        return flat.pow(2).sum(dim=1).sqrt()
    return flat.abs().sum(dim=1)


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def project(delta: torch.Tensor, norm: Norm, eps: float | torch.Tensor) -> torch.Tensor:
    """Project each sample's perturbation onto the ε-ball of ``norm`` (ε scalar or per sample)."""
    import torch

    eps_t = torch.as_tensor(eps, dtype=delta.dtype, device=delta.device)
    if norm == "linf":
        bound = _expand(eps_t.expand(delta.shape[0]), delta) if eps_t.ndim else eps_t
        return torch.maximum(torch.minimum(delta, bound), -bound)
    if norm == "l2":
        norms = flat_norm(delta, "l2")
        factor = torch.clamp(eps_t / (norms + _TINY), max=1.0)
        return delta * _expand(factor, delta)
    raise InputError(f"Projection onto the {norm} ball is not supported.")


def clip_to_ball_and_box(x: torch.Tensor, x_adv: torch.Tensor, norm: Norm, eps: float, bounds: Bounds) -> torch.Tensor:
    """The framework's projection: onto the ε-ball around ``x``, then into the box.

    Clipping coordinates into a box that contains ``x`` only moves each coordinate towards ``x``, so the
    result stays in the ball. The L2 ball is shrunk by a relative 1e-6 so that float rounding of
    ``(x + δ) − x`` cannot push ``‖δ‖`` past ε.
    """
    if norm == "linf":
        return bounds.clip(x + (x_adv - x).clamp(-eps, eps))
    return bounds.clip(x + project(x_adv - x, norm, eps * (1.0 - 1e-6)))


def random_start(x: torch.Tensor, norm: Norm, eps: float, bounds: Bounds, rng: torch.Generator) -> torch.Tensor:
    """A uniform point of the ε-ball around ``x`` (L∞: uniform cube; L2: uniform in the ball), in the box."""
    import torch

    if norm == "linf":
        noise = (torch.rand(x.shape, generator=rng, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    else:
        direction = torch.randn(x.shape, generator=rng, device=x.device, dtype=x.dtype)
        direction = direction / (_expand(flat_norm(direction, "l2"), x) + _TINY)
        d = x[0].numel()
        radius = torch.rand(x.shape[0], generator=rng, device=x.device, dtype=x.dtype) ** (1.0 / d) * eps
        noise = direction * _expand(radius, x)
    return bounds.clip(x + noise)


def ascent_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The steepest-ascent direction of unit ``norm``-size: sign for L∞, normalised gradient for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / (_expand(flat_norm(grad, "l2"), grad) + _TINY)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{i≠y} z_i − z_y`` per sample: positive exactly when the sample is misclassified."""
    import torch

    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.clone()
    others.scatter_(1, y[:, None], -torch.inf)
    return others.amax(dim=1) - true


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020), untargeted, to be maximised; needs ≥ 3 classes."""
    ordered = logits.sort(dim=1).values
    return margin_loss(logits, y) / (ordered[:, -1] - ordered[:, -3] + _TINY)


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce & Hein 2020), to be maximised; needs ≥ 4 classes."""
    ordered = logits.sort(dim=1).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    wanted = logits.gather(1, y_target[:, None]).squeeze(1)
    return -(true - wanted) / (ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + _TINY)


def per_sample_loss(
    logits: torch.Tensor, y: torch.Tensor, loss: Loss, y_target: torch.Tensor | None = None
) -> torch.Tensor:
    """The loss each attack ascends, per sample. Targeted: drive towards ``y_target``."""
    from torch.nn import functional as F

    if y_target is not None:
        if loss == "ce":
            return -F.cross_entropy(logits, y_target, reduction="none")
        if loss == "margin":
            return -margin_loss(logits, y_target)
        return dlr_targeted_loss(logits, y, y_target)
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if loss == "margin":
        return margin_loss(logits, y)
    return dlr_loss(logits, y)


def is_fooled(logits: torch.Tensor, y: torch.Tensor, y_target: torch.Tensor | None) -> torch.Tensor:
    pred = logits.argmax(dim=1)
    return pred == y_target if y_target is not None else pred != y


def loss_and_grad(
    target: Target, x: torch.Tensor, y: torch.Tensor, loss: Loss, y_target: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward and backward pass: per-sample loss, its input gradient, and the logits."""
    import torch

    x = x.detach().requires_grad_(True)
    logits = target.logits(x)  # type: ignore[attr-defined]
    values = per_sample_loss(logits, y, loss, y_target)
    (grad,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), grad.detach(), logits.detach()


def random_target_classes(y: torch.Tensor, n_classes: int, rng: torch.Generator) -> torch.Tensor:
    """A uniformly random class other than the true one, per sample."""
    import torch

    shift = torch.randint(1, n_classes, y.shape, generator=rng, device=y.device)
    return (y + shift) % n_classes


def check_eps(name: str, eps: float) -> None:
    if not eps > 0:
        raise InputError(f"The 'eps' parameter of {name} must be a float > 0. Got {eps}.")


def check_loss_classes(name: str, loss: Loss, n_classes: int, *, targeted: bool) -> None:
    need = 4 if (loss == "dlr" and targeted) else 3 if loss == "dlr" else 2
    if n_classes < need:
        raise InputError(
            f"{name} with the {'targeted ' if targeted else ''}{loss} loss needs at least {need} classes; "
            f"the model has {n_classes}. Use loss='ce' or loss='margin'."
        )
