"""``hoplon audit``: audit a model (robustness today; privacy, poisoning and extraction plug in here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hoplon.cli._common import console, err_console, parse_floats, parse_names, progress_bars, robustness_table
from hoplon.cli.groups import audit_app
from hoplon.core.errors import EXIT_ERROR, EXIT_OK, EXIT_POLICY, InputError


def register(app: typer.Typer) -> None:
    """The robustness command joins the shared ``audit`` group (added to ``app`` by ``main``)."""


@audit_app.command("robustness")
def robustness_command(
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="Model file: TorchScript, ONNX, safetensors (with --arch), or a pickle with --trust."
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help="Data: .npz with x, y (and optional lower/upper), .csv, or a demo name (digits, breast-cancer).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the reports.")] = Path(
        "reports/robustness"
    ),
    norm: Annotated[str, typer.Option(help="Threat model norm: linf or l2.")] = "linf",
    eps: Annotated[str, typer.Option(help="Comma-separated perturbation budgets, in input units.")] = "0.05,0.1,0.2",
    attacks: Annotated[
        str, typer.Option(help="Comma-separated attacks; 'auto' adds the AutoAttack-style worst-case ensemble.")
    ] = "fgsm,pgd,auto",
    bounds: Annotated[str | None, typer.Option(help="Input box LO,HI when the data does not declare one.")] = None,
    arch: Annotated[
        str | None,
        typer.Option(help="Architecture for weight-only files: digits-cnn, tabular-mlp or package.module:function."),
    ] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="Allow pickle-based model files (they can run code when loaded).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
    n: Annotated[int | None, typer.Option("--n", help="Audit a seeded random subset of N samples.")] = None,
    label_column: Annotated[str, typer.Option(help="Label column of a CSV file.")] = "label",
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under", help="Policy gate, e.g. robust_accuracy=0.6 or robust_accuracy@0.1=0.6; exit 1 if not met."
        ),
    ] = None,
    max_queries: Annotated[int | None, typer.Option(help="Query budget for the whole audit (model rows).")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per attack batch.")] = 500,
    endpoint_config: Annotated[
        Path | None,
        typer.Option(help="For an http(s):// --model: TOML describing the request and where the scores sit."),
    ] = None,
) -> None:
    """Measure robustness to adversarial examples: robust accuracy per attack and ε, and the worst case."""
    from hoplon.audit import parse_gate
    from hoplon.audit import robustness as run_audit
    from hoplon.data import load_dataset, parse_bounds
    from hoplon.report import write_report
    from hoplon.targets import Budget, file_digest, load_target

    if norm not in ("linf", "l2"):
        raise InputError(f"--norm must be linf or l2. Got {norm!r}.")
    eps_values = parse_floats(eps, what="--eps")
    attack_names = parse_names(attacks)
    gates = [parse_gate(g) for g in fail_under or []]
    if batch_size <= 0:
        raise InputError(f"--batch-size must be positive. Got {batch_size}.")
    dataset = load_dataset(data, bounds=parse_bounds(bounds) if bounds else None, label=label_column)
    n_classes = int(dataset.y.max()) + 1
    target = load_target(
        model,
        input_shape=dataset.sample_shape,
        n_classes=max(n_classes, 2),
        bounds=dataset.bounds,
        arch=arch,
        trust=trust,
        budget=Budget(max_queries) if max_queries else None,
        endpoint_config=endpoint_config,
    )
    is_remote = model.startswith(("http://", "https://"))
    with progress_bars() as bars:
        report = run_audit(
            target,
            dataset,
            norm=norm,  # type: ignore[arg-type]
            eps=eps_values,
            attacks=attack_names,
            seed=seed,
            n_samples=n,
            gates=gates,
            batch_size=batch_size,
            model_digest=None if is_remote else file_digest(model),
            progress=bars,
        )
    paths = write_report(report, out)
    rows = report.results["robustness"]
    console.print(robustness_table(rows, f"Robustness of {target.name} on {dataset.name} ({norm})"))
    _print_outcome(report.results.get("gates", []), paths)
    if any(row.get("partial") for row in rows):
        err_console.print(
            "[bold red]error:[/] the query budget ran out or the endpoint stopped answering; the report holds the "
            "results gathered so far, marked partial.",
            highlight=False,
        )
        raise typer.Exit(EXIT_ERROR)
    failed = [g for g in report.results.get("gates", []) if not g["passed"]]
    raise typer.Exit(EXIT_POLICY if failed else EXIT_OK)


def _print_outcome(gates: list[dict[str, object]], paths: dict[str, Path]) -> None:
    for gate in gates:
        mark = "[green]pass[/]" if gate["passed"] else "[red]FAIL[/]"
        value = gate["value"]
        shown = "–" if value is None else f"{float(value):.3f}"  # type: ignore[arg-type]
        console.print(f"gate {gate['metric']} >= {gate['threshold']} at eps={gate['eps']}: {shown} {mark}")
    for fmt, path in paths.items():
        console.print(f"{fmt:>5}: {path}", soft_wrap=True, highlight=False)
