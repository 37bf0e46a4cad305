"""Contract checks over attacks: metadata, documentation, and the framework's invariants."""

from __future__ import annotations

import contextlib
import inspect
from typing import TYPE_CHECKING

from hoplon.attacks.types import Attack
from hoplon.core.errors import InputError
from hoplon.core.taxonomy import validate_ids
from hoplon.targets.types import Capability

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Bounds, Target

__all__ = ["check_attack", "check_attack_metadata"]

_SECTIONS = ("References:", "Args:", "Example")


def _fail(attack: object, message: str) -> None:
    raise AssertionError(f"{type(attack).__name__}: {message}")


def check_attack_metadata(attack: Attack) -> None:
    """Metadata and documentation every attack must carry (raises ``AssertionError``)."""
    if not isinstance(attack, Attack):
        _fail(attack, "does not implement the Attack protocol (info, norm, run)")
    info = attack.info
    if not info.name or not info.title:
        _fail(attack, "info needs a name and a title")
    if len(info.citation) < 20 or not info.url.startswith(("https://arxiv.org/", "https://doi.org/", "https://")):
        _fail(attack, "info needs a citation and an arXiv or DOI link")
    if len(info.threat_model) < 20:
        _fail(attack, "info.threat_model must say what the attacker knows and may change")
    if not info.norms or attack.norm not in info.norms:
        _fail(attack, f"norm {attack.norm!r} is not among the declared norms {info.norms}")
    if not isinstance(info.capability, Capability):
        _fail(attack, "info.capability must be a Capability")
    validate_ids(info.taxonomy)
    if not info.taxonomy:
        _fail(attack, "info.taxonomy needs at least one id")
    doc = inspect.getdoc(type(attack)) or ""
    for section in _SECTIONS:
        if section not in doc:
            _fail(attack, f"docstring lacks a {section!r} section")
    if "Threat model" not in doc and "threat model" not in doc:
        _fail(attack, "docstring lacks a threat-model paragraph")
    try:
        hash(attack)
    except TypeError:
        _fail(attack, "must be a frozen dataclass (hashable, immutable configuration)")


def check_attack(
    attack: Attack, target: Target, x: torch.Tensor, y: torch.Tensor, *, eps: float, bounds: Bounds
) -> None:
    """Run ``attack`` through :func:`hoplon.attacks.evaluate` and check its invariants.

    Validity (ε-ball and box), determinism under a seed, and shape of the output.
    """
    import torch

    from hoplon.attacks.evaluate import evaluate
    from hoplon.attacks.evasion.ops import flat_norm

    check_attack_metadata(attack)
    raw = attack.run(target, x, y, eps=eps, bounds=bounds, rng=torch.Generator().manual_seed(0))
    if raw.x_adv.shape != x.shape:
        _fail(attack, f"run returned shape {tuple(raw.x_adv.shape)} for inputs of shape {tuple(x.shape)}")
    first = evaluate(attack, target, x, y, eps=[eps], bounds=bounds, seed=1)
    second = evaluate(attack, target, x, y, eps=[eps], bounds=bounds, seed=1)
    x_adv = first.outcomes[0].x_adv
    if not torch.equal(x_adv, second.outcomes[0].x_adv):
        _fail(attack, "the same seed gave different outputs")
    if attack.info.kind == "bounded" and bool((flat_norm(x_adv - x, attack.norm) > eps + 1e-6).any()):
        _fail(attack, "an output left the epsilon-ball")
    if not bool(bounds.contains(x_adv).all()):
        _fail(attack, "an output left the input box")
    with contextlib.suppress(InputError):  # refusing an empty batch clearly is allowed; crashing is not
        attack.run(target, x[:0], y[:0], eps=eps, bounds=bounds, rng=torch.Generator().manual_seed(0))
