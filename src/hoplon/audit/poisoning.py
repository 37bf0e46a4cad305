"""Poisoning audits: how much poison a training recipe tolerates, and what a dataset scan finds.

``poisoning_curve`` trains the user's recipe on data poisoned at each rate and measures clean accuracy and
attack success; ``data_check`` turns a :class:`~hoplon.defenses.data.ScanResult` into a report whose
``results.records`` lists every record, most suspicious first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hoplon.core.errors import InputError
from hoplon.core.finding import Finding, Severity
from hoplon.core.report import Asset, Report

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hoplon.attacks.poisoning import PoisonAttack
    from hoplon.data import Dataset
    from hoplon.defenses.backdoor import STRIP, NeuralCleanse
    from hoplon.defenses.data import ScanResult
    from hoplon.recipes import Recipe

__all__ = [
    "attack_success_rate",
    "backdoor_audit",
    "check_rates",
    "data_check",
    "detection_metrics",
    "poisoning_curve",
    "sanitize_report",
]

TAXONOMY = ("atlas:AML.T0020", "atlas:AML.T0018", "owasp-ml:ML02", "nist-ai-rmf:MEASURE-2.7")


def check_rates(rates: Sequence[float]) -> list[float]:
    for rate in rates:
        if not 0 < rate < 1:
            raise InputError(f"Every poison rate must be in (0, 1) (a share of the training set). Got {rate:g}.")
    return sorted(set(rates))


def attack_success_rate(
    module: nn.Module, attack: PoisonAttack, test: Dataset, target_class: int | None
) -> float | None:
    """Share of triggered test inputs (not of the target class) the model sends to the target class."""
    import torch

    if target_class is None:
        return None
    mask = test.y != target_class
    triggered = attack.apply_trigger(test.x[mask], test)
    if triggered is None or not bool(mask.any()):
        return None
    module.eval()
    with torch.no_grad():
        return float((module(triggered).argmax(1) == target_class).double().mean())


def _accuracy(module: nn.Module, data: Dataset) -> float:
    from hoplon.models import accuracy

    return accuracy(module, data.x, data.y)


def poisoning_curve(
    recipe: Recipe,
    train: Dataset,
    test: Dataset,
    *,
    attack_name: str,
    rates: Sequence[float],
    attack_config: dict[str, Any] | None = None,
    seed: int = 0,
) -> Report:
    """Train ``recipe`` clean and at each poison rate; report clean accuracy and attack success per rate."""
    from hoplon.attacks.poisoning import make_poisoning
    from hoplon.data import fingerprint
    from hoplon.recipes import train as train_recipe

    rates = check_rates(rates)
    n_classes = max(int(train.y.max()), int(test.y.max())) + 1
    baseline, _ = train_recipe(recipe, train.x, train.y, n_classes=n_classes, seed=seed)
    base_acc = _accuracy(baseline, test)
    rows: list[dict[str, Any]] = []
    for rate in rates:
        config = dict(attack_config or {})
        if attack_name == "clean-label":
            # The attacker's surrogate is trained like the victim (the recipe), as in Turner et al.
            config.setdefault("surrogate_recipe", recipe)
        attack = make_poisoning(attack_name, rate=rate, **config)
        start = time.process_time()
        poisoned = attack.run(train, seed=seed)
        module, _ = train_recipe(recipe, poisoned.data.x, poisoned.data.y, n_classes=n_classes, seed=seed)
        asr = attack_success_rate(module, attack, test, poisoned.target_class)
        asr_clean = attack_success_rate(baseline, attack, test, poisoned.target_class) if asr is not None else None
        rows.append(
            {
                "attack": attack_name,
                "rate": rate,
                "n_poison": len(poisoned.poison_index),
                "clean_accuracy": _accuracy(module, test),
                "baseline_accuracy": base_acc,
                "attack_success_rate": asr,
                "baseline_attack_success_rate": asr_clean,
                "cpu_s": time.process_time() - start,
            }
        )
    findings = [_curve_finding(rows, train.name, attack_name)]
    return Report(
        kind="poisoning",
        seed=seed,
        assets=[
            Asset(
                kind="dataset",
                name=train.name,
                digest=train.fingerprint(),
                details={"n": train.n, "merkle_root": fingerprint(train, order_independent=True).root},
            ),
            Asset(kind="recipe", name=recipe.factory, digest="sha256:" + recipe.digest()),
        ],
        findings=findings,
        results={"poisoning": rows},
        figures={
            "poisoning_curve": {
                "rates": [r["rate"] for r in rows],
                "clean_accuracy": [r["clean_accuracy"] for r in rows],
                "attack_success_rate": [r["attack_success_rate"] for r in rows],
            }
        },
        config={"attack": attack_name, "rates": rates, "recipe": recipe.to_mapping()},
    )


def _curve_finding(rows: Sequence[dict[str, Any]], asset: str, attack: str) -> Finding:
    with_asr = [r for r in rows if r["attack_success_rate"] is not None]
    if with_asr:
        working = [r for r in with_asr if r["attack_success_rate"] >= 0.5]
        lowest = min((r["rate"] for r in working), default=None)
        worst = max(r["attack_success_rate"] for r in with_asr)
        severity = (
            Severity.HIGH
            if lowest is not None and lowest <= 0.05
            else (Severity.MEDIUM if lowest is not None or worst >= 0.2 else Severity.LOW)
        )
        summary = (
            f"{attack} reaches {worst:.0%} attack success; the backdoor works (≥ 50 %) from a poison rate of "
            f"{lowest:.1%}."
            if lowest is not None
            else f"{attack} stays under 50 % attack success at every rate tried (best {worst:.0%})."
        )
        metrics: dict[str, float | int | str | bool | None] = {
            "max_attack_success_rate": worst,
            "min_working_rate": lowest,
        }
    else:
        drop = max(r["baseline_accuracy"] - r["clean_accuracy"] for r in rows)
        severity = Severity.HIGH if drop >= 0.05 else Severity.MEDIUM if drop >= 0.01 else Severity.LOW
        summary = f"{attack} lowers clean accuracy by up to {drop:.1%} over the rates tried."
        metrics = {"max_accuracy_drop": drop}
    return Finding(
        id=f"poisoning.{attack}",
        title=f"Training pipeline vs {attack} poisoning",
        severity=severity,
        asset=asset,
        summary=summary,
        metrics=metrics,
        evidence={"rates": [r["rate"] for r in rows]},
        taxonomy=TAXONOMY,
        remediation="Scan training data before training (hoplon data check) and remove what it flags "
        "(hoplon harden sanitize); record the dataset fingerprint.",
    )


def detection_metrics(scan: ScanResult, truth: torch.Tensor, *, flag: float = 0.5) -> dict[str, float | None]:
    """Precision/recall of ``combined >= flag`` and of the top-|poison| records, and AUROC, against ``truth``."""
    from sklearn.metrics import roc_auc_score

    truth = truth.bool()
    flagged = scan.combined >= flag
    k = int(truth.sum())
    top = scan.ranking[:k]
    n_flag = int(flagged.sum())
    return {
        "precision": float((flagged & truth).sum()) / n_flag if n_flag else None,
        "recall": float((flagged & truth).sum()) / k if k else None,
        "recall_at_k": float(truth[top].sum()) / k if k else None,
        "auroc": float(roc_auc_score(truth.numpy(), scan.combined.numpy())) if 0 < k < len(truth) else None,
    }


def data_check(data: Dataset, scan: ScanResult, *, truth: torch.Tensor | None = None, top: int = 20) -> Report:
    """A report of a dataset scan: every record ranked in ``results.records``; per-method figures when the
    ground truth (``truth``, a bool mask or an index vector) is known."""
    import torch

    results: dict[str, Any] = {"records": scan.records(), "skipped": dict(scan.skipped)}
    flagged = int((scan.combined >= 0.5).sum())
    metrics: dict[str, float | int | str | bool | None] = {"n_records": data.n, "n_flagged": flagged}
    if truth is not None:
        mask = truth if truth.dtype == torch.bool else torch.zeros(data.n, dtype=torch.bool).index_fill_(0, truth, True)
        results["detection"] = detection_metrics(scan, mask)
        per_method = {}
        for name, s in scan.scores.items():
            from hoplon.defenses.data import ScanResult as _SR

            one = _SR(scores={name: s}, combined=s, ranking=s.argsort(descending=True, stable=True))
            per_method[name] = detection_metrics(one, mask)
        results["detection_by_method"] = per_method
        metrics.update({f"{k}": v for k, v in results["detection"].items()})
    share = flagged / data.n
    severity = Severity.HIGH if share >= 0.01 else Severity.MEDIUM if flagged else Severity.INFO
    finding = Finding(
        id="data.poisoning.scan",
        title="Suspicious training records",
        severity=severity,
        asset=data.name,
        summary=f"{flagged} of {data.n} records ({share:.1%}) score at or above 0.5; the top {top} are listed "
        "as evidence.",
        metrics=metrics,
        evidence={"top": scan.records()[:top]},
        taxonomy=("atlas:AML.T0020", "atlas:AML.T0059", "owasp-ml:ML02", "nist-ai-rmf:MEASURE-2.7"),
        remediation="Inspect the top records; remove them with hoplon harden sanitize --remove top:P% and retrain.",
    )
    return Report(
        kind="data-check",
        assets=[Asset(kind="dataset", name=data.name, digest=data.fingerprint(), details={"n": data.n})],
        findings=[finding],
        results=results,
        config={"methods": sorted(scan.scores)},
    )


def sanitize_report(
    recipe: Recipe,
    before: Dataset,
    after: Dataset,
    removed: torch.Tensor,
    test: Dataset,
    *,
    attack: str | None = None,
    target_class: int = 0,
    seed: int = 0,
) -> Report:
    """Retrain ``recipe`` on the data before and after sanitising; clean accuracy (and a backdoor's success)."""
    from hoplon.attacks.poisoning import make_poisoning
    from hoplon.recipes import train as train_recipe

    n_classes = max(int(before.y.max()), int(test.y.max())) + 1
    trigger = make_poisoning(attack, rate=0.5, target_class=target_class) if attack else None
    row: dict[str, Any] = {"removed": len(removed), "n_before": before.n, "n_after": after.n}
    for stage, data in (("before", before), ("after", after)):
        module, _ = train_recipe(recipe, data.x, data.y, n_classes=n_classes, seed=seed)
        row[f"clean_accuracy_{stage}"] = _accuracy(module, test)
        row[f"attack_success_rate_{stage}"] = (
            attack_success_rate(module, trigger, test, target_class) if trigger is not None else None
        )
    asr_after = row["attack_success_rate_after"]
    severity = Severity.INFO if asr_after is None or asr_after <= 0.1 else Severity.HIGH
    finding = Finding(
        id="data.poisoning.sanitize",
        title="Sanitised training data",
        severity=severity,
        asset=before.name,
        summary=f"Removed {len(removed)} records; clean accuracy {row['clean_accuracy_before']:.1%} → "
        f"{row['clean_accuracy_after']:.1%}"
        + ("" if asr_after is None else f", attack success {row['attack_success_rate_before']:.1%} → {asr_after:.1%}")
        + ".",
        metrics={k: v for k, v in row.items() if isinstance(v, int | float) or v is None},
        evidence={"removed": [int(i) for i in removed]},
        taxonomy=TAXONOMY,
        remediation="Train on the sanitised data; keep its fingerprint (hoplon data fingerprint).",
    )
    return Report(
        kind="sanitize",
        seed=seed,
        findings=[finding],
        results={"sanitize": row},
        assets=[Asset(kind="dataset", name=before.name, digest=before.fingerprint())],
    )


def backdoor_audit(
    model: nn.Module,
    data: Dataset,
    *,
    n_classes: int,
    model_name: str = "model",
    fpr: float = 0.05,
    trigger: PoisonAttack | None = None,
    target_class: int = 0,
    neural_cleanse: NeuralCleanse | None = None,
    strip: STRIP | None = None,
) -> Report:
    """Neural Cleanse over every class and a STRIP detector calibrated on ``data`` at ``fpr``.

    With ``trigger`` (a known attack, for evaluation), STRIP's detection rate on triggered inputs is measured
    on the half of ``data`` not used for calibration.
    """
    import torch

    from hoplon.defenses.backdoor import STRIP, NeuralCleanse

    nc = (neural_cleanse or NeuralCleanse()).run(model, data.x, data.y, data.bounds, n_classes=n_classes)
    strip_rows: dict[str, Any] = {}
    half = data.n // 2
    detector = (strip or STRIP()).calibrate(model, data.x[:half], data.bounds, fpr=fpr)
    strip_rows = {"fpr": fpr, "threshold": detector.threshold, "measured_fpr": detector.measured_fpr}
    held = data.subset(slice(half, None))
    strip_rows["heldout_fpr"] = float(detector(held.x).float().mean())
    if trigger is not None:
        mask = held.y != target_class
        stamped = trigger.apply_trigger(held.x[mask], held)
        if stamped is not None:
            strip_rows["detection_rate"] = float(detector(stamped).float().mean())
    classes = [
        {
            "class": c,
            "mask_l1": float(nc.l1_norms[c]),
            "success": float(nc.success[c]),
            "anomaly_index": float(nc.anomaly_index[c]),
            "flagged": c in nc.flagged,
        }
        for c in range(n_classes)
    ]
    worst = nc.max_anomaly_index
    suspect = int(nc.anomaly_index.argmax())
    findings = [
        Finding(
            id="backdoor.neural-cleanse",
            title="Neural Cleanse trigger reverse-engineering",
            severity=Severity.HIGH if nc.flagged else Severity.INFO,
            asset=model_name,
            summary=(
                f"Class {suspect} needs an anomalously small trigger (anomaly index {worst:.2f} > {nc.threshold:g}): "
                "the model is likely backdoored to it."
                if nc.flagged
                else f"No class needs an anomalously small trigger (largest anomaly index {worst:.2f} ≤ "
                f"{nc.threshold:g})."
            ),
            metrics={"max_anomaly_index": worst, "suspect_class": suspect, "n_flagged": len(nc.flagged)},
            evidence={"flagged_classes": list(nc.flagged)},
            taxonomy=("atlas:AML.T0018", "atlas:AML.T0043.004", "owasp-ml:ML10", "nist-ai-rmf:MEASURE-2.7"),
            remediation="Do not deploy; find the poisoned training records (hoplon data check), retrain on "
            "sanitised data, and gate inputs with STRIP meanwhile."
            if nc.flagged
            else "",
        ),
        Finding(
            id="backdoor.strip",
            title="STRIP runtime detector calibrated",
            severity=Severity.INFO,
            asset=model_name,
            summary=f"STRIP flags inputs with blend entropy under {detector.threshold:.4g} ({fpr:.0%} "
            f"false positives on clean inputs; {strip_rows['heldout_fpr']:.1%} on held-out clean inputs)"
            + (
                f"; it detects {strip_rows['detection_rate']:.1%} of triggered inputs."
                if "detection_rate" in strip_rows
                else "."
            ),
            metrics={k: v for k, v in strip_rows.items() if isinstance(v, float | int)},
            taxonomy=("atlas:AML.T0043.004", "nist-ai-rmf:MEASURE-2.7"),
        ),
    ]
    figures = {
        "neural_cleanse": {
            "bounds": [float(data.bounds.lower.min()), float(data.bounds.upper.max())],
            "masks": [m.tolist() for m in nc.masks],
            "triggers": [(m * p).tolist() for m, p in zip(nc.masks, nc.patterns, strict=True)],
        }
    }
    _ = torch
    return Report(
        kind="backdoor",
        findings=findings,
        assets=[Asset(kind="model", name=model_name), Asset(kind="dataset", name=data.name, digest=data.fingerprint())],
        results={"neural_cleanse": classes, "strip": strip_rows},
        figures=figures,
    )
