"""Adversarial training: PGD-AT (Madry et al. 2018), TRADES (Zhang et al. 2019) and Gaussian noise augmentation.

One loop serves the three recipes; only the per-batch loss differs. The inner attack is a bare batched PGD on
the module (no target, no query counting), so an epoch costs what a hand-written torch PGD-AT loop costs.
Every run returns the trained module and an :class:`AdversarialRecord` (configuration, seed, per-epoch clean
and robust accuracy, data fingerprint, timing), which the CLI writes as JSON beside the TorchScript file.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hoplon.attacks.evasion.ops import ascent_direction, clip_to_ball_and_box, random_start
from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hoplon.attacks.types import Norm
    from hoplon.targets.types import Bounds

__all__ = ["AdversarialConfig", "AdversarialRecord", "Method", "adversarial", "fingerprint", "pgd_examples"]

log = logging.getLogger(__name__)

Method = Literal["pgd-at", "trades", "gaussian"]
METHODS: tuple[Method, ...] = ("pgd-at", "trades", "gaussian")


@dataclass(frozen=True, kw_only=True)
class AdversarialConfig:
    """How to harden a model by training.

    Args:
        method: ``pgd-at`` (train on PGD examples; Madry et al.), ``trades`` (clean loss + β·KL to the
            worst-case neighbour; Zhang et al.) or ``gaussian`` (train on ``x + N(0, σ²)``, so that a
            randomized-smoothing certificate is useful; Cohen et al.).
        eps: the threat model's radius (> 0), in input units; ignored by ``gaussian``.
        norm: ``linf`` (default) or ``l2``.
        steps: PGD steps of the inner attack, ≥ 1 (default 10).
        rel_stepsize: inner step as a fraction of ε, in (0, 1] (default 0.25).
        beta: TRADES's trade-off weight, > 0 (default 6.0, the paper's).
        sigma: Gaussian noise level for ``gaussian``, > 0 (default 0.25).
        epochs: passes over the data, ≥ 1 (default 30).
        batch_size: rows per step, ≥ 1 (default 128).
        lr: Adam learning rate, > 0 (default 3e-3).
        weight_decay: L2 penalty, ≥ 0.
        warmup_epochs: ε (or σ) grows linearly from 0 over these first epochs (default 0); helps small models.
        eval_samples: samples on which each epoch's clean and robust accuracy are measured (default 200).
        eval_steps: PGD steps of the per-epoch robust-accuracy check (default 20).
        seed: every random choice derives from it.
    """

    method: Method = "pgd-at"
    eps: float = 0.1
    norm: Norm = "linf"
    steps: int = 10
    rel_stepsize: float = 0.25
    beta: float = 6.0
    sigma: float = 0.25
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    eval_samples: int = 200
    eval_steps: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"The 'method' parameter must be one of {', '.join(METHODS)}. Got {self.method!r}.")
        if self.norm not in ("linf", "l2"):
            raise InputError(f"The 'norm' parameter must be linf or l2. Got {self.norm!r}.")
        checks: tuple[tuple[str, float, bool, str], ...] = (
            ("eps", self.eps, _finite(self.eps) and self.eps > 0, "a float > 0"),
            ("sigma", self.sigma, _finite(self.sigma) and self.sigma > 0, "a float > 0"),
            ("beta", self.beta, _finite(self.beta) and self.beta > 0, "a float > 0"),
            ("rel_stepsize", self.rel_stepsize, 0 < self.rel_stepsize <= 1, "in (0, 1]"),
            ("lr", self.lr, _finite(self.lr) and self.lr > 0, "a float > 0"),
            ("weight_decay", self.weight_decay, _finite(self.weight_decay) and self.weight_decay >= 0, "a float >= 0"),
            ("steps", self.steps, self.steps >= 1, "an int >= 1"),
            ("epochs", self.epochs, self.epochs >= 1, "an int >= 1"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "an int >= 1"),
            ("warmup_epochs", self.warmup_epochs, self.warmup_epochs >= 0, "an int >= 0"),
            ("eval_samples", self.eval_samples, self.eval_samples >= 0, "an int >= 0"),
            ("eval_steps", self.eval_steps, self.eval_steps >= 1, "an int >= 1"),
        )
        for name, value, ok, what in checks:
            if not ok:
                raise InputError(f"The '{name}' parameter of adversarial training must be {what}. Got {value}.")


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdversarialRecord:
    """What a hardening run did: configuration, seed, data fingerprint, per-epoch figures and timing."""

    config: dict[str, Any]
    seed: int
    data_fingerprint: str
    n_train: int
    eval_split: str
    epochs: list[dict[str, float]] = field(default_factory=list)
    train_s: float = 0.0

    @property
    def epochs_per_s(self) -> float:
        return len(self.epochs) / self.train_s if self.train_s > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["schema"] = "hoplon.training/v1"
        out["recipe"] = "adversarial"
        out["epochs_per_s"] = self.epochs_per_s
        return out


def fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """The training data's provenance id: the Merkle root over its records (as :meth:`Dataset.fingerprint`)."""
    from hoplon.data.fingerprint import records_root

    return records_root(x, y)


def pgd_examples(
    module: nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    eps: float,
    norm: Norm,
    steps: int,
    step: float,
    bounds: Bounds,
    start: torch.Tensor,
) -> torch.Tensor:
    """Bare PGD ascending ``loss_fn(logits)`` (a scalar) from ``start``, projected on the ball and the box."""
    import torch

    x_adv = start.detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(module(x_adv)), x_adv)
        with torch.no_grad():
            moved = x_adv + step * ascent_direction(grad, norm)
            x_adv = clip_to_ball_and_box(x, moved, norm, eps, bounds).detach()
    return x_adv


def _accuracies(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, config: AdversarialConfig, bounds: Bounds
) -> tuple[float, float]:
    """Clean accuracy and PGD robust accuracy (at ``config.eps``) on ``(x, y)``."""
    import torch
    from torch.nn import functional as F

    if len(x) == 0:
        return math.nan, math.nan
    module.eval()
    with torch.no_grad():
        clean = float((module(x).argmax(1) == y).float().mean())
    if config.method == "gaussian":
        return clean, math.nan
    rng = torch.Generator().manual_seed(config.seed + 1)
    start = random_start(x, config.norm, config.eps, bounds, rng)
    x_adv = pgd_examples(
        module,
        x,
        lambda logits: F.cross_entropy(logits, y),
        eps=config.eps,
        norm=config.norm,
        steps=config.eval_steps,
        step=config.eps * 2.5 / config.eval_steps,
        bounds=bounds,
        start=start,
    )
    with torch.no_grad():
        robust = float((module(x_adv).argmax(1) == y).float().mean())
    return clean, robust


def adversarial(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bounds: Bounds,
    config: AdversarialConfig | None = None,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> tuple[nn.Module, AdversarialRecord]:
    """Harden ``module`` by adversarial (or noise-augmented) training, in place; return it and its record.

    Args:
        module: a classifier returning ``(batch, n_classes)`` logits, with trainable parameters.
        x: ``(n, *shape)`` float32 training inputs inside ``bounds``; y: ``(n,)`` int64 labels.
        bounds: the input box; training examples never leave it.
        config: the recipe (:class:`AdversarialConfig`; PGD-AT at L∞ ε = 0.1 by default).
        x_val, y_val: held-out data for the per-epoch figures; without them a seeded subset of the
            training data is used (recorded as ``eval_split``).
        progress: called after each epoch with that epoch's figures.

    Returns:
        ``(module, record)``. The module is left in eval mode.

    Raises:
        InputError: the module has no trainable parameters, or the data does not fit it.

    Example:
        >>> from hoplon.defenses.training import AdversarialConfig, adversarial
        >>> model, record = adversarial(model, x, y, bounds=data.bounds,
        ...                             config=AdversarialConfig(method="trades", eps=0.1))  # doctest: +SKIP
    """
    import torch

    config = config or AdversarialConfig()
    params = [p for p in module.parameters() if p.is_floating_point()]
    if not params:
        raise InputError(
            "The model has no parameters to train; adversarial training needs a model defined in Python "
            "(a demo architecture or package.module:factory), or a TorchScript file that kept its parameters."
        )
    if len(x) == 0 or len(x) != len(y):
        raise InputError(f"Training needs as many labels as inputs (got {len(x)} inputs, {len(y)} labels).")
    if not bool(bounds.contains(x).all()):
        raise InputError("Some training inputs lie outside the declared bounds.")
    for p in params:
        p.requires_grad_(True)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if x_val is not None and y_val is not None:
        ex, ey, split = x_val[: config.eval_samples], y_val[: config.eval_samples], "validation"
    else:
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(config.seed + 2))[: config.eval_samples]
        ex, ey, split = x[pick], y[pick], "train-subset"
    try:
        with torch.no_grad():
            out = module(x[:2])
    except RuntimeError as exc:
        raise InputError(f"The model does not accept the training inputs: {str(exc).splitlines()[0]}") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or int(y.max()) >= out.shape[1]:
        raise InputError("The model must return (batch, n_classes) logits covering every label of the data.")
    optimiser = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    record = AdversarialRecord(
        config=asdict(config),
        seed=config.seed,
        data_fingerprint=fingerprint(x, y),
        n_train=len(x),
        eval_split=split,
    )
    step_fn = {"pgd-at": _pgd_at_loss, "trades": _trades_loss, "gaussian": _gaussian_loss}[config.method]
    n = len(x)
    train_s = 0.0
    for epoch in range(config.epochs):
        ramp = min(1.0, (epoch + 1) / config.warmup_epochs) if config.warmup_epochs else 1.0
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for i in range(0, n, config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = step_fn(module, x[idx], y[idx], config, ramp, bounds, generator)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        train_s += time.perf_counter() - t0
        clean, robust = _accuracies(module, ex, ey, config, bounds)
        figures = {"epoch": float(epoch + 1), "loss": total / n, "clean_accuracy": clean, "robust_accuracy": robust}
        record.epochs.append(figures)
        log.info("epoch %d: loss %.4f, clean %.3f, robust %.3f", epoch + 1, total / n, clean, robust)
        if progress is not None:
            progress(figures)
    module.eval()
    for p in params:
        p.requires_grad_(False)
    object.__setattr__(record, "train_s", train_s)
    return module, record


def _pgd_at_loss(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: AdversarialConfig,
    ramp: float,
    bounds: Bounds,
    rng: torch.Generator,
) -> torch.Tensor:
    from torch.nn import functional as F

    eps = config.eps * ramp
    module.eval()
    start = random_start(x, config.norm, eps, bounds, rng)
    x_adv = pgd_examples(
        module,
        x,
        lambda logits: F.cross_entropy(logits, y),
        eps=eps,
        norm=config.norm,
        steps=config.steps,
        step=eps * config.rel_stepsize,
        bounds=bounds,
        start=start,
    )
    module.train()
    return F.cross_entropy(module(x_adv), y)


def _trades_loss(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: AdversarialConfig,
    ramp: float,
    bounds: Bounds,
    rng: torch.Generator,
) -> torch.Tensor:
    import torch
    from torch.nn import functional as F

    eps = config.eps * ramp
    module.eval()
    with torch.no_grad():
        p_clean = F.softmax(module(x), dim=1)
    # TRADES starts from a tiny Gaussian perturbation and ascends KL(f(x) ‖ f(x')).
    start = bounds.clip(x + 0.001 * torch.randn(x.shape, generator=rng, dtype=x.dtype))
    x_adv = pgd_examples(
        module,
        x,
        lambda logits: F.kl_div(F.log_softmax(logits, dim=1), p_clean, reduction="sum"),
        eps=eps,
        norm=config.norm,
        steps=config.steps,
        step=eps * config.rel_stepsize,
        bounds=bounds,
        start=start,
    )
    module.train()
    logits = module(x)
    robust = F.kl_div(F.log_softmax(module(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return F.cross_entropy(logits, y) + config.beta * robust


def _gaussian_loss(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: AdversarialConfig,
    ramp: float,
    bounds: Bounds,
    rng: torch.Generator,
) -> torch.Tensor:
    import torch
    from torch.nn import functional as F

    module.train()
    # No clipping to the box: the smoothed classifier of Cohen et al. adds unclipped noise, and so must training.
    noisy = x + config.sigma * ramp * torch.randn(x.shape, generator=rng, dtype=x.dtype)
    return F.cross_entropy(module(noisy), y)
