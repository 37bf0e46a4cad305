"""Helpers shared by CLI commands: parsing lists, progress bars, the summary table."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hoplon.core.errors import InputError

console = Console()
err_console = Console(stderr=True)


def parse_floats(text: str, *, what: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"{what} must be a comma-separated list of numbers (e.g. 0.05,0.1). Got {text!r}.") from None
    if not values:
        raise InputError(f"{what} needs at least one value.")
    return values


def parse_names(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise InputError("At least one name is needed.")
    return names


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Yield a factory of progress callbacks, shown on stderr when it is a terminal."""
    progress = Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not err_console.is_terminal,
        transient=False,
    )

    def factory(label: str, total: int) -> Callable[[int], None]:
        task = progress.add_task(label, total=total)
        return lambda n: progress.advance(task, n)

    with progress:
        yield factory


def _fmt(value: Any, kind: str = "pct") -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{float(value):.1%}"
    if kind == "num":
        return f"{float(value):.3g}"
    return str(value)


def robustness_table(rows: Sequence[dict[str, Any]], title: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption="robust = robust accuracy; ASR = attack success rate on correctly classified samples; "
        "L∞/L2 = median perturbation of successful samples; q/x = model rows per sample.",
        caption_justify="left",
    )
    for column in ("attack", "eps", "clean", "robust", "ASR", "L∞", "L2", "q/x", "CPU s"):
        table.add_column(column, justify="left" if column == "attack" else "right", no_wrap=True)
    for row in rows:
        style = "bold" if row["attack"] == "worst-case" else None
        attack = row["attack"] + (" (partial)" if row.get("partial") else "")
        table.add_row(
            attack,
            f"{row['eps']:g}",
            _fmt(row["clean_accuracy"]),
            _fmt(row["robust_accuracy"]),
            _fmt(row["attack_success_rate"]),
            _fmt(row["median_linf"], "num"),
            _fmt(row["median_l2"], "num"),
            f"{row['queries_per_sample']:.1f}",
            f"{row['cpu_s']:.2f}",
            style=style,
        )
    return table
