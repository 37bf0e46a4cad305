"""The extraction audit: how much of the model an attacker copies per query spent, under each output hardening.

For every attack (Knockoff Nets, JbDA), every budget and every output-hardening setting of the gateway
(none, label-only, top-k, rounding, keyed noise: the same functions ``hoplon serve`` applies), it runs the
attack against the model seen through that setting and measures the surrogate's fidelity (agreement with the
victim on held-out data) and accuracy. The curve tells a user what each setting really costs an attacker.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hoplon.attacks.extraction import (
    EXTRACTION_TAXONOMY,
    agreement,
    fidelity,
    make_extraction_attack,
    transformed_digits,
)
from hoplon.core.errors import InputError
from hoplon.core.finding import Finding, Severity
from hoplon.core.report import Asset, Report
from hoplon.gateway.protocol import Hardening, ParsedInput, harden_response
from hoplon.targets.types import Capability, InputSpec, QueryCounter, ScoreKind

if TYPE_CHECKING:
    import torch

    from hoplon.data import Dataset
    from hoplon.targets import Target

__all__ = ["DEFAULT_SETTINGS", "HardenedTarget", "HardeningSetting", "extraction", "parse_setting"]

log = logging.getLogger(__name__)

REMEDIATION = (
    "Serve labels only (or top-1) to callers who do not need scores, keep a per-identity daily quota, and enable "
    "the gateway's extraction detectors (PRADA, stateful similarity) with quarantine on alarm."
)


@dataclass(frozen=True, slots=True)
class HardeningSetting:
    """One output-hardening setting of the gateway, by name (``none``, ``label-only``, ``top-3``, ``round-1``,
    ``noise-0.05``)."""

    name: str
    label_only: bool = False
    top_k: int | None = None
    round_digits: int | None = None
    noise_scale: float = 0.0


DEFAULT_SETTINGS: tuple[HardeningSetting, ...] = (
    HardeningSetting("none"),
    HardeningSetting("label-only", label_only=True),
    HardeningSetting("top-1", top_k=1),
    HardeningSetting("round-1", round_digits=1),
    HardeningSetting("noise-0.1", noise_scale=0.1),
)


def parse_setting(text: str) -> HardeningSetting:
    """``none``, ``label-only``, ``top-K``, ``round-D`` or ``noise-S``."""
    text = text.strip().lower()
    try:
        if text in ("none", "label-only"):
            return HardeningSetting(text, label_only=text == "label-only")
        kind, _, value = text.partition("-")
        if kind == "top":
            return HardeningSetting(text, top_k=int(value))
        if kind == "round":
            return HardeningSetting(text, round_digits=int(value))
        if kind == "noise":
            return HardeningSetting(text, noise_scale=float(value))
    except ValueError:
        pass
    raise InputError(f"An output setting must be none, label-only, top-K, round-D or noise-S. Got {text!r}.")


class HardenedTarget:
    """A target seen through the gateway's output hardening (the exact function ``hoplon serve`` applies)."""

    def __init__(self, inner: Target, setting: HardeningSetting, *, noise_key: bytes = b"hoplon-audit-noise") -> None:
        self.inner = inner
        self.setting = setting
        self.name = f"{inner.name} [{setting.name}]"
        self.n_classes = inner.n_classes
        self.input_spec: InputSpec = inner.input_spec
        self.score_kind: ScoreKind = "probabilities"
        self.counter: QueryCounter = inner.counter
        self.capabilities = (
            frozenset({Capability.LABELS}) if setting.label_only else frozenset({Capability.SCORES, Capability.LABELS})
        )
        self._hardening = Hardening(
            setting.label_only, setting.top_k, setting.round_digits, setting.noise_scale, noise_key, ()
        )

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        import numpy as np
        import torch

        raw = self.inner.predict(x).float()
        probs = torch.softmax(raw, 1) if self.inner.score_kind == "logits" else raw
        digests = ParsedInput(x.detach().cpu().numpy().astype(np.float64), "inputs").row_digests()
        doc, summary = harden_response({"predictions": probs.tolist()}, digests, self._hardening)
        if self.setting.label_only:
            return torch.nn.functional.one_hot(torch.tensor(summary["labels"]), self.n_classes).float()
        return torch.tensor(doc["predictions"], dtype=torch.float32)


def _severity(fid: float) -> Severity:
    if fid >= 0.9:
        return Severity.HIGH
    if fid >= 0.7:
        return Severity.MEDIUM
    if fid >= 0.5:
        return Severity.LOW
    return Severity.INFO


def findings_from_rows(rows: Sequence[dict[str, Any]], *, asset: str) -> list[Finding]:
    """One finding per (attack, setting): the fidelity reached at the largest budget. Pure."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row["attack"]), str(row["setting"])), []).append(row)
    baseline = {a: max(rs, key=lambda r: r["budget"])["fidelity"] for (a, s), rs in groups.items() if s == "none"}
    findings = []
    for (attack, setting), series in sorted(groups.items()):
        series = sorted(series, key=lambda r: int(r["budget"]))
        last = series[-1]
        curve = ", ".join(f"{r['fidelity']:.1%} at {r['budget']}" for r in series)
        metrics: dict[str, float | int | str | bool | None] = {f"fidelity@{r['budget']}": r["fidelity"] for r in series}
        metrics.update({f"surrogate_accuracy@{r['budget']}": r["surrogate_accuracy"] for r in series})
        base = baseline.get(attack)
        if base is not None and setting != "none":
            metrics["fidelity_reduction_vs_none"] = round(base - float(last["fidelity"]), 4)
        findings.append(
            Finding(
                id=f"extraction.{attack}.{setting}",
                title=f"{attack} extraction with output setting {setting}",
                severity=_severity(float(last["fidelity"])),
                asset=asset,
                summary=f"A {attack} surrogate agrees with the model on {curve} queries (output setting {setting}).",
                metrics=metrics,
                evidence={"budgets": [int(r["budget"]) for r in series]},
                taxonomy=EXTRACTION_TAXONOMY,
                remediation=REMEDIATION,
            )
        )
    return findings


def extraction(
    target: Target,
    test: Dataset,
    *,
    budgets: Sequence[int],
    attacks: Sequence[str] = ("knockoff", "jbda"),
    settings: Sequence[HardeningSetting] = DEFAULT_SETTINGS,
    transfer: torch.Tensor | None = None,
    seed_data: torch.Tensor | None = None,
    seed: int = 0,
    train_steps: int = 400,
    command: str | None = None,
    model_digest: str | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> Report:
    """Run every attack × budget × output setting; return the report (``results["extraction"]`` rows and a
    ``figures["extraction_curve"]`` per attack and setting).

    Args:
        target: the victim (any target with scores).
        test: held-out labelled data for fidelity and accuracy (never queried by the attacks' training).
        budgets: query budgets, each > 0.
        attacks: registered extraction attacks (``knockoff``, ``jbda``).
        settings: output-hardening settings; ``none`` is the baseline.
        transfer: Knockoff's transfer set; default :func:`transformed_digits` (8×8 models) or uniform noise.
        seed_data: JbDA's natural seed pool; default the first half of ``test`` (the second half measures).
    """
    import torch

    if not budgets or any(int(b) <= 0 for b in budgets):
        raise InputError(f"Budgets must be positive integers. Got {list(budgets)}.")
    if Capability.SCORES not in target.capabilities and Capability.LABELS not in target.capabilities:
        raise InputError(f"{target.name} answers neither scores nor labels.")
    budgets = sorted({int(b) for b in budgets})
    shape = tuple(target.input_spec.shape)
    half = len(test.x) // 2
    x_eval, y_eval = test.x[half:], test.y[half:]
    pool = seed_data if seed_data is not None else test.x[:half]
    if transfer is None:
        n = max(budgets)
        if shape == (1, 8, 8):
            transfer = transformed_digits(n, seed=seed)
        else:
            gen = torch.Generator().manual_seed(seed)
            low, high = test.bounds.lower.float(), test.bounds.upper.float()
            transfer = low + (high - low) * torch.rand((n, *shape), generator=gen)
    victim = target.predict(x_eval).argmax(1)
    rows: list[dict[str, Any]] = []
    total = len(attacks) * len(settings) * len(budgets)
    tick = progress("extraction", total) if progress is not None else None
    for name in attacks:
        for setting in settings:
            view = HardenedTarget(target, setting)
            for budget in budgets:
                attack = make_extraction_attack(name, budget=budget, train_steps=train_steps)
                before = target.counter.queries
                data = transfer if name == "knockoff" else pool
                result = attack.run(view, data, seed=seed)
                rows.append(
                    {
                        "attack": name,
                        "setting": setting.name,
                        "budget": budget,
                        "queries": result.n_queries,
                        "fidelity": round(fidelity(result.surrogate, victim, x_eval), 4),
                        "surrogate_accuracy": round(agreement(result.surrogate, x_eval, y_eval), 4),
                        "model_rows": target.counter.queries - before,
                        "label_only": result.label_only,
                    }
                )
                log.info("%s %s budget=%d fidelity=%.3f", name, setting.name, budget, rows[-1]["fidelity"])
                if tick is not None:
                    tick(1)
    curve = [
        {
            "attack": a,
            "setting": s.name,
            "budgets": [r["budget"] for r in rows if r["attack"] == a and r["setting"] == s.name],
            "fidelity": [r["fidelity"] for r in rows if r["attack"] == a and r["setting"] == s.name],
        }
        for a in attacks
        for s in settings
    ]
    return Report(
        kind="extraction",
        command=command if command is not None else shlex.join(["hoplon", *sys.argv[1:]]),
        seed=seed,
        assets=[
            Asset(kind="model", name=target.name, digest=model_digest, details={"n_classes": target.n_classes}),
            Asset(kind="dataset", name=test.name, digest=test.fingerprint(), details={"n_eval": len(x_eval)}),
        ],
        findings=findings_from_rows(rows, asset=target.name),
        results={"extraction": rows},
        figures={"extraction_curve": curve},
        config={
            "budgets": budgets,
            "attacks": list(attacks),
            "settings": [s.name for s in settings],
            "train_steps": train_steps,
            "n_eval": len(x_eval),
        },
    )
