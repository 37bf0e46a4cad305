"""The certification audit: randomized smoothing over a dataset, a certified-accuracy curve, findings, a report."""

from __future__ import annotations

import math
import shlex
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hoplon.core.errors import BudgetExceeded, InputError
from hoplon.core.finding import Finding, Severity
from hoplon.core.report import Asset, Report
from hoplon.defenses.certify import Certificate, Smooth, certified_accuracy, max_certifiable_radius

if TYPE_CHECKING:
    from hoplon.data import Dataset
    from hoplon.targets import Target

__all__ = ["DEFAULT_RADII", "certification_rows", "certify"]

DEFAULT_RADII: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
TAXONOMY = ("atlas:AML.T0015", "owasp-ml:ML01", "nist-ai-rmf:MEASURE-2.7")


def certification_rows(
    certificate: Certificate, y: Any, radii: Sequence[float], *, partial: bool = False
) -> list[dict[str, Any]]:
    """One row per radius in the documented ``results.certified`` layout (each row states n, α and σ)."""
    cap = max_certifiable_radius(certificate.n, certificate.alpha, certificate.sigma)
    abstain = float(certificate.abstained.float().mean()) if len(y) else 0.0
    return [
        {
            "radius": float(r),
            "certified_accuracy": certified_accuracy(certificate, y, float(r)),
            "abstain_rate": abstain,
            "n": certificate.n,
            "n0": certificate.n0,
            "alpha": certificate.alpha,
            "confidence": 1.0 - certificate.alpha,
            "sigma": certificate.sigma,
            "max_certifiable_radius": cap,
            "beyond_cap": float(r) > cap,
            "samples": len(y),
            "partial": partial,
        }
        for r in sorted(set(radii))
    ]


def _finding(rows: list[dict[str, Any]], asset: str, focus: float) -> Finding:
    row = min(rows, key=lambda r: abs(r["radius"] - focus))
    cap = row["max_certifiable_radius"]
    acc = row["certified_accuracy"]
    severity = Severity.INFO if acc >= 0.6 else Severity.LOW if acc >= 0.3 else Severity.MEDIUM
    return Finding(
        id="certify.smoothing.l2",
        title="Certified L2 robustness (randomized smoothing)",
        severity=severity,
        asset=asset,
        summary=(
            f"{acc:.1%} of samples are certified correct within L2 radius {row['radius']:g} "
            f"(sigma={row['sigma']:g}, n={row['n']}, alpha={row['alpha']:g}, i.e. {row['confidence']:.1%} confidence "
            f"per sample); {row['abstain_rate']:.1%} abstain. With n={row['n']} no radius above {cap:.3g} can be "
            "certified, so a curve flat at that cap shows the sample count's limit."
        ),
        metrics={
            "radius": row["radius"],
            "certified_accuracy": acc,
            "abstain_rate": row["abstain_rate"],
            "sigma": row["sigma"],
            "n": row["n"],
            "alpha": row["alpha"],
            "max_certifiable_radius": cap,
        },
        evidence={"partial": bool(row["partial"])},
        taxonomy=TAXONOMY,
        remediation=(
            "Train with Gaussian noise at the same sigma (hoplon harden adversarial --method gaussian) to raise the "
            "certified accuracy; more noise draws (n) raise the largest certifiable radius."
        ),
    )


def certify(
    target: Target,
    data: Dataset,
    *,
    sigma: float,
    n0: int = 100,
    n: int = 10_000,
    alpha: float = 0.001,
    radii: Sequence[float] = DEFAULT_RADII,
    focus_radius: float = 0.5,
    seed: int = 0,
    n_samples: int | None = None,
    batch_size: int = 1000,
    command: str | None = None,
    model_digest: str | None = None,
) -> Report:
    """Certify ``target``'s smoothed classifier on ``data`` and return the report.

    Samples are certified in chunks; if the target's query budget runs out, the samples certified so far are
    reported and every row is marked ``partial`` (the CLI then exits with code 2).

    Returns:
        A :class:`Report` of kind ``certification`` with ``results.certified`` (the curve, one row per
        radius) and ``results.samples`` (per-sample prediction, radius, label).
    """
    import torch

    smooth = Smooth(sigma=sigma, batch_size=batch_size)
    if not radii or any(not (math.isfinite(r) and r >= 0) for r in radii):
        raise InputError(f"Radii must be finite numbers >= 0. Got {list(radii)}.")
    target.input_spec.check(data.x, what="data")
    data.check_labels(target.n_classes)
    if n_samples is not None:
        if n_samples <= 0:
            raise InputError(f"The number of samples must be positive. Got {n_samples}.")
        order = torch.randperm(data.n, generator=torch.Generator().manual_seed(seed))[:n_samples]
        data = data.subset(order.sort().values)
    chunk = 10
    parts: list[Certificate] = []
    partial = False
    cpu0, q0 = time.process_time(), target.counter.queries
    for start in range(0, data.n, chunk):
        try:
            parts.append(
                smooth.certify(target, data.x[start : start + chunk], n0=n0, n=n, alpha=alpha, seed=seed + start)
            )
        except BudgetExceeded:
            partial = True
            break
    if not parts:
        raise BudgetExceeded(
            "The query budget ran out before one chunk of samples was certified; nothing to report.",
            used=target.counter.queries,
        )
    certificate = Certificate(
        torch.cat([p.prediction for p in parts]),
        torch.cat([p.radius for p in parts]),
        torch.cat([p.p_lower for p in parts]),
        n,
        n0,
        alpha,
        sigma,
    )
    done = len(certificate.prediction)
    y = data.y[:done]
    rows = certification_rows(certificate, y, [*radii, focus_radius], partial=partial)
    triples = zip(y.tolist(), certificate.prediction.tolist(), certificate.radius.tolist(), strict=True)
    samples = [
        {"index": i, "label": int(label), "prediction": int(p), "radius": float(r)}
        for i, (label, p, r) in enumerate(triples)
    ]
    return Report(
        kind="certification",
        command=command if command is not None else shlex.join(["hoplon", *sys.argv[1:]]),
        seed=seed,
        assets=[
            Asset(kind="model", name=target.name, digest=model_digest, details={"n_classes": target.n_classes}),
            Asset(kind="dataset", name=data.name, digest=data.fingerprint(), details={"n": data.n}),
        ],
        findings=[_finding(rows, target.name, focus_radius)],
        results={
            "certified": rows,
            "samples": samples,
            "certified_samples": done,
            "partial": partial,
            "queries": target.counter.queries - q0,
            "cpu_s": time.process_time() - cpu0,
        },
        figures={
            "certified_curve": {
                "x": [r["radius"] for r in rows],
                "y": [r["certified_accuracy"] for r in rows],
                "cap": rows[0]["max_certifiable_radius"],
            }
        },
        config={"sigma": sigma, "n0": n0, "n": n, "alpha": alpha, "radii": sorted(set(radii)), "n_samples": data.n},
    )
