"""``hoplon audit extraction``, ``hoplon calibrate``, ``hoplon incident history``: model stealing, measured and
detected, and the evidence trail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from hoplon.cli._common import console, progress_bars
from hoplon.cli.groups import audit_app, redteam_app
from hoplon.core.errors import EXIT_OK, InputError


def register(app: typer.Typer) -> None:
    """``audit extraction`` joins the shared ``audit`` group; ``calibrate`` is a top-level command."""
    app.command("calibrate")(calibrate_command)
    app.add_typer(incident_app, name="incident")


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"{what} must be a comma-separated list of integers (e.g. 1000,5000). Got {text!r}.") from None
    if not values or any(v <= 0 for v in values):
        raise InputError(f"{what} needs positive integers. Got {text!r}.")
    return values


@audit_app.command("extraction")
def extraction_command(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model file: TorchScript, ONNX, or safetensors with --arch.")
    ],
    data: Annotated[str, typer.Option("--data", "-d", help="Held-out labelled data (.npz, .csv or a demo name).")] = (
        "digits"
    ),
    budget: Annotated[str, typer.Option(help="Comma-separated query budgets.")] = "1000,5000,20000",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the reports.")] = Path(
        "reports/extraction"
    ),
    attacks: Annotated[str, typer.Option(help="Comma-separated extraction attacks: knockoff, jbda.")] = "knockoff,jbda",
    outputs: Annotated[
        str, typer.Option(help="Output settings: none, label-only, top-K, round-D, noise-S (comma-separated).")
    ] = "none,label-only,top-1,round-1,noise-0.1",
    transfer: Annotated[
        str | None, typer.Option(help="Knockoff transfer set (.npz with x); default: transformed bundled digits.")
    ] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture for weight-only files.")] = None,
    train_steps: Annotated[int, typer.Option(help="Surrogate optimiser steps per training.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
) -> None:
    """Fidelity and surrogate accuracy against queries spent, with and without each output-hardening setting."""
    import numpy as np
    import torch

    from hoplon.audit.extraction import extraction, parse_setting
    from hoplon.data import load_dataset
    from hoplon.report import write_report
    from hoplon.targets import file_digest, load_target

    budgets = _ints(budget, "--budget")
    settings = [parse_setting(s) for s in outputs.split(",") if s.strip()]
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    dataset = load_dataset(data)
    target = load_target(
        model,
        input_shape=dataset.sample_shape,
        n_classes=max(int(dataset.y.max()) + 1, 2),
        bounds=dataset.bounds,
        arch=arch,
    )
    x_transfer = None
    if transfer is not None:
        try:
            with np.load(transfer, allow_pickle=False) as npz:
                x_transfer = torch.from_numpy(np.asarray(npz["x"], dtype=np.float32))
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"The transfer set {transfer} cannot be read (needs an array 'x'): {exc}") from None
        if len(x_transfer) < max(budgets):
            raise InputError(
                f"The transfer set holds {len(x_transfer)} inputs; the largest budget needs {max(budgets)}."
            )
    with progress_bars() as bars:
        report = extraction(
            target,
            dataset,
            budgets=budgets,
            attacks=names,
            settings=settings,
            transfer=x_transfer,
            seed=seed,
            train_steps=train_steps,
            model_digest=file_digest(model),
            progress=bars,
        )
    paths = write_report(report, out)
    table = Table(title=f"Extraction of {target.name}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("attack", "output", "budget", "fidelity", "accuracy"):
        table.add_column(column, justify="left" if column in ("attack", "output") else "right")
    for row in report.results["extraction"]:
        table.add_row(
            row["attack"],
            row["setting"],
            str(row["budget"]),
            f"{row['fidelity']:.1%}",
            f"{row['surrogate_accuracy']:.1%}",
        )
    console.print(table)
    for fmt, path in paths.items():
        console.print(f"{fmt:>5}: {path}", soft_wrap=True, highlight=False)
    raise typer.Exit(EXIT_OK)


def calibrate_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The gateway config (hoplon.yaml) to calibrate.")],
    benign: Annotated[Path, typer.Option("--benign", help="Benign reference traffic: .npz with x (and scores).")],
    fpr: Annotated[float, typer.Option(help="Target per-identity false-positive rate.")] = 0.01,
    model: Annotated[
        str | None, typer.Option(help="Model file to score the traffic (for the low-margin signal).")
    ] = None,
    identities: Annotated[int, typer.Option(help="Synthetic benign identities (half calibrate, half held out).")] = 400,
    queries: Annotated[int, typer.Option(help="Queries per synthetic identity.")] = 200,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the calibrated config here (default: print).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Set every detector threshold for a stated per-identity false-positive rate, measured on held-out identities."""
    from hoplon.gateway.detectors.calibrate import calibrate_file

    text, summary = calibrate_file(
        config, benign, fpr=fpr, model=model, identities=identities, queries=queries, seed=seed
    )
    if out is None:
        console.print(text, highlight=False, soft_wrap=True)
    else:
        out.write_text(text)
        console.print(f"calibrated config: {out}", highlight=False)
    for name, figures in summary.items():
        console.print(f"{name}: {figures}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK)


incident_app = typer.Typer(help="Incident response: evidence from the ledger.", no_args_is_help=True)


@incident_app.command("history")
def history_command(
    identity: Annotated[str, typer.Argument(help="The identity (API-key client or jwt:SUB).")],
    ledger: Annotated[str, typer.Option(help="Ledger URL (sqlite:///… or postgresql://…).")],
    signing_key: Annotated[Path, typer.Option(help="The ledger's signing key (PEM).")],
    since: Annotated[float | None, typer.Option(help="Only entries at or after this Unix time.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the evidence JSON here.")] = None,
) -> None:
    """The identity's decisions and alarms, each with an inclusion proof against the latest signed checkpoint."""
    import json

    from hoplon.ledger import Ledger

    with Ledger.open(ledger, signing_key=str(signing_key)) as led:
        checkpoint = led.checkpoint()
        entries = list(led.entries(identity=identity, since=since))
        size = checkpoint.tree_size if checkpoint is not None else 0
        evidence = []
        for entry in entries:
            if entry.seq > size:
                continue
            proof = led.inclusion_proof(entry.seq, size)
            evidence.append(
                {
                    "seq": entry.seq,
                    "ts": entry.ts,
                    "kind": entry.kind,
                    "hash": entry.hash,
                    "data": json.loads(entry.data),
                    "proof": {"tree_size": proof.tree_size, "path": list(proof.path), "root": proof.root},
                    "verified": proof.verify(),
                }
            )
    doc = {"identity": identity, "tree_size": size, "entries": evidence}
    text = json.dumps(doc, indent=2)
    if out is None:
        console.print(text, highlight=False, soft_wrap=True)
    else:
        out.write_text(text)
        console.print(f"{len(evidence)} entries of {identity} with inclusion proofs: {out}", highlight=False)


@redteam_app.command("gateway")
def redteam_gateway_command(
    url: Annotated[str, typer.Option(help="The gateway's base URL (loopback only), e.g. http://127.0.0.1:8000.")],
    model: Annotated[str, typer.Option(help="Model name on the gateway.")] = "digits",
    state_dir: Annotated[Path, typer.Option(help="The gateway's state folder (the clients' keys are made there).")] = (
        Path(".hoplon")
    ),
    data: Annotated[str, typer.Option(help="Natural labelled data (.npz, .csv or a demo name).")] = "digits",
    budget: Annotated[int, typer.Option(help="Queries per attack client.")] = 500,
    benign: Annotated[int, typer.Option(help="Benign identities replaying natural data.")] = 10,
    clients: Annotated[str, typer.Option(help="Attack clients: jbda, sybil (20 keys), blinded, knockoff.")] = (
        "jbda,sybil,blinded,knockoff"
    ),
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Benign replay and extraction clients against a live gateway: queries to detection, per client."""
    from hoplon.data import load_dataset
    from hoplon.gateway import KeyStore
    from hoplon.redteam import redteam_gateway

    store = KeyStore(state_dir)
    tag = f"redteam{seed}"
    keys = {"benign": [store.create(f"{tag}-benign{i}")[0] for i in range(benign)]}
    for name in (c.strip() for c in clients.split(",") if c.strip()):
        if name not in ("jbda", "sybil", "blinded", "knockoff"):
            raise InputError(f"Unknown client {name!r}; use jbda, sybil, blinded, knockoff.")
        keys[name] = [store.create(f"{tag}-{name}{i}")[0] for i in range(20 if name == "sybil" else 1)]
    results = redteam_gateway(url, model, keys, load_dataset(data), budget=budget, seed=seed)
    table = Table(title=f"redteam against {url}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("client", "keys", "queries", "contained at", "status", "surrogate acc."):
        table.add_column(column)
    for r in results:
        acc = "–" if r.surrogate_accuracy is None else f"{r.surrogate_accuracy:.1%}"
        table.add_row(r.client, str(r.keys), str(r.queries), str(r.contained_at or "–"), str(r.status or "–"), acc)
    console.print(table)
    false_alarms = sum(1 for r in results if r.client.startswith("benign") and r.status)
    console.print(f"benign false alarms: {false_alarms} of {benign}", highlight=False)
    raise typer.Exit(EXIT_OK)
