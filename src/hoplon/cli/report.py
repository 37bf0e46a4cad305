"""``hoplon report``: re-render a saved ``report.json`` as HTML, SARIF, Markdown or JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hoplon.core.errors import InputError
from hoplon.core.report import Report

__all__ = ["register"]

FORMATS = ("html", "sarif", "md", "json")
_SUFFIXES = {".html": "html", ".htm": "html", ".sarif": "sarif", ".md": "md", ".json": "json"}


def _render(
    report_json: Annotated[Path, typer.Argument(help="A report.json written by hoplon (schema hoplon.report/v1).")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", help="html, sarif, md or json. Default: from the --out suffix, else html."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="File to write (atomically). Default: stdout.")
    ] = None,
) -> None:
    """Re-render a saved report.json."""
    from hoplon.report.writer import atomic_write_text, render

    chosen = fmt or (_SUFFIXES.get(out.suffix.lower()) if out is not None else None) or "html"
    if chosen not in FORMATS:
        raise InputError(f"Unknown report format {chosen!r}; use one of: {', '.join(FORMATS)}.")
    try:
        report = Report.read(report_json)
    except (AttributeError, ValueError) as exc:  # e.g. a JSON list instead of an object; InputError passes
        if isinstance(exc, InputError):
            raise
        raise InputError(f"Cannot read report {report_json}: {exc}") from None
    text = render(report, chosen)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        atomic_write_text(out, text)
    except OSError as exc:
        raise InputError(f"Cannot write {out}: {exc}") from None
    typer.echo(f"wrote {out}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``report`` command group to the ``hoplon`` app."""
    sub = typer.Typer(help="Work with saved reports (re-render report.json).", no_args_is_help=True)
    sub.command("render")(_render)
    app.add_typer(sub, name="report")
