"""Perturbation operations: norms, projections, random starts, step directions, losses.

Shared by the evasion attacks, adversarial training (``hoplon.defenses``), the robustness metrics and the
attack contract tests, so public rather than a package-private ``_private.py``.

All functions are batched over the first axis and torch-native.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.attacks.types import Norm
    from hoplon.targets.types import Bounds, Target

Loss = Literal["ce", "margin", "dlr"]

_TINY = 1e-12


@runtime_checkable
class OneStep(Protocol):
    """An attack whose candidate at every ε is ``clip(x + ε·d)`` for one direction ``d`` per sample (FGSM).

    :func:`hoplon.attacks.evaluate` asks for the directions once per sample and reuses them at every ε,
    and takes the clean predictions from the same forward pass.
    """

    def direction(
        self, target: Target, x: torch.Tensor, y: torch.Tensor, rng: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Unit-size ascent directions, the target classes (or None), and the logits at ``x``."""
        ...


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


class BallBox:
    """The projection onto the ε-ball around fixed rows ``x`` and the box, prepared once for an inner loop.

    Same result as :func:`clip_to_ball_and_box`, with fewer tensor operations per call: for L∞ the ball and
    the box intersect in one per-coordinate interval, computed here once, so each projection is one
    ``clamp``; for L2 the ball is shrunk by the same relative 1e-6 and the box is a scalar ``clamp`` where
    it can be. :meth:`keep` follows the rows an attack still works on: for L∞ one gather of the stacked
    interval, with ``x`` gathered only if it is read.
    """

    __slots__ = ("_hi", "_lo", "_lower", "_pair", "_picks", "_root", "_upper", "_x", "bounds", "eps", "norm")

    def __init__(self, x: torch.Tensor, norm: Norm, eps: float, bounds: Bounds) -> None:
        import torch

        self._x: torch.Tensor | None = x
        self._root: torch.Tensor = x
        self._picks: tuple[torch.Tensor, ...] = ()
        self.norm, self.eps, self.bounds = norm, float(eps), bounds
        scalar = bounds.lower.numel() == 1 and bounds.upper.numel() == 1
        self._lo = float(bounds.lower) if scalar else None
        self._hi = float(bounds.upper) if scalar else None
        self._pair: torch.Tensor | None = None
        self._lower: torch.Tensor | None = None
        self._upper: torch.Tensor | None = None
        if norm == "linf":
            # x lies in the box, so each interval [max(x − ε, lo), min(x + ε, hi)] is non-empty.
            lower = torch.minimum(bounds.clip(x - self.eps), x)
            upper = torch.maximum(bounds.clip(x + self.eps), x)
            self._pair = torch.stack((lower, upper))
            self._lower, self._upper = self._pair[0], self._pair[1]

    @property
    def x(self) -> torch.Tensor:
        """The centres of the balls (for L∞ gathered from the original rows on first read after :meth:`keep`)."""
        if self._x is None:
            x = self._root
            for rows in self._picks:
                x = x[rows]
            self._x, self._root, self._picks = x, x, ()
        return self._x

    def keep(self, rows: torch.Tensor) -> BallBox:
        """The same projection for a subset of the rows (a boolean mask or int64 indices)."""
        import torch

        kept = object.__new__(BallBox)
        kept.norm, kept.eps, kept.bounds, kept._lo, kept._hi = self.norm, self.eps, self.bounds, self._lo, self._hi
        if self._pair is not None:
            # The L∞ projection needs only the interval: one gather of lower and upper together.
            pair = self._pair[:, rows] if rows.dtype == torch.bool else self._pair.index_select(1, rows)
            kept._pair, kept._lower, kept._upper = pair, pair[0], pair[1]
            kept._x, kept._root, kept._picks = None, self._root, (*self._picks, rows)
        else:
            kept._pair, kept._lower, kept._upper = None, None, None
            kept._x = self.x[rows]
            kept._root, kept._picks = kept._x, ()
        return kept

    def project(self, point: torch.Tensor) -> torch.Tensor:
        """``point`` (same rows as ``x``) moved onto the ε-ball around ``x`` and into the box."""
        import torch

        if self._lower is not None and self._upper is not None:
            return torch.clamp(point, self._lower, self._upper)
        x = self.x
        delta = point - x
        norms = torch.linalg.vector_norm(delta.flatten(1), dim=1)
        factor = torch.clamp(self.eps * (1.0 - 1e-6) / (norms + _TINY), max=1.0)
        moved = torch.addcmul(x, delta, _expand(factor, delta))
        if self._lo is not None and self._hi is not None:
            return moved.clamp(self._lo, self._hi)
        return self.bounds.clip(moved)


def input_gradient(output: torch.Tensor, x: torch.Tensor, seed: torch.Tensor | None = None) -> torch.Tensor:
    """``∂output/∂x`` for a scalar ``output`` computed from the leaf ``x``, or with ``seed`` (shaped like
    ``output``) the vector-Jacobian product ``seedᵀ ∂output/∂x``: ``torch.autograd.grad(output, x, seed)``, faster.

    ``torch.autograd.grad`` spends about 40 µs per call validating its arguments in Python before it calls the
    autograd engine: ~12 % of a forward and backward pass through a small tabular MLP, paid on every step of
    an iterative attack. The arguments here are fixed (one output, one input, no graph kept), so the engine is
    called directly; torch is pinned to one version (pyproject), and a test checks the result against
    ``torch.autograd.grad``. A torch without that entry point takes the public route.
    """
    import torch

    if not output.requires_grad:
        raise InputError("An input gradient needs an output that depends on the input.")
    if seed is None:
        if output.ndim:
            raise InputError("An input gradient without a seed needs a scalar output.")
        seed = torch.ones_like(output)
    elif seed.shape != output.shape:
        raise InputError(f"The seed has shape {tuple(seed.shape)}; the output has {tuple(output.shape)}.")
    engine = getattr(torch.autograd.graph, "_engine_run_backward", None)
    if engine is None:
        (public,) = torch.autograd.grad((output,), (x,), (seed,))
        return public
    (grad,) = engine((output,), (seed,), False, False, (x,), False, accumulate_grad=False)
    return grad  # type: ignore[no-any-return]


def unit_step(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """:func:`ascent_direction` in fewer operations (one fused norm for L2), for inner loops."""
    import torch

    if norm == "linf":
        return grad.sign()
    return grad / _expand(torch.linalg.vector_norm(grad.flatten(1), dim=1).add_(_TINY), grad)


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


def summed_loss(logits: torch.Tensor, y: torch.Tensor, loss: Loss, y_target: torch.Tensor | None) -> torch.Tensor:
    """The sum over the batch of :func:`per_sample_loss` (one fused op for the untargeted cross-entropy)."""
    if loss == "ce" and y_target is None:
        from torch.nn import functional as F

        return F.cross_entropy(logits, y, reduction="sum")
    return per_sample_loss(logits, y, loss, y_target).sum()


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
    # The gradient of the sum as a vector-Jacobian product seeded with ones: no sum node, forward or backward.
    grad = input_gradient(values, x, torch.ones_like(values))
    return values.detach(), grad, logits.detach()


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
