"""``hoplon scan``'s own front end: argparse, no Typer, no pydantic, Rich only to draw the table.

``hoplon scan`` is the command people put in front of every download and in every CI job, so its start-up
is part of its cost. ``hoplon.cli.main`` sends ``hoplon scan ...`` here before it builds the Typer app;
the Typer ``scan`` command (``hoplon.cli.scan``) forwards its arguments here too, so the options are
defined once, in :func:`build_parser`.

Exit codes: 0 clean, 1 unsafe or suspicious at the ``--policy`` level, 2 error (a usage error too).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from hoplon.core.errors import EXIT_ERROR, EXIT_OK, EXIT_POLICY, HoplonError, InputError

if TYPE_CHECKING:
    from hoplon.scan.types import FileRecord

__all__ = ["FORMATS", "build_parser", "main", "run"]

FORMATS = ("table", "json", "sarif", "text")
_VERDICT_STYLE = {"clean": "green", "suspicious": "yellow", "unsafe": "bold red", "error": "magenta"}


def build_parser(prog: str = "hoplon scan") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Scan model files without loading them; exit 1 if anything reaches the policy level.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="Files, folders (scanned recursively) or archives.")
    parser.add_argument("--format", "-f", choices=FORMATS, default="table", help="table, json, sarif or text.")
    parser.add_argument("--out", "-o", type=Path, default=None, help="Write the report here, not stdout.")
    parser.add_argument(
        "--policy",
        default="low",
        help="Lowest severity that fails the scan (exit 1): info, low, medium, high, critical. Default: low.",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="Time limit per file, seconds. Default: 30.")
    parser.add_argument("--hash", dest="hash_files", action="store_true", help="Record each file's SHA-256.")
    return parser


def render_table(records: Sequence[FileRecord], file: IO[str]) -> None:
    """The on-screen table: file, format, verdict, severity, offending callables with their offsets."""
    from rich.console import Console
    from rich.table import Table

    from hoplon.scan.output import offending

    console = Console(file=file)
    table = Table(title="hoplon scan", show_lines=False)
    table.add_column("file", overflow="fold")
    table.add_column("format")
    table.add_column("verdict")
    table.add_column("severity")
    table.add_column("offending callables / findings", overflow="fold")
    for r in records:
        style = _VERDICT_STYLE.get(r.verdict, "")
        items = offending(r)
        shown = ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
        table.add_row(r.path, r.format, f"[{style}]{r.verdict}[/]", r.severity.label, shown)
    console.print(table)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    console.print(", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "nothing scanned")


def run(argv: Sequence[str], *, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Parse ``argv`` (the arguments after ``scan``), scan, write the output; return the exit code.

    Input errors (a missing path, an unknown policy) raise :class:`~hoplon.core.errors.HoplonError`;
    a usage error exits through argparse with code 2.
    """
    from hoplon.core.finding import Severity
    from hoplon.scan.output import to_json, to_sarif, to_text
    from hoplon.scan.scanner import fails_policy, scan_paths
    from hoplon.scan.types import ScanLimits

    out_stream = sys.stdout if stdout is None else stdout
    err_stream = sys.stderr if stderr is None else stderr
    args = build_parser().parse_args(list(argv))
    threshold = Severity.parse(args.policy)
    if not args.timeout > 0:
        raise InputError(f"--timeout must be a positive number of seconds. Got {args.timeout}.")
    records = scan_paths(args.paths, limits=ScanLimits(timeout_s=args.timeout), hash_files=args.hash_files)
    renderers = {"json": to_json, "sarif": to_sarif, "text": to_text}
    rendered = renderers[args.format](records) if args.format in renderers else None
    if args.out is not None:
        args.out.write_text(rendered if rendered is not None else to_text(records), encoding="utf-8")
        render_table(records, err_stream if args.format == "table" else out_stream)
    elif rendered is not None:
        out_stream.write(rendered)
    else:
        render_table(records, out_stream)
    if fails_policy(records, threshold):
        return EXIT_POLICY
    if any(r.verdict == "error" for r in records):
        return EXIT_ERROR
    return EXIT_OK


def main(argv: Sequence[str]) -> int:
    """``hoplon scan`` without the Typer app: a user's mistake is one line on stderr, never a traceback."""
    try:
        return run(argv)
    except HoplonError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
