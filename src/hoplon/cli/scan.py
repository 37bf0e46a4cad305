"""``hoplon scan``, ``sign``, ``verify``, ``keygen`` and ``bom``: the supply-chain commands.

Exit codes: 0 clean (or verified), 1 unsafe or suspicious at the ``--policy`` level (or verification
failed), 2 error. ``scan``'s options live in :mod:`hoplon.cli.scanning` (argparse, fast start-up); the
command here forwards to it so that ``hoplon --help`` lists it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hoplon.core.errors import EXIT_POLICY, InputError

__all__ = ["register"]

console = Console()


def scan_command(ctx: typer.Context) -> None:
    """Scan model files without loading them; exit 1 if anything reaches the policy level.

    Options: PATHS... [--format table|json|sarif|text] [--out FILE] [--policy LEVEL] [--timeout S] [--hash];
    `hoplon scan --help` lists them.
    """
    from hoplon.cli.scanning import run

    code = run(ctx.args)
    if code:
        raise typer.Exit(code)


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
    app.command(
        "scan",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )(scan_command)
    app.command("sign")(sign_command)
    app.command("verify")(verify_command)
    app.command("keygen")(keygen_command)
    app.command("bom")(bom_command)
