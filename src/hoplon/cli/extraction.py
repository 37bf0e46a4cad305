"""``hoplon audit extraction``, ``hoplon calibrate``, ``hoplon incident history|quarantine|rollback``: model
stealing, measured and detected, the evidence trail and the containment."""

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


incident_app = typer.Typer(
    help="Incident response: evidence from the ledger, quarantine, rollback.", no_args_is_help=True
)


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


def _admin_call(
    gateway: str, admin_key: str | None, method: str, path: str, doc: dict[str, object] | None
) -> dict[str, object]:
    """One call to a running gateway's admin API; a refusal becomes a clear error."""
    import json
    import urllib.error
    import urllib.request

    if not gateway.startswith(("http://", "https://")):
        raise InputError(f"--gateway is the gateway's base URL (http://HOST:PORT). Got {gateway!r}.")
    if not admin_key:
        raise InputError("--gateway needs --admin-key (or HOPLON_ADMIN_KEY): an API key with the admin:* scope.")
    body = json.dumps(doc).encode() if doc is not None else None
    headers = {"X-API-Key": admin_key, "Content-Type": "application/json"}
    request = urllib.request.Request(gateway.rstrip("/") + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # the scheme is checked above
            answer: dict[str, object] = json.loads(reply.read(1 << 20))
    except urllib.error.HTTPError as exc:
        detail = exc.read(4096).decode(errors="replace")
        raise InputError(f"The gateway refused the admin call ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InputError(f"The gateway at {gateway} cannot be reached: {exc}") from None
    return answer


AdminKey = Annotated[
    str | None, typer.Option("--admin-key", envvar="HOPLON_ADMIN_KEY", help="API key with the admin:* scope.")
]
GatewayUrl = Annotated[str | None, typer.Option("--gateway", help="A running gateway's base URL (admin API).")]


@incident_app.command("quarantine")
def quarantine_command(
    identity: Annotated[str, typer.Argument(help="The identity (API-key client or jwt:SUB).")],
    action: Annotated[str, typer.Option(help="block (403) or throttle (429 beyond --rate requests a second).")] = (
        "block"
    ),
    rate: Annotated[float, typer.Option(help="Requests a second a throttled identity keeps.")] = 1.0,
    revoke: Annotated[bool, typer.Option(help="Also revoke every live API key of the identity.")] = False,
    release: Annotated[bool, typer.Option(help="Lift the quarantine instead.")] = False,
    gateway: GatewayUrl = None,
    admin_key: AdminKey = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="Without --gateway: the gateway's state folder (it watches the list).")
    ] = None,
    ledger: Annotated[
        str | None, typer.Option(help="With --state-dir: the gateway's audit ledger (default: audit.db there).")
    ] = None,
    signing_key: Annotated[
        Path | None, typer.Option(help="With --state-dir: that ledger's signing key (default: ledger.key there).")
    ] = None,
) -> None:
    """Contain an identity at once: through a running gateway's admin API, or in its state folder."""
    import json

    if action not in ("block", "throttle"):
        raise InputError(f"--action is block or throttle. Got {action!r}.")
    if (gateway is None) == (state_dir is None):
        raise InputError("Give either --gateway URL (with --admin-key) or --state-dir DIR.")
    if gateway is not None:
        if release:
            from urllib.parse import quote

            answer = _admin_call(gateway, admin_key, "DELETE", f"/admin/quarantine/{quote(identity, safe='')}", None)
        else:
            doc = {"identity": identity, "action": action, "rate_per_s": rate, "revoke": revoke}
            answer = _admin_call(gateway, admin_key, "POST", "/admin/quarantine", doc)
        console.print(json.dumps(answer), highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_OK)
    assert state_dir is not None
    from hoplon.gateway.admin import QuarantineList, revoke_identity
    from hoplon.gateway.keys import KeyStore
    from hoplon.ledger import Ledger

    quarantine = QuarantineList(state_dir)
    record: dict[str, object] = {"identity": identity, "by": "hoplon incident quarantine --state-dir"}
    if release:
        record["found"] = quarantine.remove(identity)
        kind = "admin.release"
    else:
        entry = quarantine.add(identity, action, rate_per_s=rate, by="cli")  # type: ignore[arg-type]
        record.update(action=entry.action, rate_per_s=entry.rate_per_s)
        record["revoked"] = revoke_identity(KeyStore(state_dir), identity) if revoke else []
        kind = "admin.quarantine"
    # the gateway's audit ledger (several processes may append to one ledger)
    url = ledger or f"sqlite:///{state_dir / 'audit.db'}"
    with Ledger.open(url, signing_key=str(signing_key or state_dir / "ledger.key")) as led:
        led.append(record, kind=kind, identity=identity)
    console.print(json.dumps(record), highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK)


@incident_app.command("rollback")
def incident_rollback_command(
    model: Annotated[str, typer.Argument(help="The model name in the registry.")],
    registry: Annotated[Path | None, typer.Option(help="The registry folder (gateways polling it follow).")] = None,
    gateway: GatewayUrl = None,
    admin_key: AdminKey = None,
) -> None:
    """Serve the model's previous version again: in the registry, or through a gateway (applied at once)."""
    if (gateway is None) == (registry is None):
        raise InputError("Give either --gateway URL (with --admin-key) or --registry DIR.")
    if gateway is not None:
        answer = _admin_call(gateway, admin_key, "POST", "/admin/rollback", {"model": model})
        console.print(f"{model}: now serving {answer.get('digest')}", highlight=False)
        raise typer.Exit(EXIT_OK)
    assert registry is not None
    from hoplon.registry import open_registry

    if not (registry / "index.json").is_file():
        raise InputError(f"{registry} is not a model registry (no index.json).")
    reg = open_registry(registry)
    try:
        digest = reg.rollback(model)
    finally:
        if reg.ledger is not None:
            reg.ledger.close()
    console.print(f"{model}: now serving {digest}", highlight=False)
    raise typer.Exit(EXIT_OK)


@redteam_app.command("gateway")
def redteam_gateway_command(
    url: Annotated[str, typer.Option(help="The gateway's base URL (loopback only), e.g. http://127.0.0.1:8000.")],
    model: Annotated[str, typer.Option(help="Model name on the gateway.")] = "digits",
    state_dir: Annotated[Path, typer.Option(help="The gateway's state folder (the clients' keys are made there).")] = (
        Path(".hoplon")
    ),
    data: Annotated[str, typer.Option(help="Natural labelled data (.npz, .csv or a demo name).")] = "digits",
    budget: Annotated[int, typer.Option(help="Queries per extraction client.")] = 500,
    benign: Annotated[int, typer.Option(help="Benign identities replaying natural data.")] = 10,
    clients: Annotated[
        str,
        typer.Option(
            help="Attack clients: jbda, sybil (20 keys), blinded, knockoff, rotating (JbDA over --rotating-keys "
            "keys, just under the rate limits), square, hsja, walk (adversarial queries), square-rotating, "
            "hsja-rotating, walk-rotating (the same over --rotating-keys keys)."
        ),
    ] = "jbda,sybil,blinded,knockoff,rotating,square,hsja,walk",
    rotating_keys: Annotated[int, typer.Option(help="Keys of each rotating client (2-100).")] = 20,
    key_rate: Annotated[
        str | None, typer.Option(help="Per-key rate the rotating clients keep under (default: learned from a 429).")
    ] = None,
    adversarial_budget: Annotated[int | None, typer.Option(help="Queries per adversarial client.")] = None,
    inputs: Annotated[int, typer.Option(help="Inputs each adversarial client attacks (1-100).")] = 5,
    victim: Annotated[
        str | None, typer.Option(help="A local copy of the model: fidelity, and attack success without the gateway.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the results as JSON here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Benign replay, extraction and adversarial-query clients against a live gateway: queries to detection and
    what they had bought by then, per client."""
    import json
    from dataclasses import asdict

    from hoplon.data import load_dataset
    from hoplon.gateway import KeyStore
    from hoplon.redteam import redteam_gateway
    from hoplon.redteam.gateway import CLIENTS, parse_rate

    names = [c.strip() for c in clients.split(",") if c.strip()]
    for name in names:
        if name not in CLIENTS:
            raise InputError(f"Unknown client {name!r}; use {', '.join(CLIENTS)}.")
    if not 2 <= rotating_keys <= 100:
        raise InputError(f"--rotating-keys must be in 2..100. Got {rotating_keys}.")
    if not 0 <= benign <= 1000:
        raise InputError(f"--benign must be in 0..1000. Got {benign}.")
    rate = parse_rate(key_rate) if key_rate is not None else None
    dataset = load_dataset(data)
    local = None
    if victim is not None:
        from hoplon.targets import load_target

        local = load_target(
            victim, input_shape=dataset.sample_shape, n_classes=max(int(dataset.y.max()) + 1, 2), bounds=dataset.bounds
        )
    store = KeyStore(state_dir)
    tag = f"redteam{seed}"
    keys = {"benign": [store.create(f"{tag}-benign{i}")[0] for i in range(benign)]}
    for name in names:
        count = 20 if name == "sybil" else rotating_keys if name.endswith("rotating") else 1
        keys[name] = [store.create(f"{tag}-{name}{i}")[0] for i in range(count)]
    results = redteam_gateway(
        url, model, keys, dataset, budget=budget, seed=seed, adversarial_budget=adversarial_budget,
        adversarial_inputs=inputs, key_rate=rate, victim=local,
    )  # fmt: skip
    table = Table(title=f"redteam against {url}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("client", "keys", "queries", "contained at", "status", "surrogate acc.", "attack success"):
        table.add_column(column)

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.1%}"

    for r in results:
        at = str(r.contained_at or "–")
        if r.keys > 1 and r.first_contained_at is not None:
            at = f"{r.first_contained_at} ({r.contained_keys}/{r.keys} keys by {r.contained_at or r.queries})"
        acc = pct(r.surrogate_accuracy)
        if r.accuracy_at_detection is not None:
            acc = f"{pct(r.accuracy_at_detection)} → {acc}"
        success = "–" if r.success_rate is None else f"{pct(r.success_rate)} @{r.eps:g}"
        if r.success_undetected is not None:
            success += f" (undefended {pct(r.success_undetected)})"
        table.add_row(r.client, str(r.keys), str(r.queries), at, str(r.status or "–"), acc, success)
    console.print(table)
    false_alarms = sum(1 for r in results if r.client.startswith("benign") and r.status)
    console.print(f"benign false alarms: {false_alarms} of {benign}", highlight=False)
    if out is not None:
        doc = {"url": url, "model": model, "budget": budget, "seed": seed, "results": [asdict(r) for r in results]}
        out.write_text(json.dumps(doc, indent=2))
        console.print(f"results: {out}", highlight=False)
    raise typer.Exit(EXIT_OK)
