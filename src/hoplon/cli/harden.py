"""``hoplon harden adversarial``: adversarial (PGD-AT, TRADES) or Gaussian-noise training, saved as TorchScript."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hoplon.cli._common import console
from hoplon.cli.groups import harden_app
from hoplon.core.errors import EXIT_OK, InputError, ModelLoadError

if TYPE_CHECKING:
    from torch import nn

    from hoplon.data import Dataset


def register(app: typer.Typer) -> None:
    """The command joins the shared ``harden`` group (added to ``app`` by ``main``)."""


def _load_module(spec: str, data: Dataset) -> nn.Module:
    """A demo architecture, ``package.module:factory``, or a TorchScript file to fine-tune."""
    import torch

    from hoplon.models import ARCHITECTURES, build
    from hoplon.targets import detect_format
    from hoplon.targets.torch_target import quiet_torchscript

    path = Path(spec)
    if spec not in ARCHITECTURES and path.is_file():
        fmt = detect_format(path)
        if fmt != "torchscript":
            raise InputError(
                f"{path} is a {fmt} file; harden trains a model defined in Python (a demo architecture or "
                "package.module:factory) or fine-tunes a TorchScript file."
            )
        try:
            with quiet_torchscript():
                module: nn.Module = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"Cannot load TorchScript model {path}: {str(exc).splitlines()[0]}") from None
        return module
    n_classes = max(int(data.y.max()) + 1, 2)
    return build(spec, input_shape=data.sample_shape, n_classes=n_classes)


def _save(module: nn.Module, example: object, out: Path) -> None:
    import torch

    from hoplon.targets.torch_target import quiet_torchscript

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with quiet_torchscript():
        scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.trace(module, example)
        torch.jit.save(scripted, str(tmp))
    tmp.replace(out)


def record_path(out: Path) -> Path:
    """Where the training record of ``out`` goes: ``hardened.pt`` → ``hardened.training.json``."""
    return out.with_name(out.stem + ".training.json")


@harden_app.command("adversarial")
def adversarial_command(
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="digits-cnn, tabular-mlp, package.module:factory, or a TorchScript file to fine-tune."
        ),
    ],
    data: Annotated[str, typer.Option("--data", "-d", help="Training data: .npz, .csv or a demo name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the TorchScript model.")] = Path(
        "hardened.pt"
    ),
    method: Annotated[str, typer.Option(help="pgd-at, trades or gaussian.")] = "pgd-at",
    eps: Annotated[float, typer.Option(help="Threat-model radius in input units (pgd-at, trades).")] = 0.1,
    norm: Annotated[str, typer.Option(help="linf or l2.")] = "linf",
    sigma: Annotated[float, typer.Option(help="Noise level for --method gaussian.")] = 0.25,
    epochs: Annotated[int, typer.Option(help="Passes over the data.")] = 30,
    batch_size: Annotated[int, typer.Option(help="Rows per training step.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 3e-3,
    steps: Annotated[int, typer.Option(help="PGD steps of the inner attack.")] = 10,
    beta: Annotated[float, typer.Option(help="TRADES trade-off weight.")] = 6.0,
    warmup_epochs: Annotated[int, typer.Option(help="Epochs over which eps (or sigma) ramps up from 0.")] = 0,
    val_data: Annotated[
        str | None, typer.Option(help="Held-out data for the per-epoch figures (default: a training subset).")
    ] = None,
    bounds: Annotated[str | None, typer.Option(help="Input box LO,HI when the data does not declare one.")] = None,
    label_column: Annotated[str, typer.Option(help="Label column of a CSV file.")] = "label",
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
) -> None:
    """Harden a model by adversarial training (PGD-AT, TRADES) or Gaussian noise augmentation."""
    import torch

    from hoplon.core.report import json_safe
    from hoplon.data import load_dataset, parse_bounds
    from hoplon.defenses.training import AdversarialConfig, adversarial
    from hoplon.report.writer import atomic_write_text

    config = AdversarialConfig(
        method=method,  # type: ignore[arg-type]
        eps=eps,
        norm=norm,  # type: ignore[arg-type]
        sigma=sigma,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        steps=steps,
        beta=beta,
        warmup_epochs=warmup_epochs,
        seed=seed,
    )
    box = parse_bounds(bounds) if bounds else None
    train = load_dataset(data, bounds=box, label=label_column)
    val = load_dataset(val_data, bounds=train.bounds, label=label_column) if val_data else None
    torch.manual_seed(seed)
    module = _load_module(model, train)

    def show(figures: dict[str, float]) -> None:
        robust = figures["robust_accuracy"]
        shown = "–" if math.isnan(robust) else f"{robust:.1%}"
        console.print(
            f"epoch {int(figures['epoch']):>3}: loss {figures['loss']:.4f}  clean {figures['clean_accuracy']:.1%}  "
            f"robust {shown}",
            highlight=False,
        )

    module, record = adversarial(
        module,
        train.x,
        train.y,
        bounds=train.bounds,
        config=config,
        x_val=val.x if val else None,
        y_val=val.y if val else None,
        progress=show,
    )
    _save(module, train.x[:1], out)
    document = record.to_dict() | {
        "model": model,
        "data": {"name": train.name, "fingerprint": train.fingerprint(), "n": train.n},
        "output": str(out),
    }
    json_path = atomic_write_text(
        record_path(out), json.dumps(json_safe(document), indent=2, allow_nan=False, default=str) + "\n"
    )
    console.print(f"model: {out}\nrecord: {json_path}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK)
