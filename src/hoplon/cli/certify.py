"""``hoplon certify``: randomized-smoothing certificates (Cohen et al. 2019) and the certified-accuracy curve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from hoplon.cli._common import console, err_console, parse_floats
from hoplon.core.errors import EXIT_ERROR, EXIT_OK


def register(app: typer.Typer) -> None:
    """Add ``hoplon certify`` to the root app."""
    app.command("certify")(certify_command)


def certified_table(rows: list[dict[str, Any]], title: str) -> Table:
    first = rows[0]
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption=(
            f"n={first['n']} noise draws (n0={first['n0']}), alpha={first['alpha']:g} "
            f"({first['confidence']:.1%} confidence per sample), sigma={first['sigma']:g}; "
            f"{first['abstain_rate']:.1%} of samples abstain. The largest radius n draws can certify is "
            f"{first['max_certifiable_radius']:.3g}: rows beyond it are marked *."
        ),
        caption_justify="left",
    )
    for column in ("L2 radius", "certified accuracy"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        mark = " *" if row["beyond_cap"] else ""
        table.add_row(f"{row['radius']:g}{mark}", f"{row['certified_accuracy']:.1%}")
    return table


def certify_command(
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="Model file: TorchScript, ONNX, safetensors (with --arch), or a pickle with --trust."
        ),
    ],
    data: Annotated[str, typer.Option("--data", "-d", help="Data: .npz, .csv or a demo name.")],
    sigma: Annotated[float, typer.Option(help="Gaussian noise level (input units), > 0.")],
    n0: Annotated[int, typer.Option("--n0", help="Noise draws to choose each sample's class.")] = 100,
    n: Annotated[int, typer.Option("--n", help="Noise draws to bound the class's probability.")] = 10_000,
    alpha: Annotated[float, typer.Option(help="Failure probability per certificate (confidence 1 - alpha).")] = 0.001,
    radii: Annotated[str, typer.Option(help="Comma-separated L2 radii of the certified-accuracy curve.")] = (
        "0,0.25,0.5,0.75,1,1.25,1.5"
    ),
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the reports.")] = Path("reports/certify"),
    samples: Annotated[
        int | None, typer.Option("--samples", help="Certify a seeded random subset of N samples.")
    ] = None,
    bounds: Annotated[str | None, typer.Option(help="Input box LO,HI when the data does not declare one.")] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture for weight-only files.")] = None,
    trust: Annotated[bool, typer.Option("--trust", help="Allow pickle-based model files.")] = False,
    max_queries: Annotated[int | None, typer.Option(help="Query budget (model rows) for the whole run.")] = None,
    batch_size: Annotated[int, typer.Option(help="Noisy rows per model call.")] = 1000,
    label_column: Annotated[str, typer.Option(help="Label column of a CSV file.")] = "label",
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
) -> None:
    """Certify L2 robustness by randomized smoothing: per-sample prediction or abstain, and certified radius."""
    from hoplon.audit.certify import certify
    from hoplon.data import load_dataset, parse_bounds
    from hoplon.defenses.certify import Smooth
    from hoplon.report import write_report
    from hoplon.targets import Budget, file_digest, load_target

    Smooth(sigma=sigma, batch_size=batch_size)  # validates sigma before any loading
    radius_values = parse_floats(radii, what="--radii")
    dataset = load_dataset(data, bounds=parse_bounds(bounds) if bounds else None, label=label_column)
    target = load_target(
        model,
        input_shape=dataset.sample_shape,
        n_classes=max(int(dataset.y.max()) + 1, 2),
        bounds=dataset.bounds,
        arch=arch,
        trust=trust,
        budget=Budget(max_queries) if max_queries else None,
    )
    report = certify(
        target,
        dataset,
        sigma=sigma,
        n0=n0,
        n=n,
        alpha=alpha,
        radii=radius_values,
        seed=seed,
        n_samples=samples,
        batch_size=batch_size,
        model_digest=file_digest(model),
    )
    paths = write_report(report, out)
    rows = report.results["certified"]
    console.print(certified_table(rows, f"Certified accuracy of {target.name} on {dataset.name} (L2, smoothing)"))
    for fmt, path in paths.items():
        console.print(f"{fmt:>5}: {path}", soft_wrap=True, highlight=False)
    if report.results["partial"]:
        err_console.print(
            f"[bold red]error:[/] the query budget ran out after {report.results['certified_samples']} samples; "
            "the report holds those (marked partial).",
            highlight=False,
        )
        raise typer.Exit(EXIT_ERROR)
    raise typer.Exit(EXIT_OK)
