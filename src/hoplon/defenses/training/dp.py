"""DP-SGD by a training recipe, with Opacus: ghost clipping where the layers allow, the PRV accountant by default.

hoplon does not re-implement DP-SGD: it builds the recipe's model, checks that Opacus can make every layer
private (naming the layer and offering Opacus's fixer when not), hands the model, the optimiser and a
Poisson-sampled loader to :class:`opacus.PrivacyEngine`, and records the ε actually spent with the
assumptions it rests on (accountant, sampling rate, steps, noise multiplier, clipping norm).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hoplon.recipes import Recipe

__all__ = ["DPConfig", "DPRecord", "dp_epsilon", "privacy_problems", "train_private"]

log = logging.getLogger(__name__)

Accountant = Literal["prv", "rdp", "gdp"]
GradSampleMode = Literal["ghost", "hooks", "functorch"]


@dataclass(frozen=True, kw_only=True)
class DPConfig:
    """How to train privately.

    Args:
        epsilon: the target ε (> 0, finite); ignored when ``noise_multiplier`` is given.
        delta: the target δ, in (0, 1/n) for n training records (checked by :func:`train_private`).
        max_grad_norm: per-sample gradient clipping norm C (> 0); default 1.0.
        accountant: ``prv`` (default; Gopi et al. 2021, tight), ``rdp`` or ``gdp``.
        grad_sample_mode: ``ghost`` (default: ghost clipping for Linear/Embedding layers, fast per-sample
            gradient norms elsewhere), ``hooks`` or ``functorch`` (Opacus's per-sample gradients).
        noise_multiplier: fix σ instead of solving for ``epsilon`` (the ε spent is still reported).
    """

    epsilon: float = 3.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: Accountant = "prv"
    grad_sample_mode: GradSampleMode = "ghost"
    noise_multiplier: float | None = None

    def __post_init__(self) -> None:
        if self.noise_multiplier is None and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise InputError(f"The 'epsilon' parameter of DP training must be a finite float > 0. Got {self.epsilon}.")
        if not 0 < self.delta < 1:
            raise InputError(f"The 'delta' parameter of DP training must be in (0, 1). Got {self.delta}.")
        if not self.max_grad_norm > 0:
            raise InputError(f"The 'max_grad_norm' parameter must be > 0. Got {self.max_grad_norm}.")
        if self.accountant not in ("prv", "rdp", "gdp"):
            raise InputError(f"The 'accountant' parameter must be prv, rdp or gdp. Got {self.accountant!r}.")
        if self.grad_sample_mode not in ("ghost", "hooks", "functorch"):
            raise InputError(
                f"The 'grad_sample_mode' parameter must be ghost, hooks or functorch. Got {self.grad_sample_mode!r}."
            )
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise InputError(f"The 'noise_multiplier' parameter must be > 0. Got {self.noise_multiplier}.")


@dataclass(frozen=True, kw_only=True)
class DPRecord:
    """The training record of a DP-SGD run: the ε spent and every assumption it rests on."""

    epsilon: float
    epsilon_target: float | None
    delta: float
    accountant: str
    noise_multiplier: float
    sample_rate: float
    sampling: str
    steps: int
    epochs: int
    batch_size: int
    n_train: int
    max_grad_norm: float
    grad_sample_mode: str
    ghost_clipped_layers: tuple[str, ...]
    seed: int
    recipe_sha256: str
    train_accuracy: float
    epoch_losses: tuple[float, ...] = ()
    epoch_seconds: tuple[float, ...] = ()
    data_fingerprint: str = ""  # Merkle root over the training records (``hoplon data fingerprint``)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ghost_clipped_layers"] = list(self.ghost_clipped_layers)
        data["epoch_losses"] = list(self.epoch_losses)
        data["epoch_seconds"] = list(self.epoch_seconds)
        return data


@contextmanager
def _quiet_opacus() -> Iterator[None]:
    """Opacus warns about things hoplon decides on purpose (no secure RNG, the accountant's alpha grid)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"opacus(\.|$)")
        warnings.filterwarnings("ignore", message=r".*(secure|Secure) RNG.*")
        warnings.filterwarnings("ignore", message=r".*full backward hook.*")
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.func.*")
        yield


def _require_opacus() -> None:
    import importlib.util

    if importlib.util.find_spec("opacus") is None:
        raise InputError("DP-SGD training needs Opacus: pip install 'hoplon[privacy]' (or opacus==1.6.0).")


def dp_epsilon(
    *, noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: Accountant = "prv"
) -> float:
    """The ε of ``steps`` Poisson-subsampled Gaussian steps, by Opacus's accountant of that name."""
    _require_opacus()
    from opacus.accountants import create_accountant  # type: ignore[import-untyped, import-not-found, unused-ignore]

    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with _quiet_opacus():
        return float(acc.get_epsilon(delta=delta))


def privacy_problems(module: nn.Module) -> list[str]:
    """One line per layer Opacus cannot make private, naming the layer (empty when all is well)."""
    _require_opacus()
    from opacus.validators import ModuleValidator  # type: ignore[import-untyped, import-not-found, unused-ignore]

    problems = []
    for name, sub in module.named_modules():
        validator = ModuleValidator.VALIDATORS.get(type(sub))
        if validator is None or not any(p.requires_grad for p in sub.parameters(recurse=False)):
            continue
        for error in validator(sub):
            problems.append(f"layer '{name or type(sub).__name__}' ({type(sub).__name__}): {error}")
    return problems


def _ghost_layers(module: nn.Module, mode: str) -> tuple[str, ...]:
    if mode != "ghost":
        return ()
    from opacus.grad_sample import grad_sample_module_fast_gradient_clipping as fgc  # type: ignore[import-untyped, import-not-found, unused-ignore]

    samplers = fgc.GradSampleModuleFastGradientClipping.NORM_SAMPLERS
    return tuple(name for name, sub in module.named_modules() if name and type(sub) in samplers)


def train_private(
    recipe: Recipe,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_classes: int,
    config: DPConfig,
    seed: int | None = None,
    fix: bool = False,
) -> tuple[nn.Module, DPRecord]:
    """Train the recipe's model with DP-SGD (Opacus) on ``(x, y)``; return the model and its record.

    Args:
        recipe: the model factory, optimiser, learning rate, epochs and batch size (expected batch size
            under Poisson sampling: ``sample_rate = batch_size / n``).
        x, y: the private training data.
        n_classes: number of classes.
        config: ε, δ, clipping norm, accountant and gradient mode.
        seed: seeds model initialisation, sampling and noise (default: the recipe's seed).
        fix: replace layers Opacus cannot handle (e.g. BatchNorm → GroupNorm) with Opacus's
            ``ModuleValidator.fix`` instead of refusing.

    Raises:
        InputError: δ ≥ 1/n, a layer Opacus cannot make private (named, with the fixer offered).
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hoplon.data.fingerprint import records_root

    _require_opacus()
    from opacus import PrivacyEngine  # type: ignore[import-untyped, import-not-found, unused-ignore]
    from opacus.validators import ModuleValidator

    n = len(x)
    if n == 0 or len(y) != n:
        raise InputError(f"DP training needs as many labels as inputs and at least one row. Got {n}, {len(y)}.")
    if config.delta >= 1.0 / n:
        raise InputError(
            f"The 'delta' of DP training must be below 1/n = {1.0 / n:.3g} for n = {n} training records "
            f"(a larger δ allows leaking whole records). Got {config.delta:g}."
        )
    run_seed = recipe.seed if seed is None else seed
    torch.manual_seed(run_seed)
    module = recipe.build(input_shape=tuple(int(s) for s in x.shape[1:]), n_classes=n_classes)
    module.train()
    problems = privacy_problems(module)
    if problems:
        if not fix:
            raise InputError(
                "Opacus cannot make this model private: "
                + "; ".join(problems)
                + ". Pass --fix-layers (fix=True) to let Opacus's ModuleValidator.fix replace these layers "
                "(e.g. BatchNorm with GroupNorm), or change the model factory."
            )
        with _quiet_opacus():
            module = ModuleValidator.fix(module)
        log.warning("Opacus's fixer replaced layers Opacus cannot make private: %s", "; ".join(problems))
    optimiser = recipe.make_optimiser(module.parameters())
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=min(recipe.batch_size, n),
        shuffle=True,
        generator=torch.Generator().manual_seed(run_seed),
    )
    with _quiet_opacus():
        engine = PrivacyEngine(accountant=config.accountant)
    criterion = torch.nn.CrossEntropyLoss()
    common: dict[str, Any] = {
        "module": module,
        "optimizer": optimiser,
        "data_loader": loader,
        "criterion": criterion,
        "max_grad_norm": config.max_grad_norm,
        "poisson_sampling": True,
        "grad_sample_mode": config.grad_sample_mode,
        "noise_generator": torch.Generator().manual_seed(run_seed + 1),
    }
    with _quiet_opacus():
        if config.noise_multiplier is None:
            made = engine.make_private_with_epsilon(
                target_epsilon=config.epsilon, target_delta=config.delta, epochs=recipe.epochs, **common
            )
        else:
            made = engine.make_private(noise_multiplier=config.noise_multiplier, **common)
    if config.grad_sample_mode == "ghost":
        private, dp_optimiser, dp_criterion, dp_loader = made
    else:
        private, dp_optimiser, dp_loader = made
        dp_criterion = criterion
    losses, seconds = [], []
    steps = 0
    with _quiet_opacus():
        for _ in range(recipe.epochs):
            private.train()
            start = time.perf_counter()
            total, count = 0.0, 0
            for xb, yb in dp_loader:
                if len(xb) == 0:  # Poisson sampling can draw an empty batch; it still counts as a step
                    dp_optimiser.zero_grad()
                    dp_optimiser.step()
                    steps += 1
                    continue
                dp_optimiser.zero_grad()
                loss = dp_criterion(private(xb), yb)
                loss.backward()
                dp_optimiser.step()
                steps += 1
                total += float(loss.detach()) * len(xb)
                count += len(xb)
            seconds.append(time.perf_counter() - start)
            losses.append(total / max(count, 1))
        spent = float(engine.get_epsilon(config.delta))
    # The accountant's own history is the authority on what was composed: (noise multiplier, rate, steps).
    history = list(engine.accountant.history)
    sample_rate = float(history[-1][1]) if history else 1.0 / len(dp_loader)
    accounted_steps = sum(int(h[2]) for h in history)
    if accounted_steps != steps:
        raise RuntimeError(f"Opacus accounted {accounted_steps} steps, but {steps} were taken.")
    with _quiet_opacus():
        close = getattr(private, "_close", None) or getattr(private, "remove_hooks", None)
        if close is not None:
            close()
    _clean(module)
    module.eval()
    from hoplon.models.training import accuracy

    record = DPRecord(
        epsilon=spent,
        epsilon_target=None if config.noise_multiplier is not None else config.epsilon,
        delta=config.delta,
        accountant=config.accountant,
        noise_multiplier=float(dp_optimiser.noise_multiplier),
        sample_rate=sample_rate,
        sampling="poisson",
        steps=steps,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        n_train=n,
        max_grad_norm=config.max_grad_norm,
        grad_sample_mode=config.grad_sample_mode,
        ghost_clipped_layers=_ghost_layers(module, config.grad_sample_mode),
        seed=run_seed,
        recipe_sha256=recipe.digest(),
        train_accuracy=accuracy(module, x, y),
        epoch_losses=tuple(losses),
        epoch_seconds=tuple(seconds),
        data_fingerprint=records_root(x, y),
    )
    return module, record


def _clean(module: nn.Module) -> None:
    """Drop what Opacus attached to the parameters, so the model saves and runs like a plain one."""
    for parameter in module.parameters():
        for attr in ("grad_sample", "_forward_counter", "_norm_sample", "summed_grad"):
            if hasattr(parameter, attr):
                delattr(parameter, attr)
        parameter.grad = None
