"""Audit a tabular classifier's robustness from Python, end to end, on scikit-learn's bundled breast-cancer data.

Trains hoplon's small MLP on the standardised features (seeded, about a second on one core), audits it under
L∞ perturbations with FGSM, PGD and the worst-case ensemble, writes report.json, report.html and report.sarif,
prints the robust accuracy per attack and ε, and exits 1 when the worst-case robust accuracy at ε = 0.1 is
under the gate — what ``hoplon audit robustness --fail-under robust_accuracy@0.1=...`` does from the shell.

Every feature stays inside the box the dataset declares ([-3, 3] standard deviations): no rescaling needed.

Run from the repository root:

    .venv/bin/python examples/robustness/audit_tabular.py --out reports/tabular
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/tabular"), help="folder for the three reports")
    parser.add_argument("--eps", default="0.1,0.3,0.5", help="L∞ budgets, in standard deviations")
    parser.add_argument("--gate", type=float, default=0.6, help="worst-case robust accuracy floor at ε = 0.1")
    args = parser.parse_args(argv)

    import torch

    import hoplon.audit
    from hoplon.audit import parse_gate
    from hoplon.core.memory import keep_freed_memory
    from hoplon.data import demo
    from hoplon.models import accuracy, tabular_mlp, train_classifier
    from hoplon.report import write_report
    from hoplon.targets import TorchTarget

    torch.set_num_threads(1)
    keep_freed_memory()  # as the CLI does for its tensor commands
    train, test = demo("breast-cancer", split="train"), demo("breast-cancer", split="test")
    torch.manual_seed(0)
    model = tabular_mlp(input_shape=train.sample_shape, n_classes=2)
    train_classifier(model, train.x, train.y, seed=0)
    print(f"breast-cancer MLP: clean test accuracy {accuracy(model, test.x, test.y):.1%}")

    target = TorchTarget(model, input_shape=test.sample_shape, bounds=test.bounds, name="breast-cancer-mlp")
    report = hoplon.audit.robustness(
        target,
        test,
        norm="linf",
        eps=[float(e) for e in args.eps.split(",")],
        attacks=["fgsm", "pgd", "auto"],
        seed=0,
        gates=[parse_gate(f"robust_accuracy@0.1={args.gate}")],
        command="examples/robustness/audit_tabular.py",
    )
    paths = write_report(report, args.out)

    for row in report.results["robustness"]:
        print(
            f"{row['attack']:>11}  eps={row['eps']:<4g} robust accuracy {row['robust_accuracy']:6.1%}  "
            f"attack success {row['attack_success_rate']:6.1%}  queries/sample {row['queries_per_sample']:7.1f}"
        )
    for gate in report.results["gates"]:
        verdict = "pass" if gate["passed"] else "FAIL"
        print(f"gate {gate['metric']} >= {gate['threshold']} at eps={gate['eps']}: {verdict}")
    print(f"HTML report: {paths['html'].resolve()}")
    return 0 if all(g["passed"] for g in report.results["gates"]) else 1


if __name__ == "__main__":
    sys.exit(main())
