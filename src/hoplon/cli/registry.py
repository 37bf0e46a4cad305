"""``hoplon registry push|list|promote|rollback|retire|kill|revive``: the signed, scanned model registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hoplon.cli._common import console

if TYPE_CHECKING:
    from hoplon.registry import ModelRegistry

registry_app = typer.Typer(
    help="Content-addressed model registry: push, promote, roll back, retire.", no_args_is_help=True
)

Root = Annotated[Path, typer.Option("--root", help="Registry folder (its ledger is registry.db inside).")]
DEFAULT_ROOT = Path(".hoplon/registry")


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")


def _open(root: Path, require_signature: bool = False) -> ModelRegistry:
    from hoplon.registry import open_registry

    return open_registry(root, require_signature=require_signature)


def _close(reg: ModelRegistry) -> None:
    if reg.ledger is not None:
        reg.ledger.close()


@registry_app.command("push")
def push_command(
    model: Annotated[Path, typer.Argument(help="Model file.")],
    name: Annotated[str, typer.Option("--name", help="Model name.")],
    public_key: Annotated[Path | None, typer.Option(help="Verify the signature with this public key.")] = None,
    signature: Annotated[Path | None, typer.Option(help="Signature file (default: next to the model).")] = None,
    require_signature: Annotated[bool, typer.Option(help="Refuse an unsigned model.")] = False,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Scan (and verify) a model file and store it by its digest."""
    reg = _open(root, require_signature)
    try:
        version = reg.push(model, name=name, public_key=public_key, signature=signature)
    finally:
        _close(reg)
    console.print(f"{version.digest}  {name}  signed={version.signed}", highlight=False)


@registry_app.command("list")
def list_command(root: Root = DEFAULT_ROOT) -> None:
    """Every version and each model's aliases."""
    from hoplon.registry import ModelRegistry

    reg = ModelRegistry(root)
    names = set()
    for v in reg.versions():
        names.add(v.name)
        state = "retired" if v.retired else "active"
        console.print(f"{v.digest}  {v.name}  {state}  signed={v.signed}  {v.size} B", highlight=False)
    for n in sorted(names):
        console.print(f"{n}: {reg.aliases(n)}  kill={reg.kill_switch(n)}", highlight=False)


@registry_app.command("promote")
def promote_command(
    name: Annotated[str, typer.Argument()],
    digest: Annotated[str, typer.Argument()],
    alias: Annotated[str, typer.Option(help="prod or canary.")] = "prod",
    percent: Annotated[float | None, typer.Option(help="Canary share of requests, in percent.")] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Point prod (or a canary with a percentage) at a digest."""
    from hoplon.core.errors import InputError

    if alias not in ("prod", "canary"):
        raise InputError(f"--alias must be prod or canary. Got {alias!r}.")
    reg = _open(root)
    try:
        reg.promote(name, digest, alias=alias, percent=percent)  # type: ignore[arg-type]
    finally:
        _close(reg)


@registry_app.command("rollback")
def rollback_command(name: Annotated[str, typer.Argument()], root: Root = DEFAULT_ROOT) -> None:
    """Serve the previous prod version again."""
    reg = _open(root)
    try:
        console.print(reg.rollback(name), highlight=False)
    finally:
        _close(reg)


@registry_app.command("retire")
def retire_command(digest: Annotated[str, typer.Argument()], root: Root = DEFAULT_ROOT) -> None:
    """Never route a digest again."""
    reg = _open(root)
    try:
        reg.retire(digest)
    finally:
        _close(reg)


@registry_app.command("kill")
def kill_command(
    name: Annotated[str, typer.Argument()],
    mode: Annotated[str, typer.Option(help="deny (503) or fallback (a static answer).")] = "deny",
    answer: Annotated[str | None, typer.Option(help="The fallback answer, as JSON (at most 64 KiB).")] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Switch a model off in every gateway that serves from this registry."""
    import json

    from hoplon.core.errors import InputError

    if mode not in ("deny", "fallback"):
        raise InputError(f"--mode must be deny or fallback. Got {mode!r}.")
    if mode == "fallback" and answer is None:
        raise InputError("--mode fallback needs --answer (the JSON the gateway answers instead of the model).")
    if answer is not None and len(answer) > 65536:
        raise InputError("--answer is longer than 64 KiB.")
    try:
        parsed = json.loads(answer) if answer is not None else None
    except ValueError as exc:
        raise InputError(f"--answer is not valid JSON: {exc}") from None
    reg = _open(root)
    try:
        reg.kill(name, mode=mode, answer=parsed)  # type: ignore[arg-type]
    finally:
        _close(reg)


@registry_app.command("revive")
def revive_command(name: Annotated[str, typer.Argument()], root: Root = DEFAULT_ROOT) -> None:
    """Switch a killed model back on."""
    reg = _open(root)
    try:
        reg.revive(name)
    finally:
        _close(reg)
