"""`Recipe`: how a model is trained, read from TOML into a frozen, validated dataclass.

A recipe is how hoplon trains shadow, reference and private models the same way the user trained theirs.
Its :meth:`Recipe.digest` (a SHA-256 over the canonical JSON of its fields) keys the model cache.

The TOML layout::

    [model]
    factory = "tabular-mlp"          # a demo architecture, or "package.module:function"
    args = { hidden = 128 }          # optional keyword arguments for the factory

    [training]
    optimiser = "adam"               # adam, adamw or sgd
    lr = 0.003
    weight_decay = 0.0
    momentum = 0.0                   # sgd only
    epochs = 30
    batch_size = 64
    seed = 0
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ArgValue", "Optimiser", "Recipe", "load_recipe", "resolve_factory"]

Optimiser = Literal["adam", "adamw", "sgd"]
ArgValue = int | float | str | bool
OPTIMISERS: tuple[Optimiser, ...] = ("adam", "adamw", "sgd")
_MODEL_KEYS = frozenset({"factory", "args"})
_TRAINING_KEYS = frozenset({"optimiser", "lr", "weight_decay", "momentum", "epochs", "batch_size", "seed"})


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """Return the model factory named by ``spec``: a demo architecture or ``package.module:function``."""
    from hoplon.models import ARCHITECTURES

    if spec in ARCHITECTURES:
        return ARCHITECTURES[spec]
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(
            f"The model factory of a recipe must be one of {', '.join(ARCHITECTURES)} or 'package.module:function'. "
            f"Got {spec!r}."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"The recipe's model factory {spec!r} does not import: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"The recipe's model factory {spec!r}: {module_name!r} has no callable {attr!r}.")
    return cast("Callable[..., nn.Module]", factory)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A training recipe: model factory, optimiser, epochs, batch size and seed.

    Args:
        factory: a demo architecture (``digits-cnn``, ``tabular-mlp``) or ``package.module:function``; the
            factory receives ``input_shape`` and ``n_classes`` when its signature accepts them, plus ``args``.
        args: extra keyword arguments for the factory (TOML scalars).
        optimiser: ``adam`` (default), ``adamw`` or ``sgd``.
        lr: learning rate, > 0.
        weight_decay: L2 penalty, >= 0.
        momentum: SGD momentum in [0, 1).
        epochs: passes over the data, >= 1.
        batch_size: rows per step, >= 1.
        seed: the default seed of every run of this recipe.
    """

    factory: str
    args: Mapping[str, ArgValue] = field(default_factory=dict)
    optimiser: Optimiser = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.factory, str) or not self.factory:
            raise InputError(f"The 'factory' of a recipe must be a non-empty string. Got {self.factory!r}.")
        if self.optimiser not in OPTIMISERS:
            raise InputError(
                f"The 'optimiser' of a recipe must be one of {', '.join(OPTIMISERS)}. Got {self.optimiser!r}."
            )
        checks: tuple[tuple[str, object, bool, str], ...] = (
            ("lr", self.lr, _number(self.lr) and self.lr > 0, "a float > 0"),
            ("weight_decay", self.weight_decay, _number(self.weight_decay) and self.weight_decay >= 0, "a float >= 0"),
            ("momentum", self.momentum, _number(self.momentum) and 0 <= self.momentum < 1, "a float in [0, 1)"),
            ("epochs", self.epochs, _integer(self.epochs) and self.epochs >= 1, "an int >= 1"),
            ("batch_size", self.batch_size, _integer(self.batch_size) and self.batch_size >= 1, "an int >= 1"),
            ("seed", self.seed, _integer(self.seed) and self.seed >= 0, "an int >= 0"),
        )
        for name, value, ok, what in checks:
            if not ok:
                raise InputError(f"The '{name}' parameter of a recipe must be {what}. Got {value!r}.")
        for key, value in self.args.items():
            if not isinstance(value, int | float | str | bool):
                raise InputError(f"Recipe model argument {key!r} must be a number, string or bool. Got {value!r}.")
        object.__setattr__(self, "args", dict(sorted(self.args.items())))
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        object.__setattr__(self, "momentum", float(self.momentum))

    def __hash__(self) -> int:
        return hash(self.digest())

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "recipe") -> Recipe:
        """Build a recipe from the TOML layout (``[model]`` and ``[training]`` tables)."""
        unknown = set(data) - {"model", "training"}
        if unknown:
            raise InputError(
                f"{source}: unknown table(s) {', '.join(sorted(unknown))}; expected [model] and [training]."
            )
        model = data.get("model")
        if not isinstance(model, Mapping) or "factory" not in model:
            raise InputError(f"{source}: a recipe needs a [model] table with a 'factory' key.")
        training = data.get("training", {})
        if not isinstance(training, Mapping):
            raise InputError(f"{source}: [training] must be a table.")
        for table, keys, allowed in (("model", model, _MODEL_KEYS), ("training", training, _TRAINING_KEYS)):
            extra = set(keys) - allowed
            if extra:
                raise InputError(
                    f"{source}: unknown key(s) {', '.join(sorted(extra))} in [{table}]; "
                    f"allowed: {', '.join(sorted(allowed))}."
                )
        args = model.get("args", {})
        if not isinstance(args, Mapping):
            raise InputError(f"{source}: [model].args must be a table.")
        return cls(factory=str(model["factory"]), args=dict(args), **dict(training))

    def to_mapping(self) -> dict[str, Any]:
        """The TOML layout as nested dicts (inverse of :meth:`from_mapping`)."""
        training = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _MODEL_KEYS}
        return {"model": {"factory": self.factory, "args": dict(self.args)}, "training": training}

    def to_toml(self) -> str:
        """Serialise as TOML (the same layout :func:`load_recipe` reads)."""
        lines = ["[model]", f"factory = {json.dumps(self.factory)}"]
        if self.args:
            inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in self.args.items())
            lines.append(f"args = {{ {inner} }}")
        lines += ["", "[training]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in self.to_mapping()["training"].items()]
        return "\n".join(lines) + "\n"

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the recipe (what the model cache is keyed by)."""
        text = json.dumps(self.to_mapping(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def check_factory(self) -> None:
        """Raise :class:`InputError` now if the factory does not import."""
        resolve_factory(self.factory)

    def build(self, *, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        """A fresh, untrained model from the factory."""
        from torch import nn

        factory = resolve_factory(self.factory)
        try:
            accepted = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            accepted = {}  # type: ignore[assignment]
        kwargs: dict[str, Any] = {
            k: v for k, v in {"input_shape": input_shape, "n_classes": n_classes}.items() if k in accepted
        }
        kwargs.update(self.args)
        try:
            module = factory(**kwargs)
        except TypeError as exc:
            raise InputError(f"The recipe's model factory {self.factory!r} rejected its arguments: {exc}") from None
        if not isinstance(module, nn.Module):
            raise InputError(
                f"The model factory {self.factory!r} returned {type(module).__name__}, not a torch.nn.Module."
            )
        return module

    def make_optimiser(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        import torch

        if self.optimiser == "sgd":
            return torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.optimiser == "adamw":
            return torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.Adam(parameters, lr=self.lr, weight_decay=self.weight_decay)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe TOML file; the model factory must import."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"Cannot read the recipe {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"The recipe {path} is not valid TOML: {exc}") from None
    try:
        recipe = Recipe.from_mapping(data, source=str(path))
    except TypeError as exc:
        raise InputError(f"{path}: {exc}") from None
    recipe.check_factory()
    return recipe


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))
