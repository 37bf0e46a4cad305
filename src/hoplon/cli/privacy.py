"""``hoplon audit privacy`` and ``hoplon harden dp``: measure what a model leaks about its training data,
and train one that provably leaks less."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from hoplon.cli._common import console, parse_names, progress_bars
from hoplon.cli.groups import audit_app, harden_app
from hoplon.core.errors import EXIT_OK, InputError

if TYPE_CHECKING:
    from torch import nn

    from hoplon.data import Dataset
    from hoplon.defenses.training import DPRecord
    from hoplon.recipes import Recipe

DEMOS = ("digits", "breast-cancer")
RECORD_SUFFIX = ".record.json"


def register(app: typer.Typer) -> None:
    """The commands join the shared ``audit`` and ``harden`` groups (added to ``app`` by ``main``)."""


def _default_cache() -> Path:
    return Path.home() / ".cache" / "hoplon" / "models"


def _parse_epsilons(text: str) -> list[float]:
    values = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            value = math.inf if part in ("inf", "infinity") else float(part)
        except ValueError:
            raise InputError(
                f"--sweep-epsilon must be numbers or 'inf', comma-separated (e.g. 1,3,8,inf). Got {text!r}."
            ) from None
        if not value > 0:
            raise InputError(f"Every ε must be > 0 (ε ≤ 0 is not a privacy guarantee). Got {part}.")
        values.append(value)
    if not values:
        raise InputError("--sweep-epsilon needs at least one value.")
    return values


def _check_dp_args(epsilon: float, delta: float, n: int) -> None:
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise InputError(f"--epsilon must be a finite number > 0. Got {epsilon}.")
    if not 0 < delta < 1.0 / n:
        raise InputError(
            f"--delta must be in (0, 1/n) = (0, {1.0 / n:.3g}) for n = {n} training records; a δ of 1/n or more "
            f"allows leaking a whole record. Got {delta:g}."
        )


def _accuracy(module: nn.Module, data: Dataset) -> float:
    from hoplon.models import accuracy

    return accuracy(module, data.x, data.y)


def _save_torchscript(module: nn.Module, example: Any, path: Path) -> None:
    import torch

    from hoplon.targets.torch_target import quiet_torchscript

    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with quiet_torchscript(), torch.no_grad():
        traced = torch.jit.trace(module, example)
        torch.jit.save(traced, str(path))


def _load_inputs(
    train: str | None, holdout: str | None, recipe_path: str | None, demo: str | None, population: str | None
) -> tuple[Dataset, Dataset, Dataset | None, Recipe | None]:
    from hoplon.audit.privacy import demo_recipe, demo_splits
    from hoplon.data import load_dataset
    from hoplon.recipes import load_recipe

    if demo is not None:
        if demo not in DEMOS:
            raise InputError(f"--demo must be one of {', '.join(DEMOS)}. Got {demo!r}.")
        members, nonmembers, demo_pop = demo_splits(demo)
        return members, nonmembers, demo_pop, load_recipe(recipe_path) if recipe_path else demo_recipe(demo)
    if train is None or holdout is None:
        raise InputError(
            "Give --train and --holdout (the model's training records and records it never saw), or --demo."
        )
    user_recipe = load_recipe(recipe_path) if recipe_path else None
    user_pop = load_dataset(population) if population else None
    return load_dataset(train), load_dataset(holdout), user_pop, user_recipe


@audit_app.command("privacy")
def privacy_command(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model file(s) to audit (TorchScript, ONNX, …); repeat to compare models."),
    ] = None,
    train: Annotated[str | None, typer.Option("--train", help="The model's training records (.npz/.csv).")] = None,
    holdout: Annotated[
        str | None, typer.Option("--holdout", help="Records from the same distribution the model never saw.")
    ] = None,
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="Training recipe TOML: how reference/shadow/DP models are trained.")
    ] = None,
    population: Annotated[
        str | None,
        typer.Option(
            "--population",
            help="Extra data the attacker owns, disjoint from --train and --holdout: the shadow models' training "
            "data and RMIA's population (optional; refused if it shares a record with them).",
        ),
    ] = None,
    demo: Annotated[
        str | None,
        typer.Option("--demo", help="digits or breast-cancer: train an overfit and a DP model and audit both."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the reports.")] = Path("reports/privacy"),
    attacks: Annotated[
        str, typer.Option(help="Comma-separated membership attacks.")
    ] = "loss,lira-online,lira-offline,rmia,shadow",
    references: Annotated[int, typer.Option("--references", help="Reference-model budget (even).")] = 8,
    sweep_epsilon: Annotated[
        str | None,
        typer.Option("--sweep-epsilon", help="Also train DP models at these ε (e.g. 1,3,8,inf) and audit them."),
    ] = None,
    delta: Annotated[float, typer.Option(help="δ of the DP models trained for --demo and --sweep-epsilon.")] = 1e-5,
    sensitive_feature: Annotated[
        str | None, typer.Option("--sensitive-feature", help="Tabular feature (name or index) for attribute inference.")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Cache of reference models (default ~/.cache/hoplon/models).")
    ] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture for weight-only model files.")] = None,
    trust: Annotated[bool, typer.Option("--trust", help="Allow pickle-based model files.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the confidence intervals.")] = 200,
) -> None:
    """Measure membership leakage (TPR at low FPR, AUC, advantage), model inversion and attribute inference."""
    import torch

    from hoplon.audit.privacy import AuditedModel, privacy
    from hoplon.defenses.training import DPConfig, train_private
    from hoplon.recipes import ModelCache
    from hoplon.report import write_report
    from hoplon.targets import TorchTarget, file_digest, load_target

    torch.set_num_threads(1)
    names = parse_names(attacks)
    members, nonmembers, pop, rec = _load_inputs(train, holdout, recipe, demo, population)
    feature: int | str | None = None
    if sensitive_feature is not None:
        feature = int(sensitive_feature) if sensitive_feature.isdigit() else sensitive_feature
    n_classes = max(int(members.y.max()), int(nonmembers.y.max())) + 1
    shape = members.sample_shape
    models: list[AuditedModel] = []
    for path in model or []:
        target = load_target(
            path, input_shape=shape, n_classes=n_classes, bounds=members.bounds, arch=arch, trust=trust
        )
        record_path = Path(path + RECORD_SUFFIX)
        record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
        test_acc = float((target.predict(nonmembers.x).argmax(1) == nonmembers.y).double().mean())
        models.append(AuditedModel(target=target, record=record, test_accuracy=test_acc, digest=file_digest(path)))
    epsilons: list[float] = _parse_epsilons(sweep_epsilon) if sweep_epsilon else []
    if demo is not None and not model and not epsilons:
        epsilons = [math.inf, 3.0]
    if epsilons and rec is None:
        raise InputError("--sweep-epsilon and --demo train models by a recipe; give --recipe.")
    if not models and not epsilons:
        raise InputError("Give at least one --model to audit (or --demo / --sweep-epsilon to train them).")
    cache = ModelCache(cache_dir or _default_cache())
    for eps in epsilons:
        assert rec is not None
        if math.isinf(eps):
            with console.status(f"Training by the recipe on {members.n} records (ε = ∞)..."):
                module, _ = cache.train(rec, members.x, members.y, n_classes=n_classes, tag="target")
            trained: dict[str, Any] = {"epsilon": None, "private": False, "recipe_sha256": rec.digest()}
            name = "recipe (ε=∞)"
        else:
            _check_dp_args(eps, delta, members.n)
            with console.status(f"DP-SGD training at ε = {eps:g} on {members.n} records..."):
                module, dp = train_private(
                    rec, members.x, members.y, n_classes=n_classes, config=DPConfig(epsilon=eps, delta=delta)
                )
            trained = dp.to_dict()
            name = f"dp (ε={eps:g})"
        target = TorchTarget(module, input_shape=shape, n_classes=n_classes, bounds=members.bounds, name=name)
        models.append(
            AuditedModel(target=target, record=trained, test_accuracy=_accuracy(module, nonmembers), recipe=rec)
        )
    with progress_bars() as bars:
        report = privacy(
            models,
            members,
            nonmembers,
            recipe=rec,
            population=pop,
            attacks=names,
            n_references=references,
            cache_dir=cache_dir or _default_cache(),
            seed=seed,
            n_boot=n_boot,
            sensitive_feature=feature,
            progress=bars,
        )
    paths = write_report(report, out)
    console.print(privacy_table(report.results["privacy"]))
    if "privacy_utility" in report.results:
        console.print(utility_table(report.results["privacy_utility"]))
    shadow = report.results.get("shadow_data")
    if shadow is not None:
        console.print(f"[bold]shadow models[/] ({shadow['source']}): {shadow['note']}", highlight=False, soft_wrap=True)
    for f in report.findings:
        console.print(f"[bold]{f.severity.label:>8}[/] {f.title}: {f.summary}", highlight=False, soft_wrap=True)
    for fmt, written in paths.items():
        console.print(f"{fmt:>8}: {written}", soft_wrap=True, highlight=False)
    raise typer.Exit(EXIT_OK)


@harden_app.command("dp")
def dp_command(
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="Training recipe TOML (model, optimiser, epochs...).")
    ] = None,
    train: Annotated[str | None, typer.Option("--train", help="The private training data (.npz/.csv).")] = None,
    test: Annotated[str | None, typer.Option("--test", help="Held-out data to state the utility cost on.")] = None,
    demo: Annotated[
        str | None, typer.Option("--demo", help="digits or breast-cancer in place of recipe and data.")
    ] = None,
    epsilon: Annotated[float, typer.Option(help="Target ε (> 0).")] = 3.0,
    delta: Annotated[float, typer.Option(help="Target δ, below 1/n.")] = 1e-5,
    max_grad_norm: Annotated[float, typer.Option(help="Per-sample gradient clipping norm.")] = 1.0,
    accountant: Annotated[str, typer.Option(help="prv (default), rdp or gdp.")] = "prv",
    grad_sample_mode: Annotated[str, typer.Option(help="ghost (default), hooks or functorch.")] = "ghost",
    fix_layers: Annotated[
        bool,
        typer.Option("--fix-layers", help="Let Opacus's ModuleValidator.fix replace layers it cannot make private."),
    ] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the private model (TorchScript).")] = Path(
        "private.pt"
    ),
    seed: Annotated[int | None, typer.Option(help="Seed (default: the recipe's).")] = None,
) -> None:
    """Train with DP-SGD (Opacus): the ε spent, its assumptions and the utility cost go in the training record."""
    import torch

    from hoplon.audit.privacy import demo_recipe, demo_splits
    from hoplon.data import load_dataset
    from hoplon.defenses.training import DPConfig, train_private
    from hoplon.recipes import load_recipe
    from hoplon.recipes import train as train_plain

    torch.set_num_threads(1)
    if demo is not None:
        if demo not in DEMOS:
            raise InputError(f"--demo must be one of {', '.join(DEMOS)}. Got {demo!r}.")
        members, holdout, _ = demo_splits(demo)
        rec = load_recipe(recipe) if recipe else demo_recipe(demo)
        test_data: Dataset | None = holdout
    else:
        if recipe is None or train is None:
            raise InputError("Give --recipe and --train (or --demo digits|breast-cancer).")
        rec = load_recipe(recipe)
        members = load_dataset(train)
        test_data = load_dataset(test) if test else None
    _check_dp_args(epsilon, delta, members.n)
    config = DPConfig(
        epsilon=epsilon,
        delta=delta,
        max_grad_norm=max_grad_norm,
        accountant=accountant,  # type: ignore[arg-type]
        grad_sample_mode=grad_sample_mode,  # type: ignore[arg-type]
    )
    n_classes = int(members.y.max()) + 1
    if test_data is not None:
        n_classes = max(n_classes, int(test_data.y.max()) + 1)
    with console.status(f"DP-SGD training at ε = {epsilon:g}, δ = {delta:g} on {members.n} records..."):
        module, record = train_private(
            rec, members.x, members.y, n_classes=n_classes, config=config, seed=seed, fix=fix_layers
        )
    info = record.to_dict()
    if test_data is not None:
        with console.status("Training the same recipe without DP, for the utility cost..."):
            baseline, _ = train_plain(rec, members.x, members.y, n_classes=n_classes, seed=seed)
        info["test_accuracy"] = _accuracy(module, test_data)
        info["baseline_test_accuracy"] = _accuracy(baseline, test_data)
        info["utility_cost"] = info["baseline_test_accuracy"] - info["test_accuracy"]
    _save_torchscript(module, members.x[:2], out)
    record_path = Path(str(out) + RECORD_SUFFIX)
    record_path.write_text(json.dumps(info, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    console.print(dp_table(record, info))
    console.print(f"   model: {out}\n  record: {record_path}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value):.1%}"


def privacy_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(
        title="Membership inference",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        caption="TPR@x = true-positive rate at false-positive rate x; adv. = max(TPR - FPR); ε̂ = empirical ε "
        "lower bound (95 %).",
        caption_justify="left",
    )
    for column in ("model", "attack", "AUC", "TPR@1%", "TPR@0.1%", "adv.", "ε̂", "CPU s"):
        table.add_column(column, justify="left" if column in ("model", "attack") else "right", no_wrap=True)
    for row in rows:
        table.add_row(
            str(row["model"]),
            str(row["attack"]),
            f"{row['auc']:.3f}",
            _pct(row["tpr_at_fpr"]["0.01"]),
            _pct(row["tpr_at_fpr"]["0.001"]),
            f"{row['advantage']:.3f}",
            f"{row['epsilon_lower_bound']:.2f}",
            f"{row['cpu_s']:.2f}",
        )
    return table


def utility_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="Privacy–utility", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("ε", "test accuracy", "strongest attack", "AUC", "TPR@1%"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        eps = row["epsilon"]
        table.add_row(
            "∞" if eps is None or math.isinf(float(eps)) else f"{float(eps):.3g}",
            _pct(row["test_accuracy"]),
            str(row["attack"]),
            f"{row['auc']:.3f}",
            _pct(row["tpr_at_fpr"]["0.01"]),
        )
    return table


def dp_table(record: DPRecord, info: dict[str, Any]) -> Table:
    table = Table(title="DP-SGD training record", title_justify="left", box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("", justify="left")
    table.add_column("", justify="right")
    items = [
        ("ε spent", f"{record.epsilon:.4f} (target {record.epsilon_target})"),
        ("δ", f"{record.delta:g}"),
        ("accountant", record.accountant),
        ("sampling", f"{record.sampling}, rate {record.sample_rate:.4g}"),
        ("steps / epochs", f"{record.steps} / {record.epochs}"),
        ("noise multiplier σ", f"{record.noise_multiplier:.4g}"),
        ("clipping norm C", f"{record.max_grad_norm:g}"),
        (
            "gradient mode",
            f"{record.grad_sample_mode} ({', '.join(record.ghost_clipped_layers) or 'no'} ghost-clipped)",
        ),
        ("train accuracy", _pct(record.train_accuracy)),
    ]
    if "test_accuracy" in info:
        items += [
            ("test accuracy", _pct(info["test_accuracy"])),
            ("without DP", _pct(info["baseline_test_accuracy"])),
            ("utility cost", f"{info['utility_cost']:+.1%}"),
        ]
    for key, value in items:
        table.add_row(key, value)
    return table
