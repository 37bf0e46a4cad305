"""``hoplon demo``: train the digits CNN (cached), audit its robustness, and say where the report is."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer

from hoplon.cli._common import console, progress_bars, robustness_table

DEMO_EPS = (0.05, 0.1, 0.2, 0.3)


@dataclass(frozen=True)
class DemoTraining:
    """How the demo model is trained; its hash names the cached file."""

    arch: str = "digits-cnn"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0


TRAINING = DemoTraining()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def prepare_demo(cache_dir: Path) -> tuple[Path, Path]:
    """Train (or reuse) the demo digits CNN as TorchScript and write the test split as .npz."""
    import torch

    from hoplon.data import demo, save_npz
    from hoplon.models import accuracy, build, train_classifier
    from hoplon.targets.torch_target import quiet_torchscript

    key = hashlib.sha256(json.dumps(asdict(TRAINING), sort_keys=True).encode()).hexdigest()[:12]
    cache_dir.mkdir(parents=True, exist_ok=True)
    model_path = cache_dir / f"digits-cnn-{key}.pt"
    data_path = cache_dir / "digits-test.npz"
    test = demo("digits", split="test")
    if not data_path.exists():
        save_npz(test, data_path)
    if model_path.exists():
        console.print(f"Using the cached demo model {model_path}")
        return model_path, data_path
    torch.set_num_threads(1)
    torch.manual_seed(TRAINING.seed)
    train = demo("digits", split="train")
    module = build(TRAINING.arch, input_shape=(1, 8, 8), n_classes=10)
    with console.status("Training the demo CNN on scikit-learn's digits (seeded)..."):
        train_classifier(
            module,
            train.x,
            train.y,
            epochs=TRAINING.epochs,
            batch_size=TRAINING.batch_size,
            lr=TRAINING.lr,
            seed=TRAINING.seed,
        )
    console.print(f"Trained: test accuracy {accuracy(module, test.x, test.y):.1%}")
    tmp = model_path.with_suffix(".tmp")
    with quiet_torchscript():
        torch.jit.save(torch.jit.trace(module, test.x[:1]), str(tmp))
    tmp.replace(model_path)
    return model_path, data_path


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the reports.")] = Path("reports/demo"),
    cache_dir: Annotated[Path, typer.Option(help="Where the trained demo model is cached.")] = Path(".cache/hoplon"),
) -> None:
    """Train a small CNN on the bundled digits data, audit its robustness, and write the reports."""
    from hoplon.audit import robustness
    from hoplon.data import load_npz
    from hoplon.report import write_report
    from hoplon.targets import file_digest, load_target

    model_path, data_path = prepare_demo(cache_dir)
    data = load_npz(data_path, name="digits-test.npz")
    target = load_target(model_path, input_shape=data.sample_shape, bounds=data.bounds)
    with progress_bars() as bars:
        report = robustness(
            target,
            data,
            norm="linf",
            eps=DEMO_EPS,
            seed=0,
            model_digest=file_digest(model_path),
            progress=bars,
            command=f"hoplon demo --out {out}",
        )
    paths = write_report(report, out)
    console.print(robustness_table(report.results["robustness"], "Robustness of the demo digits CNN (L∞)"))
    console.print(f"\nHTML report: [bold]{paths['html'].resolve()}[/]", soft_wrap=True, highlight=False)
    console.print(f"JSON report: {paths['json'].resolve()}", soft_wrap=True, highlight=False)
