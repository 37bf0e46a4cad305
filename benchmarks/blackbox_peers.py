"""hoplon's Square Attack and HopSkipJump beside ART, Foolbox and torchattacks (each where it has one).

Same TorchScript models and samples for every library, one process, one torch thread:

* digits: hoplon's ``digits_cnn`` (``train_classifier(seed=0)``), samples in [0, 1];
* breast-cancer: hoplon's ``tabular_mlp``, features standardised into the box [-3, 3] (the "tabular box").

Model rows are counted by a wrapper module around the model (the benchmark's own count, never a library's
own), CPU seconds by ``time.process_time()`` around each attack call. One evaluator re-scores every output
without clipping: a sample outside the box or the ε-ball counts as not adversarial.

* Square Attack, L∞, at equal nominal query budgets (``--queries``, default 1000 per sample): hoplon
  ``SquareAttack(max_queries=Q)``, torchattacks ``Square(n_queries=Q)``, ART ``SquareAttack(max_iter=Q)``.
  Foolbox has none. torchattacks clamps to [0, 1], so on the tabular box it attacks a wrapper model taking
  u ∈ [0, 1] (ε scaled by the box width; the evaluator maps back); torchattacks' and ART's Square take only
  image batches, so tabular samples are given to them as ``(n, 1, 1, d)`` (ART: ``(n, 1, 5, 6)``).
* HopSkipJump, L2, at equal iterations (``--hsja-steps``): hoplon ``HopSkipJump(steps=S)``, ART
  ``HopSkipJump(max_iter=S)``, Foolbox ``HopSkipJumpAttack(steps=S)`` (all: 100 initial gradient
  evaluations, 10,000 at most). torchattacks has none. ART's HopSkipJump feeds float64 arrays, which a
  float32 model rejects ("crashes on float32 models"): it gets a wrapper that casts them. Reported:
  success, median L2 of the successful perturbations, rows per sample, CPU seconds.

Run inside the benchmark environment (see benchmarks/README.md):

    benchmarks/.venv-peers/bin/python benchmarks/blackbox_peers.py [--quick]

Writes ``benchmarks/results/blackbox_peers.{json,md}``.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(1)

from hoplon.attacks import HopSkipJump, SquareAttack  # noqa: E402
from hoplon.data import demo  # noqa: E402
from hoplon.models import accuracy, digits_cnn, tabular_mlp, train_classifier  # noqa: E402
from hoplon.targets import TorchTarget  # noqa: E402
from hoplon.targets.types import Bounds  # noqa: E402

log = logging.getLogger("blackbox_peers")
TOL = 1e-6


class Counting(nn.Module):
    """Counts the rows the wrapped model evaluates."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += int(x.shape[0])
        return self.model(x)


class UnitBox(nn.Module):
    """Takes u ∈ [0, 1] and evaluates the model at ``lo + (hi − lo)·u`` (torchattacks assumes [0, 1]), reshaped
    to the sample shape (torchattacks' and ART's Square take only image batches ``(n, c, h, w)``)."""

    def __init__(self, model: nn.Module, lo: float, hi: float, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.lo, self.width, self.shape = model, lo, hi - lo, shape

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model((self.lo + self.width * u).reshape(len(u), *self.shape))


class Float32(nn.Module):
    """ART's HopSkipJump feeds float64 arrays, which a float32 TorchScript model rejects: cast them."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.shape = model, shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(torch.float32).reshape(len(x), *self.shape))


def _image_shape(shape: tuple[int, ...], *, square: bool = False) -> tuple[int, ...]:
    """Image batches for the peers: ``(1, 1, d)``, or the squarest ``(1, h, w)`` (ART's Square needs h > 1)."""
    if len(shape) == 3:
        return shape
    d = int(np.prod(shape))
    h = max((k for k in range(1, int(d**0.5) + 1) if d % k == 0), default=1) if square else 1
    return (1, h, d // h)


def _problem(name: str, n: int, cache: Path) -> dict[str, Any]:
    train, test = demo(name, split="train"), demo(name, split="test")
    n_classes = int(train.y.max()) + 1
    path = cache / f"{name}-seed0.pt"
    if not path.exists():
        torch.manual_seed(0)
        module = (digits_cnn if name == "digits" else tabular_mlp)(tuple(train.x.shape[1:]), n_classes)
        train_classifier(module, train.x, train.y, seed=0)
        cache.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(torch.jit.script(module.eval()), str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        script = torch.jit.load(str(path), map_location="cpu").eval()
    for p in script.parameters():
        p.requires_grad_(False)
    order = torch.randperm(len(test.x), generator=torch.Generator().manual_seed(0))[:n].sort().values
    x, y = test.x[order].contiguous(), test.y[order].contiguous()
    lo, hi = float(test.bounds.lower), float(test.bounds.upper)
    return {
        "name": name,
        "x": x,
        "y": y,
        "lo": lo,
        "hi": hi,
        "n_classes": n_classes,
        "counted": Counting(script).eval(),
        "clean_accuracy": accuracy(script, x, y),
        "eps": [0.1, 0.2] if name == "digits" else [0.3, 0.5],
    }


def rescore(p: dict[str, Any], x_adv: Any, norm: str, eps: float | None) -> dict[str, Any]:
    xa = torch.as_tensor(np.asarray(x_adv) if not isinstance(x_adv, torch.Tensor) else x_adv)
    xa = xa.detach().to(torch.float32).reshape(p["x"].shape)
    model = p["counted"].model
    with torch.no_grad():
        correct = model(p["x"]).argmax(1) == p["y"]
        adv_wrong = model(torch.nan_to_num(xa)).argmax(1) != p["y"]
    delta = (xa - p["x"]).reshape(len(xa), -1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    in_box = ((xa >= p["lo"] - TOL) & (xa <= p["hi"] + TOL)).reshape(len(xa), -1).all(1)
    in_ball = torch.ones_like(in_box) if eps is None else size <= eps + TOL
    fooled = correct & in_box & in_ball & adv_wrong & torch.isfinite(delta).all(1)
    n_correct = int(correct.sum())
    l2 = delta.norm(dim=1)
    return {
        "robust_accuracy": float((correct & ~fooled).float().mean()),
        "success_rate": float(fooled.sum()) / n_correct if n_correct else None,
        "median_l2": float(l2[fooled].median()) if bool(fooled.any()) else None,
        "n_invalid": int((correct & adv_wrong & ~(in_box & in_ball)).sum()),
    }


def timed(p: dict[str, Any], fn: Callable[[], Any]) -> tuple[Any, float, int]:
    torch.manual_seed(0)
    np.random.seed(0)
    rows0 = p["counted"].rows
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start, p["counted"].rows - rows0


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:110]


def run_entry(
    p: dict[str, Any], library: str, attack: str, norm: str, eps: float | None, fn: Callable[[], Any]
) -> dict[str, Any]:
    entry: dict[str, Any] = {"dataset": p["name"], "library": library, "attack": attack, "norm": norm, "eps": eps}
    try:
        x_adv, cpu, rows = timed(p, fn)
    except Exception as exc:  # a peer failing is a result
        entry["error"] = _short(exc)
        log.warning("%s %s %s failed: %s", library, attack, p["name"], entry["error"])
        return entry
    entry.update(rescore(p, x_adv, norm, eps), cpu_s=round(cpu, 3), rows_per_sample=round(rows / len(p["x"]), 1))
    print(json.dumps(entry), flush=True)
    return entry


def square_entries(p: dict[str, Any], queries: int) -> list[dict[str, Any]]:
    import torchattacks
    from art.attacks.evasion import SquareAttack as ArtSquare
    from art.estimators.classification import PyTorchClassifier

    out = []
    lo, hi, width = p["lo"], p["hi"], p["hi"] - p["lo"]
    bounds = Bounds.scalar(lo, hi)
    target = TorchTarget(p["counted"], input_shape=tuple(p["x"].shape[1:]), n_classes=p["n_classes"], bounds=bounds)
    for eps in p["eps"]:
        attack = SquareAttack(max_queries=queries)
        out.append(
            run_entry(
                p,
                "hoplon",
                "square",
                "linf",
                eps,
                lambda eps=eps, attack=attack: (
                    attack.run(
                        target, p["x"], p["y"], eps=eps, bounds=bounds, rng=torch.Generator().manual_seed(0)
                    ).x_adv
                ),
            )
        )
        shape = tuple(p["x"].shape[1:])
        image = _image_shape(shape)
        unit = UnitBox(p["counted"], lo, hi, shape).eval()

        def ta(eps: float = eps, unit: nn.Module = unit, image: tuple[int, ...] = image) -> torch.Tensor:
            atk = torchattacks.Square(unit, norm="Linf", eps=eps / width, n_queries=queries, n_restarts=1, seed=0)
            u = atk(((p["x"] - lo) / width).clamp(0, 1).reshape(len(p["x"]), *image), p["y"])
            return lo + width * u.reshape(p["x"].shape)

        out.append(run_entry(p, "torchattacks", "square", "linf", eps, ta))
        art_image = _image_shape(shape, square=True)
        classifier = PyTorchClassifier(
            model=Float32(p["counted"], shape),
            loss=nn.CrossEntropyLoss(),
            input_shape=art_image,
            nb_classes=p["n_classes"],
            clip_values=(lo, hi),
        )

        def art_square(eps: float = eps, classifier: Any = classifier, image: tuple[int, ...] = art_image) -> Any:
            atk = ArtSquare(classifier, norm=np.inf, eps=eps, max_iter=queries, nb_restarts=1, verbose=False)
            return atk.generate(x=p["x"].reshape(len(p["x"]), *image).numpy(), y=p["y"].numpy())

        out.append(run_entry(p, "art", "square", "linf", eps, art_square))
    return out


def hsja_entries(p: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    import foolbox as fb
    from art.attacks.evasion import HopSkipJump as ArtHSJ
    from art.estimators.classification import PyTorchClassifier

    out = []
    lo, hi = p["lo"], p["hi"]
    bounds = Bounds.scalar(lo, hi)
    target = TorchTarget(p["counted"], input_shape=tuple(p["x"].shape[1:]), n_classes=p["n_classes"], bounds=bounds)
    attack = HopSkipJump(steps=steps)
    out.append(
        run_entry(
            p,
            "hoplon",
            "hsja",
            "l2",
            None,
            lambda: (
                attack.run(target, p["x"], p["y"], eps=1.0, bounds=bounds, rng=torch.Generator().manual_seed(0)).x_adv
            ),
        )
    )
    classifier = PyTorchClassifier(
        model=Float32(p["counted"], tuple(p["x"].shape[1:])),
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(p["x"].shape[1:]),
        nb_classes=p["n_classes"],
        clip_values=(lo, hi),
    )

    def art_hsja() -> Any:
        atk = ArtHSJ(classifier, norm=2, max_iter=steps, max_eval=10_000, init_eval=100, verbose=False)
        return atk.generate(x=p["x"].numpy(), y=p["y"].numpy())

    out.append(run_entry(p, "art", "hsja", "l2", None, art_hsja))
    if p["name"] == "digits":  # Foolbox's HSJA does not terminate outside a [0, 1] box (see the module docstring)
        fmodel = fb.PyTorchModel(p["counted"], bounds=(lo, hi))

        def fb_hsja() -> Any:
            atk = fb.attacks.HopSkipJumpAttack(
                steps=steps, initial_gradient_eval_steps=100, max_gradient_eval_steps=10_000, constraint="l2"
            )
            raw, _, _ = atk(fmodel, p["x"], p["y"], epsilons=None)
            return raw

        out.append(run_entry(p, "foolbox", "hsja", "l2", None, fb_hsja))
    return out


def _markdown(results: dict[str, Any]) -> str:
    lines = ["# Black-box attacks: hoplon vs ART, Foolbox, torchattacks", ""]
    lines.append("| dataset | attack | ε | library | robust acc | success | median L2 | rows/sample | CPU s |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for e in results["entries"]:
        if "error" in e:
            lines.append(f"| {e['dataset']} | {e['attack']} | {e['eps']} | {e['library']} | error: {e['error']} |||||")
            continue
        med = "–" if e["median_l2"] is None else f"{e['median_l2']:.3f}"
        eps = "min-norm" if e["eps"] is None else f"{e['eps']:g}"
        lines.append(
            f"| {e['dataset']} | {e['attack']} | {eps} | {e['library']} | {e['robust_accuracy']:.1%} | "
            f"{(e['success_rate'] or 0):.1%} | {med} | {e['rows_per_sample']} | {e['cpu_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--hsja-steps", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    n_digits, n_cancer = (20, 20) if args.quick else (100, 60)
    cache = RESULTS / "models"
    entries: list[dict[str, Any]] = []
    for name, n in (("digits", n_digits), ("breast-cancer", n_cancer)):
        p = _problem(name, n, cache)
        entries += square_entries(p, args.queries)
        entries += hsja_entries(p, args.hsja_steps if not args.quick else 3)
    results = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "queries": args.queries,
        "hsja_steps": args.hsja_steps,
        "entries": entries,
        "median_cpu_s": statistics.median(e["cpu_s"] for e in entries if "cpu_s" in e),
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS / f"blackbox_peers{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"blackbox_peers{suffix}.md").write_text(_markdown(results))
    print(_markdown(results))


if __name__ == "__main__":
    main()
