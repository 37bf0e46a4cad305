"""``hoplon ledger verify|export|checkpoint``: check and read the tamper-evident audit ledger offline.

Exit codes: 0 verified, 1 the ledger was tampered with (the first bad entry is named), 2 error.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hoplon.core.errors import EXIT_POLICY, InputError

__all__ = ["register"]

console = Console()
err_console = Console(stderr=True)
ledger_app = typer.Typer(help="Verify and export the tamper-evident audit ledger.", no_args_is_help=True)


def ledger_url(text: str) -> str:
    """``sqlite:///…`` and ``postgresql://…`` pass through; a plain path becomes a SQLite URL."""
    if "://" in text or text.startswith("sqlite:"):
        return text
    return "sqlite:///" + str(Path(text))


def _parse_time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"Times are ISO 8601 (2026-11-29T10:00:00+00:00) or Unix seconds. Got {text!r}.") from None
    if parsed.tzinfo is None:
        raise InputError(f"Give a time zone with the time (e.g. {text}+00:00), so no one reads it differently.")
    return parsed.timestamp()


@ledger_app.command("verify")
def verify_command(
    url: Annotated[str, typer.Argument(help="The ledger: sqlite:///path.db, postgresql://… or a .db path.")],
    public_key: Annotated[
        list[Path] | None, typer.Option("--public-key", help="PEM public key(s) that may sign checkpoints (pins them).")
    ] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option("--checkpoint", help="A checkpoint JSON kept elsewhere; the ledger must extend it."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check the hash chain, every signed checkpoint and consistency proofs; name the first bad entry."""
    from hoplon.ledger import Checkpoint, load_public_key, verify_url

    keys = [load_public_key(p.read_bytes()) for p in public_key or []]
    trusted = [Checkpoint.from_dict(json.loads(p.read_text())) for p in checkpoint or []]
    result = verify_url(ledger_url(url), public_keys=keys, trusted=trusted)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for warning in result.warnings:
            err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        if result.ok:
            console.print(
                f"[green]ok[/]: {result.entries} entries, {result.checkpoints} signed checkpoints verified",
                highlight=False,
            )
        else:
            console.print(f"[bold red]TAMPERED[/]: first bad entry {result.first_bad}", highlight=False)
            for problem in result.problems:
                console.print(f"  entry {problem.seq}: {problem.message}" if problem.seq else f"  {problem.message}")
    if not result.ok:
        raise typer.Exit(EXIT_POLICY)


@ledger_app.command("export")
def export_command(
    url: Annotated[str, typer.Argument(help="The ledger: sqlite:///path.db, postgresql://… or a .db path.")],
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601 with zone, or Unix seconds).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time.")] = None,
    identity: Annotated[str | None, typer.Option(help="Only this identity (client or key id).")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind of record (e.g. gateway.decision).")] = None,
    proofs: Annotated[
        bool, typer.Option("--proofs", help="Add each entry's inclusion proof against the latest checkpoint.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write JSON lines here, not stdout.")] = None,
) -> None:
    """Export entries as JSON lines for an investigation (with inclusion proofs on request)."""
    from hoplon.core import merkle
    from hoplon.ledger._backends import connect, sqlite_path
    from hoplon.ledger.ledger import read_checkpoints, read_entries

    target = ledger_url(url)
    conn = connect(target, readonly=sqlite_path(target) is not None, create=False)
    try:
        selected = list(
            read_entries(conn, since=_parse_time(since), until=_parse_time(until), identity=identity, kind=kind)
        )
        leaves: list[bytes] = []
        latest = None
        if proofs:
            leaves = [bytes.fromhex(str(h)) for (h,) in conn.query("SELECT hash FROM ledger_entries ORDER BY seq")]
            cps = read_checkpoints(conn)
            latest = cps[-1] if cps else None
    finally:
        conn.close()
    handle = out.open("w") if out else sys.stdout
    try:
        for entry in selected:
            row = entry.to_dict()
            if latest is not None and entry.seq <= latest.tree_size:
                path = merkle.inclusion_path(entry.seq - 1, leaves[: latest.tree_size])
                row["inclusion"] = {"checkpoint": latest.to_dict(), "path": [p.hex() for p in path]}
            handle.write(json.dumps(row, sort_keys=True) + "\n")
    finally:
        if out:
            handle.close()
    if out:
        err_console.print(f"{len(selected)} entries written to {out}", highlight=False)


@ledger_app.command("checkpoint")
def checkpoint_command(
    url: Annotated[str, typer.Argument(help="The ledger: sqlite:///path.db, postgresql://… or a .db path.")],
) -> None:
    """Print the latest signed checkpoint as JSON (keep it elsewhere; `verify --checkpoint` checks against it)."""
    from hoplon.ledger._backends import connect, sqlite_path
    from hoplon.ledger.ledger import read_checkpoints

    target = ledger_url(url)
    cps = read_checkpoints(connect(target, readonly=sqlite_path(target) is not None, create=False), close=True)
    if not cps:
        raise InputError("The ledger has no checkpoint yet.")
    print(json.dumps(cps[-1].to_dict(), indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
