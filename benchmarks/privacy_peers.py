"""hoplon's membership attacks beside IBM ART's (and ML Privacy Meter's, if it runs), and hoplon's DP-SGD
beside plain SGD and plain Opacus.

Every library attacks the SAME model (the digits demo CNN trained by hoplon's overfitting demo recipe on
150 members) on the same 150 members and 150 non-members, in one process with one torch thread. One
evaluator (hoplon.metrics, checked against scikit-learn in the tests) turns every library's per-record
scores into AUC and TPR at 1 % and 0.1 % FPR. Attacks that learn from labelled membership (ART's black-box
attack) are cross-fitted: trained on one half of the records, scored on the other, and vice versa, so every
record gets an out-of-sample score. CPU seconds come from ``time.process_time()`` and include training the
reference / shadow models each attack needs.

DP timing: seconds per epoch on the 1,347-record digits training split (flat MLP, batch 64, a fixed noise
multiplier so no ε calibration is timed): plain SGD, hoplon's ``train_private`` (Opacus with ghost
clipping), plain Opacus in its default per-sample mode (``hooks``), and plain Opacus with ghost clipping.

Run from the repository root, in the benchmark's own environment (ART never enters hoplon's dependencies)::

    python3.11 -m venv benchmarks/.venv-privacy
    printf "$PWD/.venv/lib/python3.11/site-packages\\n$PWD/src\\n" \\
        > benchmarks/.venv-privacy/lib/python3.11/site-packages/hoplon-main.pth
    benchmarks/.venv-privacy/bin/pip install -c constraints.txt --no-deps \\
        adversarial-robustness-toolbox==1.20.1 six tqdm
    benchmarks/.venv-privacy/bin/python benchmarks/privacy_peers.py           # ~5 min on one core

Writes ``benchmarks/results/privacy_peers.{json,md}``.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse
import json
import logging
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hoplon.attacks.privacy import make_privacy_attack, train_references
from hoplon.audit.privacy import demo_recipe, demo_splits
from hoplon.data import demo
from hoplon.metrics import auc, tpr_at_fpr
from hoplon.recipes import Recipe, fit, train
from hoplon.targets import TorchTarget

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
torch.set_num_threads(1)
log = logging.getLogger("privacy_peers")


def _row(
    library: str, attack: str, scores: np.ndarray | torch.Tensor, labels: torch.Tensor, cpu_s: float
) -> dict[str, Any]:
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64)).reshape(-1)
    return {
        "library": library,
        "attack": attack,
        "auc": auc(s, labels),
        "tpr@1%": tpr_at_fpr(s, labels, 0.01),
        "tpr@0.1%": tpr_at_fpr(s, labels, 0.001),
        "cpu_s": round(cpu_s, 2),
    }


def hoplon_rows(
    recipe: Recipe, target: TorchTarget, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor, n_refs: int
) -> list[dict[str, Any]]:
    rows = []
    start = time.process_time()
    refs = train_references(recipe, x, y, n_models=n_refs, n_classes=10, seed=7)
    ref_cpu = time.process_time() - start
    for name in ("loss", "lira-online", "lira-offline", "rmia", "shadow"):
        attack = make_privacy_attack(name)
        start = time.process_time()
        result = attack.run(target, x, y, references=refs, rng=torch.Generator().manual_seed(0))
        cpu = time.process_time() - start + (ref_cpu if type(attack).info.needs_references else 0.0)
        label = f"{name} ({n_refs} refs)" if type(attack).info.needs_references else name
        rows.append(_row("hoplon", label, result.scores, labels, cpu))
    return rows


def art_rows(
    module: torch.nn.Module,
    recipe: Recipe,
    x: torch.Tensor,
    y: torch.Tensor,
    labels: torch.Tensor,
    population: torch.Tensor,
    population_y: torch.Tensor,
) -> list[dict[str, Any]]:
    from art.attacks.inference.membership_inference import (
        MembershipInferenceBlackBox,
        MembershipInferenceBlackBoxRuleBased,
        ShadowModels,
    )
    from art.estimators.classification import PyTorchClassifier

    def wrap(m: torch.nn.Module) -> PyTorchClassifier:
        return PyTorchClassifier(
            model=m,
            loss=torch.nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam(m.parameters(), lr=recipe.lr),
            input_shape=(1, 8, 8),
            nb_classes=10,
            clip_values=(0.0, 1.0),
        )

    classifier = wrap(module)
    xn, yn = x.numpy(), y.numpy()
    rows = []
    start = time.process_time()
    rule = MembershipInferenceBlackBoxRuleBased(classifier).infer(xn, yn)
    rows.append(_row("ART", "rule-based (label only)", rule, labels, time.process_time() - start))
    # Cross-fitted supervised attacks: the attack model learns from half of the true memberships.
    fold = np.arange(len(xn)) % 2 == 0
    member = labels.numpy()
    for input_type, model_type in (("loss", "rf"), ("prediction", "rf"), ("prediction", "nn")):
        start = time.process_time()
        scores = np.zeros(len(xn))
        for train_mask in (fold, ~fold):
            attack = MembershipInferenceBlackBox(classifier, input_type=input_type, attack_model_type=model_type)
            tm = train_mask & member
            tn = train_mask & ~member
            attack.fit(x=xn[tm], y=yn[tm], test_x=xn[tn], test_y=yn[tn])
            scores[~train_mask] = attack.infer(xn[~train_mask], yn[~train_mask], probabilities=True)[:, -1]
        rows.append(
            _row("ART", f"black-box {input_type}/{model_type} (cross-fit)", scores, labels, time.process_time() - start)
        )
    # Shadow models trained on the population (disjoint from the audited records), then a black-box attack.
    start = time.process_time()
    torch.manual_seed(0)
    template = wrap(recipe.build(input_shape=(1, 8, 8), n_classes=10))
    shadows = ShadowModels(template, num_shadow_models=3, random_state=0)
    one_hot = np.eye(10)[population_y.numpy()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (mx, my, mp), (nx, ny, np_) = shadows.generate_shadow_dataset(population.numpy(), one_hot)
    attack = MembershipInferenceBlackBox(classifier, attack_model_type="rf")
    attack.fit(x=mx, y=my, test_x=nx, test_y=ny, pred=mp, test_pred=np_)
    scores = attack.infer(xn, np.eye(10)[yn], probabilities=True)[:, -1]
    rows.append(_row("ART", "shadow models (3) + black-box rf", scores, labels, time.process_time() - start))
    return rows


def _epoch_seconds(run: Callable[[], list[float]]) -> float:
    return statistics.median(run())


def dp_timing(epochs: int) -> list[dict[str, Any]]:
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    from hoplon.defenses.training import DPConfig, train_private

    data = demo("digits", split="train")
    recipe = Recipe(factory="__main__:flat_mlp", optimiser="sgd", lr=0.1, epochs=epochs, batch_size=64, seed=0)
    rows = []

    def plain() -> list[float]:
        torch.manual_seed(0)
        module = recipe.build(input_shape=(1, 8, 8), n_classes=10)
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            fit(module, recipe.replace(epochs=1), data.x, data.y, seed=0)
            times.append(time.perf_counter() - start)
        return times

    def hoplon_dp() -> list[float]:
        _, record = train_private(
            recipe, data.x, data.y, n_classes=10, config=DPConfig(noise_multiplier=1.0, delta=1e-5)
        )
        return list(record.epoch_seconds)

    def opacus(mode: str) -> Callable[[], list[float]]:
        def run() -> list[float]:
            torch.manual_seed(0)
            module = recipe.build(input_shape=(1, 8, 8), n_classes=10)
            optimiser = torch.optim.SGD(module.parameters(), lr=recipe.lr)
            loader = DataLoader(TensorDataset(data.x, data.y), batch_size=64, shuffle=True)
            criterion = torch.nn.CrossEntropyLoss()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                engine = PrivacyEngine(accountant="prv")
                made = engine.make_private(
                    module=module,
                    optimizer=optimiser,
                    data_loader=loader,
                    noise_multiplier=1.0,
                    max_grad_norm=1.0,
                    criterion=criterion,
                    grad_sample_mode=mode,
                )
            if mode == "ghost":
                model, opt, crit, dl = made
            else:
                model, opt, dl = made
                crit = criterion
            times = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(epochs):
                    start = time.perf_counter()
                    for xb, yb in dl:
                        opt.zero_grad()
                        loss = crit(model(xb), yb)
                        loss.backward()
                        opt.step()
                    times.append(time.perf_counter() - start)
            return times

        return run

    runs = {
        "plain SGD (no DP)": plain,
        "hoplon train_private (Opacus, ghost clipping)": hoplon_dp,
        "plain Opacus, default per-sample mode (hooks)": opacus("hooks"),
        "plain Opacus, ghost clipping": opacus("ghost"),
    }
    for name, run in runs.items():
        rows.append({"training": name, "epoch_s": round(_epoch_seconds(run), 4)})
    base = rows[0]["epoch_s"]
    for row in rows:
        row["vs_plain_sgd"] = round(row["epoch_s"] / base, 2)
    return rows


def flat_mlp(input_shape: tuple[int, ...] = (1, 8, 8), n_classes: int = 10) -> torch.nn.Module:
    """The MLP of the DP timing (what the issue's "10–26× plain SGD on an MLP" refers to)."""
    n = int(np.prod(input_shape))
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(n, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, n_classes),
    )


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "| library | attack | AUC | TPR@1% FPR | TPR@0.1% FPR | CPU s |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["attacks"]:
        lines.append(
            f"| {r['library']} | {r['attack']} | {r['auc']:.3f} | {r['tpr@1%']:.1%} | {r['tpr@0.1%']:.1%} "
            f"| {r['cpu_s']:.1f} |"
        )
    lines += ["", "| training | s / epoch | × plain SGD |", "| --- | ---: | ---: |"]
    for r in result["dp_timing"]:
        lines.append(f"| {r['training']} | {r['epoch_s']:.3f} | {r['vs_plain_sgd']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per DP timing run")
    parser.add_argument("--skip-art", action="store_true")
    args = parser.parse_args()
    members, holdout, population = demo_splits("digits")
    recipe = demo_recipe("digits")
    x = torch.cat([members.x, holdout.x])
    y = torch.cat([members.y, holdout.y])
    labels = torch.cat([torch.ones(members.n, dtype=torch.bool), torch.zeros(holdout.n, dtype=torch.bool)])
    module, _ = train(recipe, members.x, members.y, n_classes=10, seed=1234)
    target = TorchTarget(module, input_shape=(1, 8, 8), n_classes=10, name="digits-cnn")
    rows = hoplon_rows(recipe, target, x, y, labels, args.references)
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    if not args.skip_art:
        import art

        versions["adversarial-robustness-toolbox"] = art.__version__
        rows += art_rows(module, recipe, x, y, labels, population.x, population.y)
    import opacus

    versions["opacus"] = opacus.__version__
    result = {
        "setup": {
            "model": "digits-cnn, demo recipe (40 epochs, Adam 3e-3)",
            "members": members.n,
            "nonmembers": holdout.n,
            "population": population.n,
            "min_fpr": 1 / holdout.n,
        },
        "versions": versions,
        "attacks": rows,
        "dp_timing": dp_timing(args.epochs),
        "ml_privacy_meter": "not run: privacy-meter 1.0.1 imports tensorflow at module level "
        "(privacy_meter.model); see docs/benchmarks.md",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "privacy_peers.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "privacy_peers.md").write_text(_markdown(result), encoding="utf-8")
    print(_markdown(result))


if __name__ == "__main__":
    main()
