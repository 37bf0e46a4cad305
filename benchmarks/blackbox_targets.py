"""Issue 3's targets on the bundled digits CNN, measured once (not a test: a few minutes of one CPU core).

1. PGD-AT (L∞, ε = 0.1) vs the undefended model: clean and worst-case robust accuracy (hoplon's APGD-CE +
   APGD-T ensemble), and adversarial-training epochs/s vs a bare torch PGD-AT loop with the same settings.
2. Square Attack (5,000 queries) vs white-box APGD-CE on the undefended model at ε = 0.1.
3. Randomized smoothing at σ = 0.25 (Gaussian-trained model): certified accuracy at L2 radius 0.5, with n,
   α, the abstention rate and the largest certifiable radius.

Run from the repository root:  .venv/bin/python benchmarks/blackbox_targets.py [--quick]
Writes ``benchmarks/results/blackbox_targets.json``.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)

from hoplon.attacks import SquareAttack, evaluate, make  # noqa: E402
from hoplon.audit import robustness  # noqa: E402
from hoplon.audit.certify import certify  # noqa: E402
from hoplon.data import demo  # noqa: E402
from hoplon.defenses.training import AdversarialConfig, adversarial  # noqa: E402
from hoplon.models import digits_cnn, train_classifier  # noqa: E402
from hoplon.targets import TorchTarget  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _worst_case(module: torch.nn.Module, data: Any, name: str) -> dict[str, float]:
    target = TorchTarget(module, input_shape=(1, 8, 8), bounds=data.bounds, name=name)
    report = robustness(target, data, eps=[0.1], attacks=["auto"], command=name, masking_checks=False)
    row = next(r for r in report.results["robustness"] if r["attack"] == "worst-case")
    return {"clean_accuracy": row["clean_accuracy"], "robust_accuracy": row["robust_accuracy"]}


def _bare_pgd_at(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    """A hand-written torch PGD-AT loop (same ε, steps, step size, batch, optimiser): seconds per epoch."""
    from torch.nn import functional as F

    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    eps, steps, alpha = 0.1, 10, 0.025
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            xb, yb = x[order[i : i + 128]], y[order[i : i + 128]]
            module.eval()
            delta = (torch.rand(xb.shape, generator=gen) * 2 - 1) * eps
            xa = (xb + delta).clamp(0, 1)
            for _ in range(steps):
                xa.requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(module(xa), yb), xa)
                xa = torch.min(torch.max(xa.detach() + alpha * g.sign(), xb - eps), xb + eps).clamp(0, 1)
            module.train()
            opt.zero_grad()
            F.cross_entropy(module(xa), yb).backward()
            opt.step()
    return (time.perf_counter() - start) / epochs


def _speed(train: Any) -> dict[str, float]:
    """CPU seconds per epoch of hoplon's PGD-AT and of the bare loop, interleaved (3 rounds, median), so that
    other load on the machine hits both alike."""
    mine, bare = [], []
    for _ in range(3):
        start = time.process_time()
        adversarial(
            digits_cnn(), train.x, train.y, bounds=train.bounds, config=AdversarialConfig(epochs=1, eval_samples=0)
        )
        mine.append(time.process_time() - start)
        start = time.process_time()
        _bare_pgd_at(digits_cnn(), train.x, train.y, 1)
        bare.append(time.process_time() - start)
    m, b = statistics.median(mine), statistics.median(bare)
    return {"hoplon": m, "bare_torch": b, "ratio": m / b}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    epochs = 3 if args.quick else 30
    train, test = demo("digits", split="train"), demo("digits", split="test")
    if args.quick:
        test = test.subset(slice(0, 60))
    out: dict[str, Any] = {"quick": args.quick, "n_test": test.n}

    torch.manual_seed(0)
    base = digits_cnn()
    train_classifier(base, train.x, train.y, epochs=15, seed=0)
    out["undefended"] = _worst_case(base, test, "undefended")

    torch.manual_seed(0)
    hardened, record = adversarial(
        digits_cnn(),
        train.x,
        train.y,
        bounds=train.bounds,
        config=AdversarialConfig(method="pgd-at", eps=0.1, epochs=epochs),
    )
    out["pgd_at"] = _worst_case(hardened, test, "pgd-at") | {"wall_epochs_per_s": record.epochs_per_s}
    out["training_cpu_s_per_epoch"] = _speed(train)
    print(json.dumps(out, indent=1), flush=True)

    target = TorchTarget(base, input_shape=(1, 8, 8), bounds=test.bounds)
    cpu0 = time.process_time()
    q0 = target.counter.queries
    square = evaluate(SquareAttack(max_queries=5000), target, test.x, test.y, eps=[0.1])
    sq_cpu, sq_q = time.process_time() - cpu0, target.counter.queries - q0
    apgd = evaluate(make("apgd-ce"), target, test.x, test.y, eps=[0.1])
    robust = {
        name: float((ev.clean_correct & ~ev.outcomes[0].is_adv).float().mean())
        for name, ev in (("square", square), ("apgd_ce", apgd))
    }
    out["square_vs_apgd"] = robust | {
        "gap_pp": 100 * (robust["square"] - robust["apgd_ce"]),
        "square_cpu_s": sq_cpu,
        "square_queries_per_sample": sq_q / test.n,
    }
    print(json.dumps(out["square_vs_apgd"], indent=1), flush=True)

    torch.manual_seed(0)
    noisy, _ = adversarial(
        digits_cnn(),
        train.x,
        train.y,
        bounds=train.bounds,
        config=AdversarialConfig(method="gaussian", sigma=0.25, epochs=epochs, eval_samples=0),
    )
    n = 1000 if args.quick else 10_000
    target = TorchTarget(noisy, input_shape=(1, 8, 8), bounds=test.bounds, batch_size=4096)
    report = certify(target, test, sigma=0.25, n0=100, n=n, alpha=0.001, radii=[0.0, 0.25, 0.5, 0.75, 1.0], command="x")
    out["certify"] = report.results["certified"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "blackbox_targets.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
