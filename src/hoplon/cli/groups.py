"""Command groups shared by several command modules (``hoplon audit …``, ``hoplon harden …``, …).

A capability's CLI module adds its commands to these groups in its ``register(app)``; ``main`` adds the
groups to the root app once.
"""

from __future__ import annotations

import typer

audit_app = typer.Typer(help="Audit a model and write report.json, report.html and report.sarif.", no_args_is_help=True)
harden_app = typer.Typer(help="Harden a model: adversarial, private or noise-augmented training.", no_args_is_help=True)
redteam_app = typer.Typer(
    help="Run attackers against a live endpoint (loopback only by default).", no_args_is_help=True
)

GROUPS: dict[str, typer.Typer] = {"audit": audit_app, "harden": harden_app, "redteam": redteam_app}
