"""The privacy audit: membership inference (loss, LiRA, RMIA, shadow), model inversion and attribute
inference against one or more models, turned into findings and a report (``results.privacy`` rows)."""

from __future__ import annotations

import logging
import math
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hoplon.attacks.privacy import (
    ATTRIBUTE_TAXONOMY,
    INVERSION_TAXONOMY,
    MEMBERSHIP_TAXONOMY,
    PRIVACY_ATTACKS,
    AttributeInference,
    MIFace,
    make_privacy_attack,
)
from hoplon.attacks.privacy.shadow import MIN_SHADOW_ROWS
from hoplon.audit.privacy_references import (
    ProgressFactory,
    check_population,
    row_keys,
    train_attack_models,
)
from hoplon.core.errors import InputError
from hoplon.core.finding import Finding, Severity
from hoplon.core.report import Asset, Report
from hoplon.metrics.privacy import (
    FPR_LEVELS,
    dp_tpr_bound,
    exposure,
    privacy_row,
    reconstruction_similarity,
    roc_curve,
)
from hoplon.targets.types import Capability

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset
    from hoplon.recipes import Recipe
    from hoplon.targets import Target

__all__ = [
    "DEFAULT_PRIVACY_ATTACKS",
    "AuditedModel",
    "check_splits",
    "demo_recipe",
    "demo_splits",
    "findings_from_privacy",
    "privacy",
]

log = logging.getLogger(__name__)

DEFAULT_PRIVACY_ATTACKS: tuple[str, ...] = ("loss", "lira-online", "lira-offline", "rmia", "shadow")
TOP_EXPOSED = 10
ROC_POINTS = 60
REMEDIATION = (
    "Train with differential privacy (hoplon harden dp --epsilon 3) or regularise and stop earlier; re-run this "
    "audit on the new model to confirm the leak at low false-positive rates has closed."
)


@dataclass(frozen=True, kw_only=True)
class AuditedModel:
    """A model to audit, with what is known about how it was trained (a DP record carries ``epsilon``/``delta``).

    ``record`` goes into the report as is; ``test_accuracy`` is the utility figure of the privacy–utility
    curve; ``recipe`` trains its reference models (defaults to the audit's recipe).
    """

    target: Target
    record: Mapping[str, Any] = field(default_factory=dict)
    test_accuracy: float | None = None
    recipe: Recipe | None = None
    digest: str | None = None


def check_splits(members: Dataset, nonmembers: Dataset) -> tuple[Dataset, Dataset, int]:
    """Refuse mismatched splits; drop records found in both (warning), returning the clean splits and the count.

    Raises:
        InputError: sample shapes differ, a class appears in only one split, or nothing is left.
    """
    import torch

    if members.sample_shape != nonmembers.sample_shape:
        raise InputError(
            f"The training and holdout sets have different sample shapes: {members.sample_shape} and "
            f"{nonmembers.sample_shape}."
        )
    in_classes, out_classes = set(members.y.tolist()), set(nonmembers.y.tolist())
    if in_classes != out_classes:
        only_in = sorted(in_classes - out_classes)
        only_out = sorted(out_classes - in_classes)
        raise InputError(
            "The training and holdout sets must cover the same classes, or membership scores compare classes "
            f"rather than records: only in training: {only_in or 'none'}; only in holdout: {only_out or 'none'}."
        )
    holdout_keys = set(row_keys(nonmembers.x))
    member_keys = row_keys(members.x)
    shared = {k for k in member_keys if k in holdout_keys}
    if not shared:
        return members, nonmembers, 0
    keep_in = torch.tensor([k not in shared for k in member_keys])
    keep_out = torch.tensor([k not in shared for k in row_keys(nonmembers.x)])
    n_in, n_out = int((~keep_in).sum()), int((~keep_out).sum())
    log.warning(
        "%d training and %d holdout records appear in both sets; membership metrics leave them out "
        "(a record cannot be both a member and a non-member).",
        n_in,
        n_out,
    )
    if not bool(keep_in.any()) or not bool(keep_out.any()):
        raise InputError("After removing records found in both the training and holdout sets, one set is empty.")
    return members.subset(keep_in), nonmembers.subset(keep_out), len(shared)


def _severity(row: Mapping[str, Any]) -> Severity:
    tpr1 = float(row["tpr_at_fpr"]["0.01"])
    tpr01 = float(row["tpr_at_fpr"]["0.001"]) if row["min_fpr"] <= 0.001 else 0.0
    auc_v = float(row["auc"])
    if tpr01 >= 0.1 or tpr1 >= 0.3 or auc_v >= 0.85:
        return Severity.CRITICAL
    if tpr1 >= 0.1 or auc_v >= 0.7:
        return Severity.HIGH
    if tpr1 >= 0.05 or auc_v >= 0.6:
        return Severity.MEDIUM
    if tpr1 >= 0.02 or auc_v >= 0.55:
        return Severity.LOW
    return Severity.INFO


def _headline_key(row: Mapping[str, Any]) -> tuple[float, float]:
    return (float(row["tpr_at_fpr"]["0.01"]), float(row["auc"]))


def findings_from_privacy(rows: Sequence[Mapping[str, Any]], *, asset_of: Mapping[str, str]) -> list[Finding]:
    """One membership finding per model, rated by its strongest attack (TPR at 1 % FPR first, then AUC):
    TPR@0.1 % ≥ 10 %, TPR@1 % ≥ 30 % or AUC ≥ 0.85 critical; TPR@1 % ≥ 10 % or AUC ≥ 0.7 high;
    ≥ 5 % or 0.6 medium; ≥ 2 % or 0.55 low. A DP model whose audit exceeds its (ε, δ) bound is critical."""
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(str(row["model"]), []).append(row)
    findings = []
    for model, model_rows in by_model.items():
        best = max(model_rows, key=_headline_key)
        tprs = ", ".join(f"{float(v):.1%} at {float(k):.2%}" for k, v in best["tpr_at_fpr"].items())
        findings.append(
            Finding(
                id="privacy.membership",
                title=f"Membership inference on {model}",
                severity=_severity(best),
                asset=asset_of.get(model, model),
                summary=(
                    f"The strongest attack ({best['attack']}) tells training records from holdout records with AUC "
                    f"{best['auc']:.3f} and a true-positive rate of {tprs} false positives "
                    f"({best['n_members']} members, {best['n_nonmembers']} non-members; the smallest resolvable "
                    f"FPR is {best['min_fpr']:.2%})."
                ),
                metrics={
                    "attack": str(best["attack"]),
                    "auc": best["auc"],
                    **{f"tpr@{k}": v for k, v in best["tpr_at_fpr"].items()},
                    "advantage": best["advantage"],
                    "epsilon_lower_bound": best["epsilon_lower_bound"],
                },
                evidence=_evidence(model_rows),
                taxonomy=MEMBERSHIP_TAXONOMY,
                remediation=REMEDIATION,
            )
        )
        broken = [r for r in model_rows if r.get("dp_consistent") is False]
        if broken:
            worst = max(broken, key=lambda r: float(r["epsilon_lower_bound"]))
            findings.append(
                Finding(
                    id="privacy.dp-violation",
                    title=f"The audit of {model} contradicts its differential-privacy guarantee",
                    severity=Severity.CRITICAL,
                    asset=asset_of.get(model, model),
                    summary=(
                        f"{worst['attack']} reaches an empirical ε lower bound of {worst['epsilon_lower_bound']:.2f} "
                        f"(95 % confidence), above the ε = {worst['dp_epsilon']:.2f} the training claims."
                    ),
                    metrics={"epsilon_lower_bound": worst["epsilon_lower_bound"], "epsilon": worst["dp_epsilon"]},
                    taxonomy=MEMBERSHIP_TAXONOMY,
                    remediation="Check the DP training (sampling, clipping, accountant); do not release the model.",
                )
            )
    return findings


def _evidence(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    evidence: dict[str, Any] = {"attacks": [str(r["attack"]) for r in rows]}
    shadow = [r for r in rows if "shadow_data" in r]
    if shadow:
        evidence["shadow_data"] = str(shadow[0]["shadow_data"])
    return evidence


def _roc_points(scores: torch.Tensor, is_member: torch.Tensor) -> dict[str, list[float]]:
    """The ROC curve thinned to about ``ROC_POINTS`` points spread evenly on a log FPR axis."""
    import torch

    roc = roc_curve(scores, is_member)
    fpr, tpr = roc.fpr, roc.tpr
    grid = torch.logspace(math.log10(1.0 / max(roc.n_nonmembers, 1)), 0, ROC_POINTS, dtype=torch.float64)
    idx = torch.searchsorted(fpr, grid, right=True) - 1
    keep = torch.unique(torch.cat([idx.clamp_min(0), torch.tensor([len(fpr) - 1])]))
    return {"fpr": [round(float(v), 6) for v in fpr[keep]], "tpr": [round(float(v), 6) for v in tpr[keep]]}


def privacy(
    models: Sequence[AuditedModel | Target],
    members: Dataset,
    nonmembers: Dataset,
    *,
    recipe: Recipe | None = None,
    population: Dataset | None = None,
    attacks: Sequence[str] = DEFAULT_PRIVACY_ATTACKS,
    n_references: int = 8,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    n_boot: int = 200,
    inversion: bool | None = None,
    sensitive_feature: int | str | None = None,
    command: str | None = None,
    progress: ProgressFactory | None = None,
) -> Report:
    """Audit how much each model leaks about its training records and return the report.

    Args:
        models: the models (targets, or :class:`AuditedModel` with their training record); several models
            (e.g. before and after DP training) are audited on the same splits and reference models.
        members: the training records (``--train``).
        nonmembers: records from the same distribution the models did not train on (``--holdout``).
        recipe: how the models were trained; reference and shadow models are trained by it.
        population: extra data the attacker owns (not audited; refused if it shares a record with
            ``members`` or ``nonmembers``): the shadow models' training data (disjoint from the audited
            records, as in Shokri et al.), RMIA's population, the attribute marginal. Without it the shadow
            attack falls back to the reference models (trained on the audited records) and the report says so
            (``results.shadow_data``).
        attacks: registry names (``loss``, ``lira-online``, ``lira-offline``, ``rmia``, ``shadow``).
        n_references: reference-model budget (even, >= 2).
        cache_dir: where reference models are cached (keyed by recipe hash, data fingerprint and seed).
        seed: all randomness derives from it.
        n_boot: bootstrap resamples for the intervals.
        inversion: run MI-Face (default: when the data are images and the model gives gradients).
        sensitive_feature: a tabular feature (index or name) for attribute inference.
        command: the command line to record (defaults to ``sys.argv``).
        progress: ``progress(label, total)`` returns a callback that advances by finished units.
    """
    import torch

    audited = [m if isinstance(m, AuditedModel) else AuditedModel(target=m) for m in models]
    if not audited:
        raise InputError("The privacy audit needs at least one model.")
    names = [a.target.name for a in audited]
    if len(set(names)) != len(names):
        raise InputError(f"Audited models need distinct names; got {names}.")
    for name in attacks:
        if name not in PRIVACY_ATTACKS:
            raise InputError(f"Unknown privacy attack {name!r}; known: {', '.join(PRIVACY_ATTACKS.names())}.")
    members, nonmembers, n_overlap = check_splits(members, nonmembers)
    if population is not None:
        check_population(population, (members, nonmembers))
    for a in audited:
        a.target.input_spec.check(members.x, what="training data")
        members.check_labels(a.target.n_classes)
        nonmembers.check_labels(a.target.n_classes)
    x = torch.cat([members.x, nonmembers.x])
    y = torch.cat([members.y, nonmembers.y])
    is_member = torch.cat([torch.ones(members.n, dtype=torch.bool), torch.zeros(nonmembers.n, dtype=torch.bool)])
    n_classes = audited[0].target.n_classes
    disjoint_shadows = "shadow" in attacks and population is not None
    if disjoint_shadows and population is not None and population.n < MIN_SHADOW_ROWS:
        raise InputError(
            f"The population data have {population.n} records; the shadow attack needs at least {MIN_SHADOW_ROWS} "
            "to train shadow models on (or leave 'shadow' out of the attacks)."
        )
    attack_objs = [
        make_privacy_attack(n, disjoint=True) if n == "shadow" and disjoint_shadows else make_privacy_attack(n)
        for n in attacks
    ]
    needs_refs = any(type(a).info.needs_references for a in attack_objs)
    attack_models = None
    if needs_refs:
        if recipe is None and any(a.recipe is None for a in audited):
            raise InputError("LiRA, RMIA and the shadow-model attack need the training recipe (--recipe).")
        attack_models = train_attack_models(
            [_recipe_of(a, recipe) for a in audited],
            members,
            nonmembers,
            population=population,
            n_references=n_references,
            n_classes=n_classes,
            shadow="shadow" in attacks,
            seed=seed,
            cache_dir=cache_dir,
            progress=progress,
        )
    shadow_data = attack_models.shadow_data if attack_models is not None else None
    rows: list[dict[str, Any]] = []
    roc: dict[str, dict[str, Any]] = {}
    exposed: list[dict[str, Any]] = []
    for a in audited:
        best: tuple[tuple[float, float], torch.Tensor, str] | None = None
        for attack in attack_objs:
            is_shadow = type(attack).info.name == "shadow"
            attack_refs = None
            if attack_models is not None:
                attack_refs = attack_models.for_attack(_recipe_of(a, recipe), shadow=is_shadow)
            start = time.process_time()
            result = attack.run(a.target, x, y, references=attack_refs, rng=torch.Generator().manual_seed(seed))
            cpu_s = time.process_time() - start
            row = privacy_row(result.attack, result.scores, is_member, n_boot=n_boot, seed=seed)
            row["model"] = a.target.name
            row["cpu_s"] = round(cpu_s, 4)
            row["n_references"] = (
                attack_refs.n_models if attack_refs is not None and type(attack).info.needs_references else 0
            )
            if is_shadow and shadow_data is not None:
                row["shadow_data"] = shadow_data["source"]
            eps_dp, delta_dp = a.record.get("epsilon"), a.record.get("delta")
            if isinstance(eps_dp, int | float) and isinstance(delta_dp, int | float):
                row["dp_epsilon"] = float(eps_dp)
                row["dp_delta"] = float(delta_dp)
                row["dp_tpr_bound"] = {
                    f"{f:g}": dp_tpr_bound(f, epsilon=float(eps_dp), delta=float(delta_dp)) for f in FPR_LEVELS
                }
                row["dp_consistent"] = bool(row["epsilon_lower_bound"] <= float(eps_dp) + 1e-9)
            rows.append(row)
            roc[f"{a.target.name}/{result.attack}"] = {
                "model": a.target.name,
                "attack": result.attack,
                **_roc_points(result.scores, is_member),
            }
            if best is None or _headline_key(row) > best[0]:
                best = (_headline_key(row), result.scores, result.attack)
        assert best is not None
        member_exposure = exposure(best[1], is_member)
        top = torch.argsort(member_exposure, descending=True, stable=True)[:TOP_EXPOSED]
        exposed.extend(
            {
                "model": a.target.name,
                "attack": best[2],
                "index": int(i),
                "label": int(members.y[i]),
                "score": float(best[1][i]),
                "exposure": float(member_exposure[i]),
            }
            for i in top.tolist()
        )
    findings = findings_from_privacy(rows, asset_of={a.target.name: a.target.name for a in audited})
    results: dict[str, Any] = {
        "privacy": rows,
        "privacy_exposure": exposed,
        "privacy_models": [
            {"model": a.target.name, "test_accuracy": a.test_accuracy, "record": dict(a.record)} for a in audited
        ],
        "overlap_removed": n_overlap,
    }
    if shadow_data is not None:
        results["shadow_data"] = shadow_data
    figures: dict[str, Any] = {"roc": {"axes": "log-log", "curves": list(roc.values())}}
    utility = _utility_rows(audited, rows)
    if len(utility) > 1:
        results["privacy_utility"] = utility
        figures["privacy_utility"] = utility
    do_inversion = inversion if inversion is not None else members.kind == "image"
    if do_inversion:
        for a in audited:
            if Capability.GRADIENTS not in a.target.capabilities:
                if inversion:
                    raise InputError(f"Model inversion needs gradients; {a.target.name} is a black-box model.")
                continue
            inv, inv_finding, inv_figure = _inversion(a.target, members, seed)
            results.setdefault("inversion", []).append(inv)
            figures.setdefault("inversion", []).append(inv_figure)
            findings.append(inv_finding)
    if sensitive_feature is not None:
        prior = population.x if population is not None else nonmembers.x
        for a in audited:
            attr, attr_finding = _attribute(a.target, members, nonmembers, prior, sensitive_feature)
            results.setdefault("attribute_inference", []).append(attr)
            findings.append(attr_finding)
    assets = [
        Asset(
            kind="model",
            name=a.target.name,
            digest=a.digest,
            details={"n_classes": a.target.n_classes, "input_shape": list(a.target.input_spec.shape)},
        )
        for a in audited
    ]
    assets += [
        Asset(kind="dataset", name=f"train:{members.name}", digest=members.fingerprint(), details={"n": members.n}),
        Asset(
            kind="dataset",
            name=f"holdout:{nonmembers.name}",
            digest=nonmembers.fingerprint(),
            details={"n": nonmembers.n},
        ),
    ]
    recipes = {}
    for a in audited:
        used = a.recipe or recipe
        if used is not None:
            recipes[a.target.name] = used.to_mapping()
    return Report(
        kind="privacy",
        command=command if command is not None else shlex.join(["hoplon", *sys.argv[1:]]),
        seed=seed,
        assets=assets,
        findings=findings,
        results=results,
        figures=figures,
        config={
            "attacks": list(attacks),
            "n_references": n_references if needs_refs else 0,
            "n_members": members.n,
            "n_nonmembers": nonmembers.n,
            "n_population": population.n if population is not None else 0,
            "recipes": recipes,
            "n_boot": n_boot,
        },
    )


def _recipe_of(audited: AuditedModel, recipe: Recipe | None) -> Recipe:
    used = audited.recipe or recipe
    if used is None:
        raise InputError(f"No training recipe for {audited.target.name}: pass --recipe.")
    return used


def _utility_rows(audited: Sequence[AuditedModel], rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for a in audited:
        model_rows = [r for r in rows if r["model"] == a.target.name]
        if not model_rows:
            continue
        best = max(model_rows, key=_headline_key)
        eps = a.record.get("epsilon")
        out.append(
            {
                "model": a.target.name,
                "epsilon": float(eps) if isinstance(eps, int | float) else math.inf,
                "test_accuracy": a.test_accuracy,
                "attack": best["attack"],
                "auc": best["auc"],
                "tpr_at_fpr": dict(best["tpr_at_fpr"]),
                "epsilon_lower_bound": best["epsilon_lower_bound"],
            }
        )
    return sorted(out, key=lambda r: r["epsilon"])


def _inversion(target: Target, members: Dataset, seed: int) -> tuple[dict[str, Any], Finding, dict[str, Any]]:
    import torch

    torch.manual_seed(seed)
    classes = sorted(set(members.y.tolist()))
    result = MIFace().run(target, classes=classes, bounds=members.bounds)
    means = torch.stack([members.x[members.y == c].mean(0) for c in classes])
    sim = reconstruction_similarity(result.reconstructions, means)
    chance = 1.0 / len(classes)
    rate = float(sim["identification_rate"])
    severity = (
        Severity.HIGH
        if rate >= 0.8
        else Severity.MEDIUM
        if rate >= 0.5
        else Severity.LOW
        if rate > chance
        else Severity.INFO
    )
    summary = {
        "model": target.name,
        "attack": "mi-face",
        "classes": list(result.classes),
        "confidence": [round(float(c), 4) for c in result.confidence],
        **sim,
        "chance_identification_rate": chance,
    }
    finding = Finding(
        id="privacy.inversion.mi-face",
        title=f"Model inversion of {target.name}",
        severity=severity,
        asset=target.name,
        summary=(
            f"MI-Face reconstructions are closest to their own class's mean training image for {rate:.0%} of the "
            f"classes (chance {chance:.0%}); mean cosine similarity to the class mean {sim['mean_own_similarity']:.2f}."
        ),
        metrics={
            "identification_rate": rate,
            "mean_own_similarity": sim["mean_own_similarity"],
            "mean_gap": sim["mean_gap"],
        },
        taxonomy=INVERSION_TAXONOMY,
        remediation="Release labels or rounded confidences instead of full scores, and train with differential "
        "privacy; white-box release makes inversion easiest.",
    )
    figure = {
        "model": target.name,
        "classes": list(result.classes),
        "bounds": [float(members.bounds.lower.min()), float(members.bounds.upper.max())],
        "reconstructions": result.reconstructions.round(decimals=4).tolist(),
        "class_means": means.round(decimals=4).tolist(),
    }
    return summary, finding, figure


def _attribute(
    target: Target, members: Dataset, nonmembers: Dataset, prior: torch.Tensor, feature: int | str
) -> tuple[dict[str, Any], Finding]:
    if members.x.ndim != 2:
        raise InputError("Attribute inference needs tabular data (n, d).")
    if isinstance(feature, str):
        names = list(members.feature_names or [])
        if feature not in names:
            raise InputError(f"Unknown feature {feature!r}; the data's features: {', '.join(names[:10]) or 'unnamed'}.")
        index = names.index(feature)
    else:
        index = int(feature)
    attack = AttributeInference(feature=index)
    on_members = attack.run(target, members.x, members.y, prior=prior)
    on_others = attack.run(target, nonmembers.x, nonmembers.y, prior=prior)
    name = members.feature_names[index] if members.feature_names else f"x{index}"
    row = {
        "model": target.name,
        "feature": name,
        "feature_index": index,
        "n_bins": len(on_members.values),
        "accuracy_members": on_members.accuracy,
        "baseline_accuracy_members": on_members.baseline_accuracy,
        "advantage_members": on_members.advantage,
        "accuracy_nonmembers": on_others.accuracy,
        "baseline_accuracy_nonmembers": on_others.baseline_accuracy,
        "advantage_nonmembers": on_others.advantage,
        "membership_gap": on_members.accuracy - on_others.accuracy,
    }
    adv = on_members.advantage
    severity = (
        Severity.HIGH
        if adv >= 0.3
        else Severity.MEDIUM
        if adv >= 0.15
        else Severity.LOW
        if adv >= 0.05
        else Severity.INFO
    )
    finding = Finding(
        id="privacy.attribute-inference",
        title=f"Attribute inference of '{name}' from {target.name}",
        severity=severity,
        asset=target.name,
        summary=(
            f"Given every other feature and the label, the model's confidence recovers '{name}' (in "
            f"{len(on_members.values)} bins) for {on_members.accuracy:.0%} of training records, against "
            f"{on_members.baseline_accuracy:.0%} by guessing from the marginal (advantage {adv:+.0%}; "
            f"{on_others.accuracy:.0%} on holdout records)."
        ),
        metrics={k: v for k, v in row.items() if isinstance(v, int | float)},
        taxonomy=ATTRIBUTE_TAXONOMY,
        remediation="Remove or coarsen the sensitive feature, release labels only, or train with differential privacy.",
    )
    return row, finding


DEMO_MEMBERS = 150


def demo_splits(
    name: str, *, n_members: int = DEMO_MEMBERS, n_nonmembers: int | None = None, seed: int = 0
) -> tuple[Dataset, Dataset, Dataset]:
    """Members, non-members (as many, or ``n_nonmembers``) and the remaining population of a built-in dataset,
    seeded. The non-members of a larger ``n_nonmembers`` include those of the default split.

    Raises:
        InputError: a size below 1, or members and non-members that leave no population record.
    """
    import torch

    from hoplon.data import demo

    data = demo(name, split="all")
    n_out = n_members if n_nonmembers is None else n_nonmembers
    if n_members < 1 or n_out < 1:
        raise InputError(f"Demo splits need at least one member and one non-member. Got {n_members} and {n_out}.")
    if n_members + n_out >= data.n:
        raise InputError(
            f"The demo {name} has {data.n} records; {n_members} members and {n_out} non-members leave no population."
        )
    order = torch.randperm(data.n, generator=torch.Generator().manual_seed(seed))
    members = data.subset(order[:n_members].sort().values)
    nonmembers = data.subset(order[n_members : n_members + n_out].sort().values)
    population = data.subset(order[n_members + n_out :].sort().values)
    return (
        _renamed(members, f"{name}:members"),
        _renamed(nonmembers, f"{name}:holdout"),
        _renamed(population, f"{name}:population"),
    )


def demo_recipe(name: str) -> Recipe:
    """A deliberately overfitting recipe for a demo dataset (no regularisation, many epochs on few records)."""
    from hoplon.recipes import Recipe

    if name == "digits":
        return Recipe(factory="digits-cnn", epochs=40, batch_size=32, lr=3e-3, seed=0)
    return Recipe(factory="tabular-mlp", args={"hidden": 128}, epochs=80, batch_size=32, lr=3e-3, seed=0)


def _renamed(data: Dataset, name: str) -> Dataset:
    from hoplon.data import Dataset

    return Dataset(x=data.x, y=data.y, bounds=data.bounds, name=name, kind=data.kind, feature_names=data.feature_names)
