"""``hoplon calibrate``: set every detector threshold for a stated per-identity false-positive rate.

Benign reference traffic is replayed over many synthetic identities (each draws its own queries from the
pool, interleaved so the shared fingerprints see cross-identity traffic). Half the identities set the
thresholds, each detector getting ``fpr / n_detectors`` (so the union stays within ``fpr``); the other half,
held out, measure the false-positive rate the calibrated config really has.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hoplon.core.errors import InputError
from hoplon.gateway.detectors.engine import DetectionEngine, Policy
from hoplon.gateway.detectors.prada import PRADA
from hoplon.gateway.detectors.signals import LowMargin
from hoplon.gateway.detectors.similarity import SharedFingerprints, StatefulSimilarity
from hoplon.gateway.detectors.stage import _merged, build_detectors
from hoplon.gateway.detectors.types import Detector

__all__ = ["SAFETY", "calibrate", "calibrate_file", "replay", "synthetic_identities"]

# A few hundred calibration identities cannot resolve a per-detector rate of fpr/4 (0.25 % at fpr=1 %): the
# threshold is set at the calibration quantile and then moved this far further out, measured on held-out ids.
SAFETY = 0.85


def synthetic_identities(
    n_pool: int, *, identities: int, queries: int, seed: int, prefix: str = "benign"
) -> dict[str, np.ndarray]:
    """Index sequences into a pool of ``n_pool`` samples, one per synthetic identity (no repeats within one
    identity when the pool is large enough)."""
    rng = np.random.default_rng(seed)
    return {f"{prefix}-{i:05d}": rng.choice(n_pool, size=queries, replace=queries > n_pool) for i in range(identities)}


def replay(
    detectors: Sequence[Detector], x: np.ndarray, probs: np.ndarray | None, plan: Mapping[str, np.ndarray]
) -> dict[str, set[str]]:
    """Replay ``plan`` (identity → indices) one query per identity per round; detector → identities alarmed."""
    engine = DetectionEngine(detectors, Policy(mode="shadow"))
    alarmed: dict[str, set[str]] = {d.name: set() for d in detectors}
    names = list(plan)
    rounds = max((len(v) for v in plan.values()), default=0)
    for r in range(rounds):
        for name in names:
            seq = plan[name]
            if r < len(seq):
                i = int(seq[r])
                for alarm in engine.observe(name, x[i : i + 1], None if probs is None else probs[i : i + 1]):
                    alarmed[alarm.detector].add(name)
    return alarmed


def _window_alarm(values: Sequence[float], threshold: float, window: int, hits: int) -> bool:
    flags = (np.asarray(values) < threshold).astype(np.int64)
    if flags.sum() < hits:
        return False
    sums = np.convolve(flags, np.ones(window, np.int64))[: len(flags)]
    return bool((sums >= hits).any())


def _largest_threshold(traces: Mapping[str, list[float]], window: int, hits: int, budget: float) -> float:
    """The largest distance threshold at which at most ``budget`` of the identities alarm (bisection)."""
    finite = np.concatenate([np.asarray(v)[np.isfinite(v)] for v in traces.values() if len(v)] or [np.zeros(1)])
    lo, hi = 1e-6, float(np.max(finite)) + 1e-6
    n = max(len(traces), 1)

    def rate(t: float) -> float:
        return sum(_window_alarm(v, t, window, hits) for v in traces.values()) / n

    if rate(lo) > budget:
        return lo
    for _ in range(30):
        mid = (lo + hi) / 2
        if rate(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def calibrate(
    spec: Mapping[str, Any],
    x: np.ndarray,
    probs: np.ndarray | None,
    *,
    fpr: float = 0.01,
    identities: int = 400,
    queries: int = 200,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Return the calibrated ``stages.detect`` mapping and, per detector, its threshold and measured rates."""
    if not 0 < fpr < 1:
        raise InputError(f"--fpr must be in (0, 1). Got {fpr}.")
    if identities < 4 or queries < 2:
        raise InputError("Calibration needs at least 4 identities and 2 queries each.")
    rows = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    s = _merged(spec)
    detectors, _ = build_detectors(s, rows.shape[1])
    enabled = [d.name for d in detectors]
    each = fpr / max(len([n for n in enabled if n != "volume"]), 1)
    half = identities // 2
    calib = synthetic_identities(len(rows), identities=half, queries=queries, seed=seed, prefix="calib")
    held = synthetic_identities(len(rows), identities=identities - half, queries=queries, seed=seed + 1, prefix="held")
    for d in detectors:
        if isinstance(d, PRADA | StatefulSimilarity | SharedFingerprints | LowMargin):
            d.trace = {}
    replay(detectors, rows, probs, calib)
    out = copy.deepcopy(s)
    summary: dict[str, dict[str, float]] = {}
    for d in detectors:
        if isinstance(d, PRADA) and d.trace is not None:
            ws = np.asarray([d.trace.get(n, 1.0) for n in calib])
            delta = float(np.quantile(ws, each, method="lower"))
            out["prada"]["delta"] = round(min(max(delta * (1 - (1 - SAFETY) / 4), 1e-3), 0.999), 4)
            summary["prada"] = {"delta": out["prada"]["delta"]}
        elif isinstance(d, StatefulSimilarity) and d.trace is not None:
            t = _largest_threshold(d.trace, d.buffer, d.hits, each) * SAFETY
            out["similarity"]["threshold"] = round(t, 4)
            summary["similarity"] = {"threshold": out["similarity"]["threshold"]}
        elif isinstance(d, SharedFingerprints) and d.trace is not None:
            t = _largest_threshold(d.trace, d.window, d.hits, each) * SAFETY
            out["shared"]["threshold"] = round(t, 4)
            summary["shared"] = {"threshold": out["shared"]["threshold"]}
        elif isinstance(d, LowMargin) and d.trace is not None:
            shares = np.asarray([d.trace.get(n, 0.0) for n in calib])
            rate = float(np.quantile(shares, 1 - each, method="higher")) if len(shares) else d.rate
            out["low_margin"]["rate"] = round(min(max(rate / SAFETY, 0.1), 1.0), 4)
            summary["low_margin"] = {"rate": out["low_margin"]["rate"]}
    # Held-out identities, with fresh detectors at the calibrated thresholds: the figure that counts.
    fresh, _ = build_detectors(out, rows.shape[1])
    alarmed = replay(fresh, rows, probs, held)
    union = set().union(*alarmed.values())
    for name, who in alarmed.items():
        summary.setdefault(name, {})["heldout_fpr"] = len(who) / max(len(held), 1)
    summary["all"] = {"heldout_fpr": len(union) / max(len(held), 1), "identities": float(len(held)), "fpr": fpr}
    return out, summary


def calibrate_file(
    config: Path,
    benign: Path,
    *,
    fpr: float,
    model: str | None,
    identities: int,
    queries: int,
    seed: int,
) -> tuple[str, dict[str, dict[str, float]]]:
    """Calibrate the ``stages.detect`` section of a config file; return the new YAML text and the summary."""
    import yaml

    try:
        raw = yaml.safe_load(Path(config).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"The gateway config {config} cannot be read: {exc}") from None
    try:
        with np.load(benign, allow_pickle=False) as npz:
            x = np.asarray(npz["x"], dtype=np.float32)
            probs = np.asarray(npz["scores"], dtype=np.float64) if "scores" in npz else None
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"The benign traffic {benign} cannot be read (needs an array 'x'): {exc}") from None
    if probs is None and model is not None:
        import torch

        from hoplon.targets import load_target

        target = load_target(model, input_shape=tuple(x.shape[1:]))
        with torch.no_grad():
            scores = target.predict(torch.from_numpy(x))
        probs = (torch.softmax(scores, 1) if target.score_kind == "logits" else scores).numpy().astype(np.float64)
    stages = raw.setdefault("stages", {})
    detect, summary = calibrate(
        stages.get("detect", {}), x, probs, fpr=fpr, identities=identities, queries=queries, seed=seed
    )
    user = dict(stages.get("detect", {}))
    for name in ("prada", "similarity", "shared", "low_margin"):
        if name in detect:
            keep = {k: v for k, v in detect[name].items() if k in ("delta", "threshold", "rate")}
            user[name] = {**dict(user.get(name, {})), **keep}
    stages["detect"] = user
    header = f"# calibrated by hoplon calibrate: per-identity FPR target {fpr}, held-out {summary['all']}\n"
    return header + yaml.safe_dump(raw, sort_keys=False), summary
