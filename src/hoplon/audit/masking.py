"""Gradient-masking checks: signs that a defense hides gradients instead of removing adversarial examples.

Athalye, Carlini and Wagner (2018) and Carlini et al. (2019, "On Evaluating Adversarial Robustness") list
the symptoms; each becomes a finding with an explanation, so a user does not trust a defense that only
makes gradient-based attacks fail:

* a black-box attack beats the white-box ones (white-box attacks know strictly more);
* robust accuracy does not fall to near zero as ε grows to the size of the input box (every input is then
  reachable, so only a failing attack can leave samples robust);
* the robust-accuracy curve is not monotone in ε (a larger ball contains the smaller one);
* a large share of samples has an all-zero input gradient (saturated or shattered gradients).

The row checks are pure functions of the audit's rows; the two that need the model are small and explicit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hoplon.core.finding import Finding, Severity
from hoplon.targets.types import Capability

if TYPE_CHECKING:
    from hoplon.attacks.types import Norm
    from hoplon.data import Dataset
    from hoplon.targets.types import Target

__all__ = [
    "BLACK_BOX",
    "blackbox_beats_whitebox",
    "box_size_check",
    "masking_findings",
    "non_monotone_curves",
    "zero_gradient_check",
]

BLACK_BOX = frozenset({"square", "hsja"})
TAXONOMY = ("atlas:AML.T0043.001", "owasp-ml:ML01", "nist-ai-rmf:MEASURE-2.7")
REMEDIATION = (
    "Do not trust this robust accuracy: evaluate with black-box attacks and adaptive attacks (BPDA, EOT), and "
    "prefer a defense that removes adversarial examples (adversarial training) or certifies them."
)
MARGIN = 0.02
COLLAPSE = 0.10
ZERO_SHARE = 0.2


def _by_attack(rows: Sequence[dict[str, Any]]) -> dict[str, dict[float, float]]:
    out: dict[str, dict[float, float]] = {}
    for row in rows:
        out.setdefault(str(row["attack"]), {})[float(row["eps"])] = float(row["robust_accuracy"])
    return out


def _finding(ident: str, title: str, severity: Severity, asset: str, summary: str, metrics: dict[str, Any]) -> Finding:
    return Finding(
        id=f"evasion.masking.{ident}",
        title=title,
        severity=severity,
        asset=asset,
        summary=summary,
        metrics=metrics,
        taxonomy=TAXONOMY,
        remediation=REMEDIATION,
    )


def blackbox_beats_whitebox(rows: Sequence[dict[str, Any]], *, asset: str) -> list[Finding]:
    """A score- or decision-based attack leaving a clearly lower robust accuracy than every white-box attack."""
    curves = _by_attack(rows)
    black = {k: v for k, v in curves.items() if k in BLACK_BOX}
    white = {k: v for k, v in curves.items() if k not in BLACK_BOX and k != "worst-case"}
    if not black or not white:
        return []
    worst_gap, worst_eps, worst_pair = 0.0, math.nan, ("", "")
    for eps in sorted({e for c in black.values() for e in c}):
        w_values = {k: c[eps] for k, c in white.items() if eps in c}
        b_values = {k: c[eps] for k, c in black.items() if eps in c}
        if not w_values or not b_values:
            continue
        w_name = min(w_values, key=lambda k: w_values[k])
        b_name = min(b_values, key=lambda k: b_values[k])
        gap = w_values[w_name] - b_values[b_name]
        if gap > worst_gap:
            worst_gap, worst_eps, worst_pair = gap, eps, (b_name, w_name)
    if worst_gap <= MARGIN:
        return []
    b_name, w_name = worst_pair
    return [
        _finding(
            "blackbox-beats-whitebox",
            "A black-box attack beats the white-box attacks",
            Severity.HIGH,
            asset,
            f"{b_name.upper()} (no gradients) leaves {worst_gap:.1%} less robust accuracy than the best white-box "
            f"attack ({w_name.upper()}) at eps={worst_eps:g}. A white-box attacker knows strictly more, so the "
            "gradients are likely masked or obfuscated and the white-box figures overstate robustness.",
            {"gap": worst_gap, "eps": worst_eps, "black_box": b_name, "white_box": w_name},
        )
    ]


def non_monotone_curves(rows: Sequence[dict[str, Any]], *, asset: str) -> list[Finding]:
    """Robust accuracy that rises with ε for some attack (a larger ball contains every smaller one)."""
    found = []
    for name, curve in _by_attack(rows).items():
        eps = sorted(curve)
        rises = [(a, b, curve[b] - curve[a]) for a, b in itertools.pairwise(eps) if curve[b] > curve[a] + 1e-9]
        if not rises:
            continue
        a, b, rise = max(rises, key=lambda r: r[2])
        found.append(
            _finding(
                f"non-monotone.{name}",
                f"{name.upper()}'s robust accuracy is not monotone in eps",
                Severity.MEDIUM,
                asset,
                f"{name.upper()}'s robust accuracy rises by {rise:.1%} from eps={a:g} to eps={b:g}. The larger ball "
                "contains the smaller one, so the attack is failing to optimise: a sign of masked gradients.",
                {"rise": rise, "eps_from": a, "eps_to": b},
            )
        )
    return found


def masking_findings(rows: Sequence[dict[str, Any]], *, asset: str) -> list[Finding]:
    """The pure row checks together."""
    return blackbox_beats_whitebox(rows, asset=asset) + non_monotone_curves(rows, asset=asset)


def box_size_check(
    target: Target, data: Dataset, *, norm: Norm, seed: int = 0, batch_size: int = 500
) -> tuple[list[Finding], dict[str, float]]:
    """Attack at ε = the size of the input box, where every input is reachable; robust accuracy should be ~0.

    Uses PGD (gradients) when the target offers them, else Square Attack (scores) or HopSkipJump (labels).
    Returns the findings and the measured figures.
    """
    from hoplon.attacks import PGD, Attack, HopSkipJump, SquareAttack, evaluate

    width = data.bounds.width
    eps = width if norm == "linf" else width * math.sqrt(data.x[0].numel())
    attack: Attack
    if Capability.GRADIENTS in target.capabilities:
        attack = PGD(norm=norm, steps=20)
    elif Capability.SCORES in target.capabilities:
        attack = SquareAttack(norm=norm, max_queries=100)
    else:
        attack = HopSkipJump(norm=norm, steps=3, init_evals=20)
    ev = evaluate(attack, target, data.x, data.y, eps=[eps], bounds=data.bounds, seed=seed, batch_size=batch_size)
    outcome = ev.outcomes[0]
    robust = float((ev.clean_correct & ~outcome.is_adv).float().mean())
    figures = {"eps": eps, "robust_accuracy": robust}
    if robust <= COLLAPSE or ev.partial:
        return [], figures
    return [
        _finding(
            "no-collapse-at-box-size",
            "Robust accuracy does not fall to zero at the size of the input box",
            Severity.HIGH,
            asset=target.name,
            summary=f"{attack.info.name.upper()} still leaves {robust:.1%} robust accuracy at eps={eps:g}, where every "
            "input in the box is reachable (a constant image of another class is allowed). The attack is failing, "
            "not the model resisting: gradients are likely masked, so smaller-eps figures are not trustworthy.",
            metrics={"eps": eps, "robust_accuracy": robust, "attack": attack.info.name},
        )
    ], figures


def zero_gradient_check(target: Target, data: Dataset) -> tuple[list[Finding], float]:
    """Share of samples whose input gradient of the cross-entropy loss is exactly zero (white-box targets only)."""
    import torch
    from torch.nn import functional as F

    logits_fn = getattr(target, "logits", None)
    if Capability.GRADIENTS not in target.capabilities or logits_fn is None:
        return [], math.nan
    zero = 0
    for start in range(0, data.n, 512):
        x = data.x[start : start + 512].detach().clone().requires_grad_(True)
        loss = F.cross_entropy(logits_fn(x), data.y[start : start + 512], reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        zero += int((grad.flatten(1).abs().amax(dim=1) == 0).sum())
    share = zero / data.n
    if share < ZERO_SHARE:
        return [], share
    return [
        _finding(
            "zero-gradients",
            "Many samples have an all-zero input gradient",
            Severity.MEDIUM,
            target.name,
            f"{share:.1%} of samples have an input gradient of exactly zero (saturated softmax, quantisation or "
            "non-differentiable preprocessing). Gradient attacks cannot move them, so their robustness is "
            "unmeasured rather than shown.",
            {"zero_gradient_share": share},
        )
    ], share
