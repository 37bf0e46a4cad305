"""``hoplon serve``, ``hoplon keys``, ``hoplon config`` and ``hoplon profile``: the model firewall's commands.

``keys`` and ``serve`` share one state folder (``--state-dir``, default ``./.hoplon``): the API keys, the
audit ledger and its signing key live there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from hoplon.gateway.config import GatewayConfig

__all__ = ["register"]

console = Console()
err_console = Console(stderr=True)
keys_app = typer.Typer(
    help="Create, list and revoke API keys (stored hashed in the state folder).", no_args_is_help=True
)
config_app = typer.Typer(help="Check the gateway config against hoplon's JSON Schema.", no_args_is_help=True)

StateDir = Annotated[Path, typer.Option("--state-dir", help="The gateway's state folder (keys, ledger, secrets).")]


def print_modes(config: GatewayConfig) -> None:
    table = Table(title=f"hoplon gateway — config {config.source} ({config.hash[:19]})", title_justify="left")
    for column in ("stage", "mode", "on_error"):
        table.add_column(column)
    for stage, mode, on_error in config.effective_modes():
        style = "green" if mode == "enforce" else "yellow" if mode == "shadow" else "red"
        table.add_row(stage, f"[{style}]{mode}[/]", on_error)
    err_console.print(table)
    rl, audit = config.rate_limits, config.audit
    err_console.print(
        f"limits: {rl.per_identity or '-'} per identity, {rl.per_identity_model or '-'} per identity+model, "
        f"{rl.per_source or '-'} per source, daily quota {rl.daily_quota or '-'} rows ({rl.storage.split('@')[-1]})",
        highlight=False,
    )
    err_console.print(
        f"audit: {audit.ledger.split('@')[-1]} (durable={audit.durable}; "
        f"{'each response waits for its commit' if audit.durable else 'group commit, loss window a few ms on crash'})",
        highlight=False,
    )


def serve_command(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="hoplon.yaml; default: the safe defaults.")
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Serve this model in-process (KServe v2).")
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option("--input-shape", help="One sample's shape for --model, e.g. 1,8,8.")
    ] = None,
    state_dir: StateDir = Path(".hoplon"),
    host: Annotated[str | None, typer.Option(help="Bind address (default from config: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config: 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (needs redis:// rate-limit storage).")] = None,
    registry: Annotated[
        Path | None,
        typer.Option("--registry", help="Serve every model of this registry folder (live promote and rollback)."),
    ] = None,
) -> None:
    """Serve a model behind the firewall: in-process with --model or --registry, or as a sidecar (upstream.url)."""
    from hoplon.cli._common import parse_floats
    from hoplon.gateway.config import load_config
    from hoplon.gateway.server import check_workers, serve

    shape = tuple(int(d) for d in parse_floats(input_shape, what="--input-shape")) if input_shape else None
    cfg = load_config(config, state_dir=state_dir)
    check_workers(cfg, workers or cfg.workers)
    print_modes(cfg)
    err_console.print(
        f"serving on http://{host or cfg.host}:{port if port is not None else cfg.port} "
        + (
            f"({'in-process ' + str(model) if model else 'sidecar → ' + str(cfg.upstream_url or 'config models')})"
            if registry is None
            else f"(in-process, every model of the registry {registry})"
        ),
        highlight=False,
    )
    serve(
        config,
        model=model,
        input_shape=shape,
        state_dir=state_dir,
        host=host,
        port=port,
        workers=workers,
        registry=registry,
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="The client the key is for.")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="model:NAME, model:*, output:scores (repeatable).")
    ] = None,
    state_dir: StateDir = Path(".hoplon"),
) -> None:
    """Create an API key and print it once (only its hash is kept)."""
    from hoplon.gateway.keys import KeyStore

    token, record = KeyStore(state_dir).create(name, scopes=tuple(scope or ("model:*", "output:*")))
    err_console.print(
        f"key {record.key_id} for {record.client} (scopes: {' '.join(record.scopes)}); shown once, store it now:",
        highlight=False,
    )
    print(token)


@keys_app.command("list")
def keys_list(state_dir: StateDir = Path(".hoplon")) -> None:
    """List keys (ids, clients, scopes, state); never the keys themselves."""
    from datetime import UTC, datetime

    from hoplon.gateway.keys import KeyStore

    table = Table(title="API keys", title_justify="left")
    for column in ("key id", "client", "scopes", "created", "state"):
        table.add_column(column)
    for k in KeyStore(state_dir).list():
        created = datetime.fromtimestamp(k.created, UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(k.key_id, k.client, " ".join(k.scopes), created, "live" if k.live else "revoked")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (the 12 hex digits after hpl_).")],
    state_dir: StateDir = Path(".hoplon"),
) -> None:
    """Revoke a key; a running gateway refuses it from its next request."""
    from hoplon.gateway.keys import KeyStore

    record = KeyStore(state_dir).revoke(key_id)
    err_console.print(f"revoked {record.key_id} ({record.client})", highlight=False)


@keys_app.command("rotate-hmac")
def keys_rotate_hmac(state_dir: StateDir = Path(".hoplon")) -> None:
    """Install a new audit HMAC key (old keys stay in audit-hmac.d/); a running gateway takes it on SIGHUP."""
    from hoplon.gateway.audit_keys import rotate_hmac_key

    old_id, new_id = rotate_hmac_key(state_dir)
    err_console.print(
        f"audit HMAC key {new_id} installed (previous: {old_id or 'none'}, kept); send SIGHUP to the gateway",
        highlight=False,
    )
    print(new_id)


@keys_app.command("input-hmac")
def keys_input_hmac(
    key_id: Annotated[str, typer.Option("--key-id", help="The record's input_hmac_key (8 hex digits).")],
    input_file: Annotated[Path, typer.Option("--input", help="The suspected request body (JSON).")],
    state_dir: StateDir = Path(".hoplon"),
) -> None:
    """Recompute a record's input_hmac for a suspected input under the key the record names."""
    from hoplon.core.errors import InputError
    from hoplon.gateway.audit_keys import find_hmac_key, input_hmac

    max_bytes = 256 * 1024 * 1024
    if not input_file.is_file() or input_file.stat().st_size > max_bytes:
        raise InputError(f"--input {input_file} is not a readable file of at most {max_bytes} bytes.")
    print(input_hmac(find_hmac_key(state_dir, key_id), input_file.read_bytes()))


@config_app.command("check")
def config_check(path: Annotated[Path, typer.Argument(help="hoplon.yaml")]) -> None:
    """Validate a config (schema, secret references, files); print its hash and the effective modes."""
    from hoplon.gateway.config import load_config

    cfg = load_config(path)
    print_modes(cfg)
    files = [(f"models.{m.name}.path", m.path) for m in cfg.models.values()]
    files += [(f"models.{m.name}.profile", m.profile) for m in cfg.models.values()]
    if cfg.authentication.jwt is not None:
        files.append(("stages.authentication.jwt.jwks_file", cfg.authentication.jwt.jwks_file))
    for where, file in files:
        if file is not None and not Path(file).exists():
            err_console.print(f"[yellow]warning:[/] {where}: {file} does not exist (yet)", highlight=False)
    console.print(f"[green]ok[/]: {path} ({cfg.hash})", highlight=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of hoplon.yaml (for editors and CI)."""
    from hoplon.gateway.schema import CONFIG_SCHEMA

    print(json.dumps(CONFIG_SCHEMA, indent=2))


def profile_command(
    data: Annotated[str, typer.Option("--data", help="Reference samples: .npz or .csv, or demo:NAME[:split].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write profile.json.")],
    model: Annotated[Path | None, typer.Option("--model", help="The model (its digest is recorded).")] = None,
    margin: Annotated[float, typer.Option(help="Widen each feature's range by this share of it.")] = 0.05,
    max_categories: Annotated[int, typer.Option(help="Integer features with at most this many values.")] = 10,
) -> None:
    """Write the input profile the gateway enforces: shape, dtype, per-feature ranges, categories."""
    from hoplon.data import load_dataset
    from hoplon.gateway.profile import build_profile
    from hoplon.targets import file_digest

    dataset = load_dataset(data)
    profile = build_profile(
        dataset.x.numpy(),
        margin=margin,
        max_categories=max_categories,
        model_digest=file_digest(model) if model else None,
    )
    out.write_text(json.dumps(profile, indent=1))
    err_console.print(
        f"profile of {len(dataset.x)} samples, shape {profile['shape']}, {len(profile['categories'])} categorical "
        f"features → {out}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("profile")(profile_command)
    app.add_typer(keys_app, name="keys")
    app.add_typer(config_app, name="config")
