"""The robustness audit: run evasion attacks over ε, turn the results into findings and a report."""

from __future__ import annotations

import logging
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hoplon.attacks import ATTACKS, Attack, Evaluation, Norm, evaluate, make, merge
from hoplon.attacks.evasion._blackbox import watch_budget
from hoplon.audit.masking import box_size_check, masking_findings, zero_gradient_check
from hoplon.audit.policy import Gate, check_gates
from hoplon.core.errors import BudgetExceeded, InputError
from hoplon.core.finding import Finding, Severity
from hoplon.core.report import Asset, Report
from hoplon.metrics import robustness_rows
from hoplon.targets.types import Capability

if TYPE_CHECKING:
    from hoplon.data import Dataset
    from hoplon.targets import Target

__all__ = ["AUTO", "DEFAULT_ATTACKS", "auto_attacks", "black_box_attacks", "findings_from_rows", "robustness"]

log = logging.getLogger(__name__)

AUTO = "auto"
DEFAULT_ATTACKS: tuple[str, ...] = ("fgsm", "pgd", AUTO)
MAX_EXAMPLES = 8
REMEDIATION = (
    "Harden the model with adversarial training (PGD-AT or TRADES) at the threat model's epsilon, or certify it "
    "with randomized smoothing; re-run this audit with the worst-case ensemble to confirm."
)
TAXONOMY = ("atlas:AML.T0043.000", "atlas:AML.T0015", "owasp-ml:ML01", "nist-ai-rmf:MEASURE-2.7", "cwe:CWE-1039")

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def auto_attacks(norm: Norm, n_classes: int) -> list[Attack]:
    """AutoAttack's gradient-based pair: APGD-CE, then APGD-T (targeted DLR) on what is left.

    With fewer than four classes the targeted DLR loss is undefined; APGD with the margin loss stands in. Only
    the first attack starts at the clean input; the second starts at random points, where the first has not
    looked (APGD-T does so after its first target class).
    """
    if n_classes >= 4:
        return [make("apgd-ce", norm=norm), make("apgd-t", norm=norm, n_target_classes=min(9, n_classes - 1))]
    from hoplon.attacks.evasion import APGD

    return [make("apgd-ce", norm=norm), APGD(norm=norm, loss="margin", init="random")]


def black_box_attacks(norm: Norm, target: Target) -> list[Attack]:
    """The worst-case ensemble for a target without gradients: Square Attack (5,000 queries per sample) when it
    gives scores, then HopSkipJump on what is left; HopSkipJump alone when it gives only labels."""
    chain: list[Attack] = []
    if Capability.SCORES in target.capabilities:
        chain.append(make("square", norm=norm, max_queries=5000))
    chain.append(make("hsja", norm=norm))
    return chain


def _severity(asr: float) -> Severity:
    if math.isnan(asr):
        return Severity.INFO
    if asr >= 0.9:
        return Severity.CRITICAL
    if asr >= 0.5:
        return Severity.HIGH
    if asr >= 0.2:
        return Severity.MEDIUM
    if asr > 0.05:
        return Severity.LOW
    return Severity.INFO


def _eps_key(eps: float) -> str:
    return f"{eps:g}"


def findings_from_rows(rows: Sequence[dict[str, Any]], *, asset: str) -> list[Finding]:
    """One finding per attack (the worst case first), rated by its highest success rate over the ε values
    asked for (the caller's threat model): ≥ 90 % critical, ≥ 50 % high, ≥ 20 % medium, > 5 % low.

    Pure: the same rows always give the same findings.
    """
    by_attack: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_attack.setdefault(str(row["attack"]), []).append(row)
    order = sorted(by_attack, key=lambda name: (name != "worst-case", name))
    findings = []
    for name in order:
        series = sorted(by_attack[name], key=lambda r: float(r["eps"]))
        first = series[0]
        rates = [float(r["attack_success_rate"]) for r in series if r["attack_success_rate"] is not None]
        asr_f = max(rates) if rates else math.nan
        norm = str(first["norm"])
        metrics: dict[str, float | int | str | bool | None] = {
            "clean_accuracy": first["clean_accuracy"],
            "n": first["n"],
        }
        for row in series:
            key = _eps_key(float(row["eps"]))
            metrics[f"robust_accuracy@{key}"] = row["robust_accuracy"]
            metrics[f"attack_success_rate@{key}"] = row["attack_success_rate"]
        curve = ", ".join(f"{r['robust_accuracy']:.1%} at eps={_eps_key(float(r['eps']))}" for r in series)
        label = "The worst case over all attacks" if name == "worst-case" else f"{name.upper()}"
        findings.append(
            Finding(
                id=f"evasion.{name}.{norm}",
                title=f"{'Worst-case' if name == 'worst-case' else name.upper()} {norm} evasion",
                severity=_severity(asr_f),
                asset=asset,
                summary=(
                    f"{label} leaves a robust accuracy of {curve} "
                    f"(clean accuracy {first['clean_accuracy']:.1%}, {first['n']} samples)."
                ),
                metrics=metrics,
                evidence={"components": list(first.get("components", [])), "partial": bool(first.get("partial"))},
                taxonomy=TAXONOMY,
                remediation=REMEDIATION,
            )
        )
    findings.extend(_consistency_findings(by_attack, asset))
    return findings


def _consistency_findings(by_attack: dict[str, list[dict[str, Any]]], asset: str) -> list[Finding]:
    """A one-step attack beating an iterative one by a clear margin is a sign of gradient masking."""
    if "fgsm" not in by_attack or "pgd" not in by_attack:
        return []
    pgd = {float(r["eps"]): float(r["robust_accuracy"]) for r in by_attack["pgd"]}
    gaps = [
        (float(r["eps"]), pgd[float(r["eps"])] - float(r["robust_accuracy"]))
        for r in by_attack["fgsm"]
        if float(r["eps"]) in pgd
    ]
    worst = max(gaps, key=lambda g: g[1], default=(0.0, 0.0))
    if worst[1] <= 0.02:
        return []
    return [
        Finding(
            id="evasion.consistency.fgsm-beats-pgd",
            title="A single-step attack beats the iterative one",
            severity=Severity.MEDIUM,
            asset=asset,
            summary=(
                f"FGSM's robust accuracy is {worst[1]:.1%} lower than PGD's at eps={worst[0]:g}; iterative attacks "
                "should be at least as strong, so the loss surface may be masking gradients."
            ),
            metrics={"gap": worst[1], "eps": worst[0]},
            taxonomy=("atlas:AML.T0043.000", "owasp-ml:ML01", "nist-ai-rmf:MEASURE-2.7"),
            remediation="Do not trust gradient-based robust accuracy alone; add black-box attacks and more PGD steps.",
        )
    ]


def _examples(data: Dataset, evaluation: Evaluation, target: Target) -> dict[str, Any]:
    """Data for the report's example grid (images) or per-feature perturbation bars (tabular)."""
    import torch

    outcomes = evaluation.outcomes
    clean = evaluation.clean_correct
    chosen = next(
        (o for o in outcomes if float((clean & o.is_adv).float().mean()) >= 0.5 * float(clean.float().mean())),
        outcomes[-1],
    )
    fooled = (clean & chosen.is_adv).nonzero().squeeze(1)
    figure: dict[str, Any] = {
        "attack": evaluation.attack,
        "norm": evaluation.norm,
        "eps": chosen.eps,
        "kind": data.kind,
        "n_fooled": int(fooled.numel()),
    }
    if fooled.numel() == 0:
        figure["items"] = []
        return figure
    delta = chosen.x_adv[fooled] - data.x[fooled]
    if data.kind == "image":
        picks = fooled[:MAX_EXAMPLES]
        with torch.no_grad():
            adv_pred = target.predict(chosen.x_adv[picks]).argmax(1)
        figure["items"] = [
            {
                "index": int(i),
                "label": int(data.y[i]),
                "adversarial_prediction": int(p),
                "clean": data.x[i].round(decimals=4).tolist(),
                "adversarial": chosen.x_adv[i].round(decimals=4).tolist(),
                "perturbation": (chosen.x_adv[i] - data.x[i]).round(decimals=4).tolist(),
            }
            for i, p in zip(picks.tolist(), adv_pred.tolist(), strict=True)
        ]
        figure["bounds"] = [float(data.bounds.lower.min()), float(data.bounds.upper.max())]
    else:
        flat = delta.flatten(1)
        names = list(data.feature_names or [f"x{i}" for i in range(flat.shape[1])])
        figure["features"] = names
        figure["mean_abs_perturbation"] = flat.abs().mean(0).round(decimals=5).tolist()
        figure["mean_perturbation"] = flat.mean(0).round(decimals=5).tolist()
        figure["items"] = []
    return figure


def _safe_examples(data: Dataset, evaluation: Evaluation, target: Target) -> dict[str, Any]:
    """The example grid, or none when the query budget (or the endpoint) cannot answer one more batch."""
    try:
        return _examples(data, evaluation, target)
    except BudgetExceeded:
        return {"attack": evaluation.attack, "norm": evaluation.norm, "kind": data.kind, "n_fooled": 0, "items": []}


def _resolve(names: Sequence[str | Attack], norm: Norm) -> tuple[list[Attack], bool]:
    singles: list[Attack] = []
    use_auto = False
    for item in names:
        if isinstance(item, str):
            if item == AUTO:
                use_auto = True
            elif item in ATTACKS:
                singles.append(make(item, norm=norm))
            else:
                known = ", ".join([AUTO, *ATTACKS.names()])
                raise InputError(f"Unknown attack {item!r}; known: {known}.")
        else:
            singles.append(item)
    if not singles and not use_auto:
        raise InputError("No attack given.")
    return singles, use_auto


def robustness(
    target: Target,
    data: Dataset,
    *,
    norm: Norm = "linf",
    eps: Sequence[float] = (0.05, 0.1, 0.2),
    attacks: Sequence[str | Attack] = DEFAULT_ATTACKS,
    seed: int = 0,
    n_samples: int | None = None,
    gates: Sequence[Gate] = (),
    batch_size: int = 500,
    command: str | None = None,
    model_digest: str | None = None,
    progress: ProgressFactory | None = None,
    masking_checks: bool = True,
) -> Report:
    """Audit ``target``'s robustness to evasion on ``data`` and return the report.

    Args:
        target: the model.
        data: labelled samples with their bounds (attacks never leave them).
        norm: ``linf`` or ``l2``.
        eps: perturbation budgets, absolute in input units.
        attacks: registry names and/or configured attacks; ``auto`` adds AutoAttack's worst-case ensemble.
            With more than one attack, ``worst-case`` rows give the per-sample worst case (the headline).
        seed: all randomness derives from it.
        n_samples: audit a seeded random subset of this many samples.
        gates: policy floors, checked against the headline rows; results under ``results.gates``.
        command: the command line to record (defaults to ``sys.argv``).
        progress: ``progress(label, total)`` returns a callback that advances by finished samples.
        masking_checks: add gradient-masking findings (:mod:`hoplon.audit.masking`): a black-box attack beating
            the white-box ones, no collapse at the box size (one extra attack at that ε), a non-monotone
            curve, many all-zero gradients. A target without gradients gets the black-box ensemble under
            ``auto``, and the default gradient attacks are skipped for it.

    Returns:
        A :class:`Report` of kind ``robustness`` with ``results.robustness`` rows.
    """
    import torch

    if norm not in ("linf", "l2"):
        raise InputError(f"The 'norm' parameter must be 'linf' or 'l2'. Got {norm!r}.")
    target.input_spec.check(data.x, what="data")
    data.check_labels(target.n_classes)
    if n_samples is not None:
        if n_samples <= 0:
            raise InputError(f"The number of samples must be positive. Got {n_samples}.")
        order = torch.randperm(data.n, generator=torch.Generator().manual_seed(seed))[:n_samples]
        data = data.subset(order.sort().values)
    for e in eps:
        if not e > 0:
            raise InputError(f"Every epsilon must be > 0. Got {e}.")
        if e > data.bounds.width:
            log.warning(
                "eps=%g is larger than the input box (%s); every input is reachable.", e, data.bounds.describe()
            )
    singles, use_auto = _resolve(attacks, norm)
    has_gradients = Capability.GRADIENTS in target.capabilities
    unusable = [a for a in singles if a.info.capability not in target.capabilities]
    if unusable and (len(unusable) < len(singles) or use_auto):
        log.warning(
            "%s gives no %s; skipping %s (the black-box attacks stand in).",
            target.name,
            "/".join(sorted({a.info.capability.value for a in unusable})),
            ", ".join(a.info.name for a in unusable),
        )
        singles = [a for a in singles if a.info.capability in target.capabilities]

    def bar(label: str, n_attacks: int) -> Callable[[int], None] | None:
        return progress(label, data.n * len(eps) * n_attacks) if progress is not None else None

    with watch_budget(target) as watched:
        worst, evaluations = _run_all(target, data, singles, use_auto, has_gradients, norm, eps, seed, batch_size, bar)
    rows: list[dict[str, Any]] = []
    for ev in evaluations:
        rows.extend(robustness_rows(ev, data.x))
    if worst is not None:
        rows.extend(robustness_rows(worst, data.x))
    if watched.stopped_early:
        log.warning("The query budget stopped a black-box attack early; the results are partial.")
        for row in rows:
            row["partial"] = True
    return _assemble(
        target,
        data,
        rows,
        worst,
        evaluations,
        gates,
        norm,
        eps,
        attacks,
        seed,
        batch_size,
        command,
        model_digest,
        masking_checks,
    )


def _run_all(
    target: Target,
    data: Dataset,
    singles: list[Attack],
    use_auto: bool,
    has_gradients: bool,
    norm: Norm,
    eps: Sequence[float],
    seed: int,
    batch_size: int,
    bar: Callable[[str, int], Callable[[int], None] | None],
) -> tuple[Evaluation | None, list[Evaluation]]:
    evaluations: list[Evaluation] = []
    clean_correct = target.predict(data.x).argmax(1) == data.y if singles else None
    for a in singles:
        try:
            evaluations.append(
                evaluate(
                    a,
                    target,
                    data.x,
                    data.y,
                    eps=eps,
                    bounds=data.bounds,
                    seed=seed,
                    batch_size=batch_size,
                    clean_correct=clean_correct,
                    progress=bar(a.info.name, 1),
                )
            )
        except BudgetExceeded as exc:
            # The budget or the endpoint gave out before this attack could start: keep what earlier ones found.
            if not evaluations:
                raise
            log.warning("%s could not run: %s", a.info.name, exc)
            _mark_partial(evaluations)
            return (merge(evaluations) if len(evaluations) > 1 else None), evaluations
    prior = merge(evaluations) if evaluations else None
    if use_auto and prior is not None and prior.partial:
        return prior if len(evaluations) > 1 else None, evaluations
    if use_auto:
        chain = auto_attacks(norm, target.n_classes) if has_gradients else black_box_attacks(norm, target)
        try:
            worst: Evaluation | None = evaluate(
                chain,
                target,
                data.x,
                data.y,
                eps=eps,
                bounds=data.bounds,
                seed=seed,
                batch_size=batch_size,
                name="worst-case",
                prior=prior,
                progress=bar("worst-case", len(chain)),
            )
        except BudgetExceeded as exc:
            if not evaluations:
                raise
            log.warning("The worst-case ensemble could not run: %s", exc)
            _mark_partial(evaluations)
            return (merge(evaluations) if len(evaluations) > 1 else None), evaluations
    else:
        worst = prior if len(evaluations) > 1 else None
    return worst, evaluations


def _mark_partial(evaluations: list[Evaluation]) -> None:
    import dataclasses

    evaluations[:] = [dataclasses.replace(ev, partial=True) for ev in evaluations]


def _assemble(
    target: Target,
    data: Dataset,
    rows: list[dict[str, Any]],
    worst: Evaluation | None,
    evaluations: list[Evaluation],
    gates: Sequence[Gate],
    norm: Norm,
    eps: Sequence[float],
    attacks: Sequence[str | Attack],
    seed: int,
    batch_size: int,
    command: str | None,
    model_digest: str | None,
    masking_checks: bool,
) -> Report:
    headline_eval = worst if worst is not None else evaluations[0]
    headline = [r for r in rows if r["attack"] == headline_eval.attack]
    gate_results = check_gates(gates, headline)
    findings = findings_from_rows(rows, asset=target.name)
    if masking_checks:
        findings.extend(masking_findings(rows, asset=target.name))
        if not any(r.get("partial") for r in rows):
            try:
                findings.extend(zero_gradient_check(target, data)[0])
                findings.extend(box_size_check(target, data, norm=norm, seed=seed, batch_size=batch_size)[0])
            except BudgetExceeded:
                log.warning("The query budget left no room for the model-based masking checks; skipped.")
    assets = [
        Asset(
            kind="model",
            name=target.name,
            digest=model_digest,
            details={
                "n_classes": target.n_classes,
                "input_shape": list(target.input_spec.shape),
                "capabilities": sorted(c.value for c in target.capabilities),
            },
        ),
        Asset(
            kind="dataset",
            name=data.name,
            digest=data.fingerprint(),
            details={
                "n": data.n,
                "kind": data.kind,
                "bounds": data.bounds.describe(),
                "bounds_source": data.bounds.source,
            },
        ),
    ]
    return Report(
        kind="robustness",
        command=command if command is not None else shlex.join(["hoplon", *sys.argv[1:]]),
        seed=seed,
        assets=assets,
        findings=findings,
        results={
            "robustness": rows,
            "headline": headline_eval.attack,
            "gates": [g.to_dict() for g in gate_results],
        },
        figures={"examples": _safe_examples(data, headline_eval, target)},
        config={
            "norm": norm,
            "eps": sorted(float(e) for e in eps),
            "attacks": [a if isinstance(a, str) else a.info.name for a in attacks],
            "n_samples": data.n,
            "bounds": data.bounds.describe(),
        },
    )
