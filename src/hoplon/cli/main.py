"""Entry point of the ``hoplon`` command.

Each command group lives in its own module with a ``register(app)`` function; this module only wires them
together and maps :class:`~hoplon.core.HoplonError` to one clear line on stderr and its exit code
(0 ok, 1 policy failed or unsafe, 2 error). A user's mistake never shows a traceback.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from hoplon.core.errors import EXIT_ERROR, HoplonError

app = typer.Typer(
    name="hoplon",
    help="Security for machine-learning systems: scan model files, audit models, harden them, guard them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


# Each module has ``register(app)``. A module that is not installed (an optional part) is skipped; any
# other import error is a bug and surfaces.
COMMAND_MODULES = (
    "audit",
    "demo",
    "report",
    "scan",
    "harden",
    "certify",
    "privacy",
    "llm",
    "gateway",
    "ledger",
    "registry",
    "poisoning",
    "extraction",
)


# Top-level commands owned by one module: running one of them imports only that module, which keeps
# `hoplon scan` starting about as fast as a single-purpose scanner. Anything else imports all of them.
COMMAND_OWNERS: dict[str, tuple[str, ...]] = {
    "scan": ("scan",),
    "sign": ("scan",),
    "verify": ("scan",),
    "keygen": ("scan",),
    "bom": ("scan",),
    "demo": ("demo",),
    "report": ("report",),
}


# Commands that train or attack a model: they allocate and free the same large tensors thousands of times,
# so they keep freed memory in the process (hoplon.core.memory). Servers and file tools keep glibc's defaults.
TENSOR_COMMANDS = frozenset({"audit", "demo", "harden", "certify", "calibrate", "data", "redteam"})


_registered: set[str] = set()  # command modules already wired into ``app`` (main may run many times per process)


def _command(argv: list[str] | None) -> str:
    """The top-level command named on the command line (its first argument that is not an option)."""
    args = sys.argv[1:] if argv is None else argv
    return next((a for a in args if not a.startswith("-")), "")


def _register_all(argv: list[str] | None = None) -> None:
    import importlib

    from hoplon.cli.groups import GROUPS

    for name in COMMAND_OWNERS.get(_command(argv), COMMAND_MODULES):
        if name in _registered:
            continue
        qualified = f"hoplon.cli.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name == qualified:
                continue
            raise
        module.register(app)
        _registered.add(name)
    for name, group in GROUPS.items():
        if f"group:{name}" not in _registered and (group.registered_commands or group.registered_groups):
            app.add_typer(group, name=name)
            _registered.add(f"group:{name}")


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )


def _fast_path(argv: list[str] | None) -> list[str] | None:
    """The arguments after ``scan`` when the command line is a plain ``hoplon scan ...``, else ``None``.

    ``hoplon scan`` runs on every download and in every CI job, so it skips building the Typer app
    (Typer's pydantic-based parameter handling alone costs ~0.1 s of start-up); see ``hoplon.cli.scanning``.
    """
    args = sys.argv[1:] if argv is None else argv
    return list(args[1:]) if args and args[0] == "scan" else None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    scan_args = _fast_path(argv)
    if scan_args is not None:
        from hoplon.cli.scanning import main as scan_main

        return scan_main(scan_args)
    _register_all(argv)
    if _command(argv) in TENSOR_COMMANDS:
        from hoplon.core.memory import keep_freed_memory

        keep_freed_memory()
    try:
        returned = app(args=argv, standalone_mode=False)
    except HoplonError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # the CLI boundary: report, don't dump a traceback, unless asked
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return EXIT_ERROR
        if logging.getLogger().isEnabledFor(logging.INFO):
            raise
        err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (run with -v for details)")
        return EXIT_ERROR
    # With standalone_mode=False, click returns the code of a typer.Exit instead of raising it.
    return returned if isinstance(returned, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
