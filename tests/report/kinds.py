"""Report builders for the privacy and certification kinds: small, deterministic, in the documented layouts
(``hoplon audit privacy``: docs/privacy.md; ``hoplon certify``: ``certification_rows``).

``tag`` is appended to every name a renderer shows (models, attacks, features, classes, file names), so the
hostile variants carry attacker-chosen text everywhere.
"""

from __future__ import annotations

import math
from typing import Any

from hoplon.core.finding import Finding, Severity
from hoplon.core.report import Asset, Report
from hoplon.defenses.certify import max_certifiable_radius

FPR_LEVELS = ("0.01", "0.001", "0.0001")


def _roc(strength: float, *, zero_tpr: float = 0.0) -> dict[str, list[float]]:
    """A ROC curve TPR = FPR ** strength on FPRs from 1/200 to 1, starting at (0, 0) and (0, zero_tpr)."""
    fpr = [0.0, 0.0] + [round(10 ** (-2.3 + 2.3 * k / 15), 6) for k in range(16)]
    tpr = [0.0, zero_tpr] + [round(f**strength, 6) for f in fpr[2:]]
    return {"fpr": fpr, "tpr": tpr}


def _row(model: str, attack: str, auc: float, tprs: tuple[float, float, float], **extra: Any) -> dict[str, Any]:
    return {
        "attack": attack,
        "auc": auc,
        "auc_ci": [auc - 0.04, auc + 0.04],
        "tpr_at_fpr": dict(zip(FPR_LEVELS, tprs, strict=True)),
        "tpr_at_fpr_ci": {k: [max(0.0, t - 0.02), t + 0.03] for k, t in zip(FPR_LEVELS, tprs, strict=True)},
        "advantage": 2 * (auc - 0.5),
        "balanced_accuracy": auc,
        "min_fpr": 0.005,
        "epsilon_lower_bound": 4 * (auc - 0.5),
        "n_members": 200,
        "n_nonmembers": 200,
        "model": model,
        "cpu_s": 0.25,
        "n_references": 0 if attack.startswith("loss") else 4,
        **extra,
    }


def _image(seed: int, size: int = 4) -> list[list[list[float]]]:
    return [[[round(((i * size + j) * (seed + 3) % 11) / 10, 2) for j in range(size)] for i in range(size)]]


def privacy_report(tag: str = "") -> Report:
    """An overfit and a DP model, two attacks each, every privacy section's data and two findings."""
    overfit, private = f"overfit{tag}", f"dp (ε=3){tag}"
    loss, rmia = f"loss{tag}", f"rmia{tag}"
    dp = {"dp_epsilon": 3.0, "dp_delta": 1e-5, "dp_tpr_bound": {k: 0.2 for k in FPR_LEVELS}}
    rows = [
        _row(overfit, loss, 0.71, (0.12, 0.03, 0.01)),
        _row(overfit, rmia, 0.78, (0.31, 0.12, 0.05)),
        _row(private, loss, 0.53, (0.02, 0.0, 0.0), **dp, dp_consistent=True),
        _row(private, rmia, 0.56, (0.04, 0.01, 0.0), **dp, dp_consistent=False),
    ]
    curves = [
        {"model": overfit, "attack": loss, **_roc(0.55)},
        {"model": overfit, "attack": rmia, **_roc(0.35, zero_tpr=0.04)},
        {"model": private, "attack": loss, **_roc(0.95)},
        {"model": private, "attack": rmia, **_roc(0.9)},
    ]
    exposure = [
        {"model": m, "attack": rmia, "index": i, "label": i % 3, "score": 1.0 - i / 100, "exposure": 1.0 - i / 50}
        for m in (overfit, private)
        for i in range(3)
    ]
    utility = [
        {
            "model": m,
            "epsilon": eps,
            "test_accuracy": acc,
            "attack": rmia,
            "auc": auc,
            "tpr_at_fpr": {"0.01": tpr, "0.001": tpr / 3, "0.0001": 0.0},
            "epsilon_lower_bound": 4 * (auc - 0.5),
        }
        for m, eps, acc, auc, tpr in ((private, 3.0, 0.88, 0.56, 0.04), (overfit, math.inf, 0.94, 0.78, 0.31))
    ]
    classes = [f"zero{tag}", f"one{tag}", f"two{tag}"]
    inversion_figures = [
        {
            "model": m,
            "classes": classes,
            "bounds": [0.0, 1.0],
            "reconstructions": [_image(c + shift) for c in range(3)],
            "class_means": [_image(c) for c in range(3)],
        }
        for m, shift in ((overfit, 0), (private, 5))
    ]
    inversion = [
        {
            "model": m,
            "attack": "mi-face",
            "classes": classes,
            "confidence": [0.99, 0.97, 0.95],
            "own_similarity": [0.8, 0.7, 0.75],
            "other_similarity": [0.5, 0.4, 0.45],
            "mean_own_similarity": 0.75,
            "mean_gap": 0.3,
            "identification_rate": rate,
            "chance_identification_rate": 1 / 3,
        }
        for m, rate in ((overfit, 1.0), (private, 1 / 3))
    ]
    attribute = [
        {
            "model": m,
            "feature": f"mean radius{tag}",
            "feature_index": 0,
            "n_bins": 4,
            "accuracy_members": acc,
            "baseline_accuracy_members": 0.25,
            "advantage_members": acc - 0.25,
            "accuracy_nonmembers": 0.3,
            "baseline_accuracy_nonmembers": 0.25,
            "advantage_nonmembers": 0.05,
            "membership_gap": acc - 0.3,
        }
        for m, acc in ((overfit, 0.55), (private, 0.31))
    ]
    findings = [
        Finding(
            id="privacy.membership",
            title=f"Membership inference on {m}",
            severity=severity,
            asset=m,
            summary=f"The strongest attack ({rmia}) tells training records from holdout records.",
            metrics={"auc": auc},
            taxonomy=("atlas:AML.T0024.000", "owasp-ml:ML04"),
            remediation="Train with differential privacy.",
        )
        for m, severity, auc in ((overfit, Severity.CRITICAL, 0.78), (private, Severity.LOW, 0.56))
    ]
    models = [
        {"model": overfit, "test_accuracy": 0.94, "record": {"epsilon": None, "private": False}},
        {
            "model": private,
            "test_accuracy": 0.88,
            "record": {"epsilon": 2.99, "delta": 1e-5, "accountant": f"prv{tag}", "noise_multiplier": 1.1},
        },
    ]
    return Report(
        kind="privacy",
        command=f"hoplon audit privacy --model {overfit}.pt",
        seed=0,
        assets=[Asset(kind="model", name=overfit), Asset(kind="model", name=private)],
        findings=findings,
        results={
            "privacy": rows,
            "privacy_exposure": exposure,
            "privacy_models": models,
            "overlap_removed": 2,
            "privacy_utility": utility,
            "inversion": inversion,
            "attribute_inference": attribute,
        },
        figures={
            "roc": {"axes": "log-log", "curves": curves},
            "privacy_utility": utility,
            "inversion": inversion_figures,
        },
        config={"attacks": [loss, rmia], "n_references": 4},
    )


CERT_N, CERT_ALPHA, CERT_SIGMA = 200, 0.001, 0.25
CERT_RADII = (0.0, 0.1, 0.25, 0.5, 0.75)


def certification_samples() -> list[dict[str, Any]]:
    """Twenty samples: 15 correct with radii spread up to the cap, 3 wrong, 2 abstaining (prediction -1)."""
    cap = max_certifiable_radius(CERT_N, CERT_ALPHA, CERT_SIGMA)
    radii = [round(cap * k / 14, 6) for k in range(15)]
    samples = [{"index": i, "label": i % 3, "prediction": i % 3, "radius": r} for i, r in enumerate(radii)]
    samples += [{"index": 15 + i, "label": 0, "prediction": 1, "radius": 0.2} for i in range(3)]
    samples += [{"index": 18 + i, "label": 2, "prediction": -1, "radius": 0.0} for i in range(2)]
    return samples


def certified_report(tag: str = "") -> Report:
    """A ``hoplon certify`` report: the curve at ``CERT_RADII`` computed from ``certification_samples``."""
    cap = max_certifiable_radius(CERT_N, CERT_ALPHA, CERT_SIGMA)
    samples = certification_samples()
    rows = [
        {
            "radius": r,
            "certified_accuracy": sum(1 for s in samples if s["prediction"] == s["label"] and s["radius"] >= r)
            / len(samples),
            "abstain_rate": 0.1,
            "n": CERT_N,
            "n0": 20,
            "alpha": CERT_ALPHA,
            "confidence": 1 - CERT_ALPHA,
            "sigma": CERT_SIGMA,
            "max_certifiable_radius": cap,
            "beyond_cap": r > cap,
            "samples": len(samples),
            "partial": False,
        }
        for r in CERT_RADII
    ]
    finding = Finding(
        id="certify.smoothing.l2",
        title="Certified L2 robustness (randomized smoothing)",
        severity=Severity.LOW,
        asset=f"model{tag}.pt",
        summary=f"Certified at L2 radius 0.25 for {tag} samples.",
        taxonomy=("atlas:AML.T0015", "owasp-ml:ML01"),
    )
    return Report(
        kind="certification",
        command=f"hoplon certify --model model{tag}.pt --sigma 0.25",
        seed=0,
        assets=[Asset(kind="model", name=f"model{tag}.pt"), Asset(kind="dataset", name=f"digits{tag}")],
        findings=[finding],
        results={
            "certified": rows,
            "samples": samples,
            "certified_samples": len(samples),
            "partial": False,
            "queries": 4400,
            "cpu_s": 1.5,
        },
        figures={"certified_curve": {"x": list(CERT_RADII), "y": [r["certified_accuracy"] for r in rows], "cap": cap}},
        config={"sigma": CERT_SIGMA, "n": CERT_N, "alpha": CERT_ALPHA},
    )
