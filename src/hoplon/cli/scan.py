"""``hoplon scan``, ``sign``, ``verify``, ``keygen`` and ``bom``: the supply-chain commands.

Exit codes: 0 clean (or verified), 1 unsafe or suspicious at the ``--policy`` level (or verification
failed), 2 error. Only ``hoplon.scan``'s light modules are imported at start-up.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hoplon.core.errors import EXIT_ERROR, EXIT_POLICY, InputError
from hoplon.core.finding import Severity

__all__ = ["register"]

console = Console()
err_console = Console(stderr=True)

_VERDICT_STYLE = {"clean": "green", "suspicious": "yellow", "unsafe": "bold red", "error": "magenta"}


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"
    text = "text"


def _render_table(records: list, console: Console) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    from hoplon.scan.output import offending

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


def scan_command(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders (scanned recursively) or archives.")],
    format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table, json, sarif or text.")
    ] = OutputFormat.table,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the report here, not stdout.")] = None,
    policy: Annotated[
        str,
        typer.Option(help="Lowest severity that fails the scan (exit 1): info, low, medium, high, critical."),
    ] = "low",
    timeout_s: Annotated[float, typer.Option("--timeout", help="Time limit per file, seconds.")] = 30.0,
    hash_files: Annotated[bool, typer.Option("--hash", help="Record each file's SHA-256.")] = False,
) -> None:
    """Scan model files without loading them; exit 1 if anything reaches the policy level."""
    from hoplon.scan.output import to_json, to_sarif, to_text
    from hoplon.scan.scanner import fails_policy, scan_paths
    from hoplon.scan.types import ScanLimits

    threshold = Severity.parse(policy)
    records = scan_paths(paths, limits=ScanLimits(timeout_s=timeout_s), hash_files=hash_files)
    rendered = None
    if format is OutputFormat.json:
        rendered = to_json(records)
    elif format is OutputFormat.sarif:
        rendered = to_sarif(records)
    elif format is OutputFormat.text:
        rendered = to_text(records)
    if out is not None:
        out.write_text(rendered if rendered is not None else to_text(records), encoding="utf-8")
        _render_table(records, err_console if format is OutputFormat.table else console)
    elif rendered is not None:
        sys.stdout.write(rendered)
    else:
        _render_table(records, console)
    if fails_policy(records, threshold):
        raise typer.Exit(EXIT_POLICY)
    if any(r.verdict == "error" for r in records):
        raise typer.Exit(EXIT_ERROR)


def sign_command(
    path: Annotated[Path, typer.Argument(help="A model file or folder.")],
    key: Annotated[Path, typer.Option("--key", "-k", help="Private key (PEM, ECDSA), e.g. from `hoplon keygen`.")],
    signature: Annotated[Path | None, typer.Option("--signature", "-s", help="Where to write the signature.")] = None,
) -> None:
    """Sign a model file or folder (OpenSSF model-signing format: SHA-256 of every file, then a signature)."""
    from hoplon.scan.signing import sign_model

    written = sign_model(path, private_key=key, signature=signature)
    console.print(f"signed {path} -> {written}")


def verify_command(
    path: Annotated[Path, typer.Argument(help="A model file or folder.")],
    key: Annotated[Path, typer.Option("--key", "-k", help="Public key (PEM) of the signer.")],
    signature: Annotated[Path | None, typer.Option("--signature", "-s", help="The signature to check.")] = None,
) -> None:
    """Verify a signed model; exit 1 naming every changed, added or removed file."""
    from hoplon.scan.signing import verify_model

    result = verify_model(path, public_key=key, signature=signature)
    if result.ok:
        console.print(f"[green]verified[/] {path}: {result.describe()}")
        return
    console.print(f"[bold red]verification failed[/] {path}: {result.describe()}", highlight=False)
    raise typer.Exit(EXIT_POLICY)


def keygen_command(
    private: Annotated[Path, typer.Option("--private", help="Private key file to write.")] = Path("private.pem"),
    public: Annotated[Path, typer.Option("--public", help="Public key file to write.")] = Path("public.pem"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
) -> None:
    """Make an ECDSA P-256 key pair for `hoplon sign` / `hoplon verify`."""
    from hoplon.scan.signing import generate_keypair

    generate_keypair(private, public, overwrite=force)
    console.print(f"wrote {private} (keep it secret) and {public}")


def bom_command(
    path: Annotated[Path, typer.Argument(help="A model folder (or file).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the CycloneDX JSON.")] = Path(
        "model.cdx.json"
    ),
) -> None:
    """Write a CycloneDX 1.6 ML-BOM of a model folder."""
    from hoplon.scan.bom import build_bom, validate_bom

    doc = build_bom(path)
    problem = validate_bom(doc)
    if problem is not None:
        raise InputError(f"The generated BOM does not validate against CycloneDX 1.6: {problem}")
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {out} ({len(doc.get('components', []))} components)")


def register(app: typer.Typer) -> None:
    """Add the supply-chain commands to ``app``."""
    app.command("scan")(scan_command)
    app.command("sign")(sign_command)
    app.command("verify")(verify_command)
    app.command("keygen")(keygen_command)
    app.command("bom")(bom_command)


def _standalone() -> int:  # pragma: no cover - used by the benchmark when the full CLI is not assembled
    from hoplon.core.errors import HoplonError

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    try:
        code = app(standalone_mode=False)
    except HoplonError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_standalone())
