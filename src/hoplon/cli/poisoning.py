"""``hoplon audit poisoning``, ``hoplon audit backdoor``, ``hoplon harden sanitize`` and ``hoplon data …``:
training-time threats — how much poison a pipeline tolerates, scanning data and models, and provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from hoplon.cli._common import console, parse_floats
from hoplon.cli.groups import audit_app, harden_app
from hoplon.core.errors import EXIT_OK, InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hoplon.core.report import Report
    from hoplon.data import Dataset
    from hoplon.defenses.data import ScanResult
    from hoplon.recipes import Recipe

data_app = typer.Typer(help="Training data: scan for poison, fingerprint, verify provenance.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``data`` group; the other commands join the shared ``audit`` and ``harden`` groups."""
    app.add_typer(data_app, name="data")


def _load(spec: str) -> Dataset:
    from hoplon.data import load_dataset

    return load_dataset(spec)


def _load_truth(path: str | None, n: int) -> torch.Tensor | None:
    import numpy as np
    import torch

    if path is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            key = "poison_index" if "poison_index" in archive.files else archive.files[0]
            index = torch.from_numpy(np.asarray(archive[key], dtype=np.int64))
    except (OSError, ValueError, IndexError) as exc:
        raise InputError(f"Cannot read the ground truth {path}: {exc}") from None
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= n):
        raise InputError(f"The ground truth {path} names records outside 0 .. {n - 1}.")
    return index


def _load_model(path: str, data: Dataset, *, arch: str | None, trust: bool) -> nn.Module:
    import torch

    from hoplon.targets import load_target

    n_classes = int(data.y.max()) + 1
    target = load_target(
        path, input_shape=data.sample_shape, n_classes=n_classes, bounds=data.bounds, arch=arch, trust=trust
    )
    module = getattr(target, "module", None)
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{path}: feature-based scanning needs a torch model (TorchScript or weights + --arch).")
    return module


def _recipe(path: str | None) -> Recipe | None:
    from hoplon.recipes import load_recipe

    return load_recipe(path) if path else None


@audit_app.command("poisoning")
def poisoning_command(
    recipe: Annotated[str, typer.Option("--recipe", help="Training recipe TOML (how your pipeline trains).")],
    data: Annotated[str, typer.Option("--data", help="Clean training data (.npz/.csv or demo:digits:train).")],
    test: Annotated[str, typer.Option("--test", help="Held-out test data.")],
    attack: Annotated[str, typer.Option(help="label-flip, badnets, blended, tabular or clean-label.")] = "badnets",
    rate: Annotated[str, typer.Option("--rate", help="Poison rates in (0, 1), comma-separated.")] = "0.01,0.05,0.1",
    target_class: Annotated[int, typer.Option("--target-class", help="Backdoor target class.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("reports/poisoning"),
    seed: Annotated[int, typer.Option(help="Seed of the poison choice and of training.")] = 0,
) -> None:
    """Train your recipe on poisoned data at each rate: clean accuracy and attack success vs poison rate."""
    import torch

    from hoplon.audit.poisoning import check_rates, poisoning_curve
    from hoplon.recipes import load_recipe

    torch.set_num_threads(1)
    rates = check_rates(parse_floats(rate, what="--rate"))
    rec = load_recipe(recipe)
    config = {} if attack == "label-flip" else {"target_class": target_class}
    with console.status(f"Training the recipe clean and at {len(rates)} poison rate(s)..."):
        report = poisoning_curve(
            rec, _load(data), _load(test), attack_name=attack, rates=rates, attack_config=config, seed=seed
        )
    table = Table(title=f"{attack}: poison rate vs outcome", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("rate", "poisoned", "clean acc.", "baseline acc.", "attack success"):
        table.add_column(column, justify="right")
    for row in report.results["poisoning"]:
        asr = row["attack_success_rate"]
        table.add_row(
            f"{row['rate']:g}",
            str(row["n_poison"]),
            f"{row['clean_accuracy']:.1%}",
            f"{row['baseline_accuracy']:.1%}",
            "–" if asr is None else f"{asr:.1%}",
        )
    console.print(table)
    _finish(report, out)


def _finish(report: Report, out: Path) -> None:
    from hoplon.report import write_report

    paths = write_report(report, out)
    for f in report.findings:
        console.print(f"[bold]{f.severity.label:>8}[/] {f.title}: {f.summary}", highlight=False, soft_wrap=True)
    for fmt, written in paths.items():
        console.print(f"{fmt:>8}: {written}", soft_wrap=True, highlight=False)
    raise typer.Exit(EXIT_OK)


def _scan(data: Dataset, model: str | None, recipe: str | None, arch: str | None, trust: bool, seed: int) -> ScanResult:
    from hoplon.defenses.data import DatasetScanner

    rec = _recipe(recipe)
    module = _load_model(model, data, arch=arch, trust=trust) if model else None
    with console.status(f"Scanning {data.n} records..."):
        return DatasetScanner(seed=seed).scan(data, model=module, recipe=rec)


@data_app.command("check")
def check_command(
    data: Annotated[str, typer.Argument(help="Training data to scan (.npz/.csv).")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="A model trained on it (for features).")] = None,
    recipe: Annotated[str | None, typer.Option("--recipe", help="Recipe: trains the feature and core models.")] = None,
    truth: Annotated[
        str | None, typer.Option("--truth", help=".npz with 'poison_index': the known poison, for precision/recall.")
    ] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture for weight-only model files.")] = None,
    trust: Annotated[bool, typer.Option("--trust", help="Allow pickle-based model files.")] = False,
    top: Annotated[int, typer.Option(help="How many records to show.")] = 10,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("reports/data-check"),
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Score every record for poison (k-NN, duplicates, OOD, spectral, clustering, robust statistics)."""
    import torch

    from hoplon.audit.poisoning import data_check

    torch.set_num_threads(1)
    dataset = _load(data)
    scan = _scan(dataset, model, recipe, arch, trust, seed)
    report = data_check(dataset, scan, truth=_load_truth(truth, dataset.n), top=top)
    table = Table(title="Most suspicious records", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("index", "label", "score", "reasons"):
        table.add_column(column, justify="left" if column == "reasons" else "right")
    for row in report.results["records"][:top]:
        table.add_row(
            str(row["index"]),
            str(int(dataset.y[row["index"]])),
            f"{row['score']:.3f}",
            ", ".join(row["reasons"]) or "–",
        )
    console.print(table)
    for name, why in scan.skipped.items():
        console.print(f"skipped {name}: {why}", highlight=False)
    if "detection" in report.results:
        d = report.results["detection"]
        console.print(
            f"against the ground truth: precision {d['precision']}, recall {d['recall']}, AUROC {d['auroc']}",
            highlight=False,
        )
    _finish(report, out)


@harden_app.command("sanitize")
def sanitize_command(
    data: Annotated[str, typer.Option("--data", help="Training data to clean.")],
    remove: Annotated[str, typer.Option("--remove", help="top:P%, top:N or score:T.")] = "top:2%",
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the cleaned .npz.")] = Path("clean.npz"),
    model: Annotated[str | None, typer.Option("--model", "-m", help="A model trained on the data.")] = None,
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="Recipe: scan with it and retrain before/after.")
    ] = None,
    test: Annotated[str | None, typer.Option("--test", help="Test data for accuracy before/after.")] = None,
    attack: Annotated[
        str | None, typer.Option(help="Measure this backdoor's success before/after (badnets, blended, tabular).")
    ] = None,
    target_class: Annotated[int, typer.Option("--target-class")] = 0,
    arch: Annotated[str | None, typer.Option(help="Architecture for weight-only model files.")] = None,
    trust: Annotated[bool, typer.Option("--trust")] = False,
    report_dir: Annotated[Path | None, typer.Option("--report", help="Folder for the before/after report.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Remove the most suspicious records; with --recipe and --test, retrain and report before/after."""
    import torch

    from hoplon.audit.poisoning import sanitize_report
    from hoplon.data import save_npz
    from hoplon.defenses.data import parse_removal, sanitize

    torch.set_num_threads(1)
    rule = parse_removal(remove)
    dataset = _load(data)
    scan = _scan(dataset, model, recipe, arch, trust, seed)
    cleaned, removed = sanitize(dataset, scan, rule)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(cleaned, out)
    from hoplon.data import fingerprint

    root = fingerprint(cleaned, order_independent=True).root
    console.print(
        f"removed {len(removed)} of {dataset.n} records → {out} ({cleaned.n} records, Merkle root {root})",
        highlight=False,
    )
    rec = _recipe(recipe)
    if rec is not None and test is not None:
        with console.status("Retraining before/after..."):
            report = sanitize_report(
                rec, dataset, cleaned, removed, _load(test), attack=attack, target_class=target_class, seed=seed
            )
        row = report.results["sanitize"]
        for stage in ("before", "after"):
            asr = row[f"attack_success_rate_{stage}"]
            console.print(
                f"{stage:>7}: clean accuracy {row[f'clean_accuracy_{stage}']:.1%}"
                + ("" if asr is None else f", attack success {asr:.1%}"),
                highlight=False,
            )
        if report_dir is not None:
            _finish(report, report_dir)
    raise typer.Exit(EXIT_OK)


@audit_app.command("backdoor")
def backdoor_command(
    model: Annotated[str, typer.Option("--model", "-m", help="The model to scan (TorchScript, or weights + --arch).")],
    data: Annotated[str, typer.Option("--data", help="A sample of clean inputs with labels (100+ recommended).")],
    fpr: Annotated[float, typer.Option(help="STRIP's false-positive rate on clean inputs.")] = 0.05,
    attack: Annotated[
        str | None, typer.Option(help="Also measure STRIP on this known trigger (badnets, blended, tabular).")
    ] = None,
    target_class: Annotated[int, typer.Option("--target-class")] = 0,
    steps: Annotated[int, typer.Option(help="Neural Cleanse optimisation steps per class.")] = 100,
    arch: Annotated[str | None, typer.Option(help="Architecture for weight-only model files.")] = None,
    trust: Annotated[bool, typer.Option("--trust", help="Allow pickle-based model files.")] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("reports/backdoor"),
) -> None:
    """Neural Cleanse (per-class trigger reverse-engineering, MAD anomaly index) and a calibrated STRIP."""
    import torch

    from hoplon.attacks.poisoning import make_poisoning
    from hoplon.audit.poisoning import backdoor_audit
    from hoplon.defenses.backdoor import NeuralCleanse

    torch.set_num_threads(1)
    dataset = _load(data)
    module = _load_model(model, dataset, arch=arch, trust=trust)
    n_classes = int(module(dataset.x[:1]).shape[1])
    trigger = make_poisoning(attack, rate=0.5, target_class=target_class) if attack else None
    with console.status(f"Neural Cleanse over {n_classes} classes and STRIP calibration..."):
        report = backdoor_audit(
            module,
            dataset,
            n_classes=n_classes,
            model_name=model,
            fpr=fpr,
            trigger=trigger,
            target_class=target_class,
            neural_cleanse=NeuralCleanse(steps=steps),
        )
    table = Table(title="Neural Cleanse", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("class", "mask L1", "success", "anomaly index"):
        table.add_column(column, justify="right")
    for row in report.results["neural_cleanse"]:
        style = "bold red" if row["flagged"] else None
        table.add_row(
            str(row["class"]),
            f"{row['mask_l1']:.1f}",
            f"{row['success']:.0%}",
            f"{row['anomaly_index']:.2f}",
            style=style,
        )
    console.print(table)
    _write_triggers(report.figures["neural_cleanse"], out)
    _finish(report, out)


def _write_triggers(figure: dict[str, Any], out: Path) -> None:
    """``triggers.png``: the reconstructed trigger (mask × pattern) of each class, ×4, side by side."""
    from hoplon.report.png import encode_png, image_pixels

    lo, hi = (float(v) for v in figure["bounds"])
    tiles = [image_pixels(t, lower=lo, upper=hi) for t in figure["triggers"]]
    rows = []
    for r in range(len(tiles[0])):
        line: list[tuple[int, int, int]] = []
        for tile in tiles:
            line.extend(p for p in tile[r] for _ in range(4))
            line.extend([(255, 255, 255)] * 4)
        rows.extend([line] * 4)
    out.mkdir(parents=True, exist_ok=True)
    (out / "triggers.png").write_bytes(encode_png(rows))


@data_app.command("fingerprint")
def fingerprint_command(
    data: Annotated[str, typer.Argument(help="Dataset to fingerprint (.npz/.csv).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Fingerprint file (default DATA.fingerprint.json).")
    ] = None,
    order_independent: Annotated[
        bool, typer.Option("--order-independent", help="Sort the leaves: same root in any order; proves absence.")
    ] = False,
    ledger: Annotated[
        str | None, typer.Option("--ledger", help="Record the root in this ledger (e.g. sqlite:///audit.db).")
    ] = None,
) -> None:
    """Merkle root over the records, written to a fingerprint file and (optionally) the ledger."""
    from hoplon.data import fingerprint

    dataset = _load(data)
    fp = fingerprint(dataset, order_independent=order_independent)
    path = out or Path(str(data) + ".fingerprint.json")
    fp.save(path)
    console.print(f"root: {fp.root}\n   n: {fp.n} ({fp.mode})\nfile: {path}", highlight=False)
    if ledger is not None:
        from hoplon.ledger import Ledger

        with Ledger.open(ledger) as book:
            entry = book.append(
                {
                    "event": "dataset.fingerprint",
                    "name": dataset.name,
                    "root": fp.root,
                    "n": fp.n,
                    "mode": fp.mode,
                    "sha256": dataset.fingerprint(),
                },
                kind="dataset-fingerprint",
            )
        console.print(f"ledger: entry {entry.seq} ({entry.hash})", highlight=False)
    raise typer.Exit(EXIT_OK)


@data_app.command("verify")
def verify_command(
    fingerprint_file: Annotated[Path, typer.Option("--fingerprint", "-f", help="The fingerprint file.")],
    data: Annotated[str | None, typer.Option("--data", help="Check this dataset has not changed.")] = None,
    record: Annotated[
        str | None, typer.Option("--record", help="A .npz holding the record(s) to prove in or out.")
    ] = None,
    index: Annotated[int, typer.Option("--index", help="Which record of --record.")] = 0,
    root: Annotated[str | None, typer.Option("--root", help="The root you trust (e.g. from the ledger).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the proof as JSON here.")] = None,
) -> None:
    """Prove a record was (or wasn't) in a fingerprinted dataset; check a dataset is unchanged. Exit 1 if not."""
    from hoplon.core.errors import EXIT_POLICY
    from hoplon.data import DatasetFingerprint, prove_membership

    fp = DatasetFingerprint.load(fingerprint_file)
    if root is not None and root != fp.root:
        console.print(f"[bold red]mismatch:[/] the fingerprint's root {fp.root} is not the trusted root {root}.")
        raise typer.Exit(EXIT_POLICY)
    if data is None and record is None:
        raise InputError("Give --data (is it unchanged?) and/or --record (was it in the dataset?).")
    failed = False
    if data is not None:
        same = fp.matches(_load(data))
        console.print(
            f"dataset {data}: "
            + ("unchanged (root matches)" if same else "[bold red]CHANGED[/] since it was fingerprinted"),
            highlight=False,
        )
        failed |= not same
    if record is not None:
        rec = _load(record)
        if not 0 <= index < rec.n:
            raise InputError(f"--index must be in 0 .. {rec.n - 1}. Got {index}.")
        proof = prove_membership(fp, rec.x[index], int(rec.y[index]))
        ok = proof.verify()
        verdict = "IN the dataset" if proof.member else "NOT in the dataset"
        console.print(
            f"record {index} of {record}: {verdict} (proof {'verified' if ok else 'FAILED'}, "
            f"{len(proof.proofs)} audit path(s))",
            highlight=False,
        )
        if out is not None:
            out.write_text(json.dumps(proof.to_dict(), indent=2) + "\n", encoding="utf-8")
        failed |= not ok
    raise typer.Exit(EXIT_POLICY if failed else EXIT_OK)
