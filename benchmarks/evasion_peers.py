"""hoplon's evasion attacks beside IBM ART, Foolbox, torchattacks and a bare torch PGD loop.

Every library attacks the SAME TorchScript module (the digits CNN, and a breast-cancer MLP whose features
live in the box [-3, 3]) on the same test samples, in one process with one torch thread. One evaluator
re-scores every library's output: nothing is clipped; a sample outside the box (±1e-6) or the ε-ball
(‖δ‖ ≤ ε + 1e-6) counts as NOT adversarial and is reported as invalid. The model rows each library
evaluates are counted by a wrapper module around the model (the benchmark's own count, not the
libraries'), and CPU seconds by ``time.process_time()`` around each attack call. hoplon gets its own copy of the
TorchScript module, as ``hoplon audit --model model.pt`` loads it (its ``TorchTarget`` lays an image model's
weights out channels_last in place, same values, and runs a scripted ``Sequential`` in two halves around its
``Flatten``): its rows are counted into the same tally where the target calls the module, one count per forward
as the wrapper does. The peers get the module exactly as loaded, inside the wrapper. The process keeps freed
memory for reuse (``hoplon.core.memory.keep_freed_memory``, what ``hoplon audit`` does): glibc's default
trimming made CPU seconds depend on which library ran before (up to 20 % system time in page faults), and the
setting applies to every library alike.

Run it from the repository root, inside the benchmark's own environment (see benchmarks/README.md):

    benchmarks/.venv-peers/bin/python benchmarks/evasion_peers.py            # full run (~8 CPU min)
    benchmarks/.venv-peers/bin/python benchmarks/evasion_peers.py --quick    # smoke run (~4–5 CPU min)
    benchmarks/.venv-peers/bin/python benchmarks/evasion_peers.py --bare-only --out /tmp/bare  # the 1.2× check only

Writes ``benchmarks/results/evasion_peers.{json,md}``.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse
import copy
import json
import logging
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-peers"
RESULTS = HERE / "results"
SETUP = f"""\
This benchmark runs only inside its own environment, {VENV}, which holds the peers
(ART, Foolbox, torchattacks) next to the same torch as hoplon. Set it up from the repository root:

    python3.11 -m venv benchmarks/.venv-peers
    benchmarks/.venv-peers/bin/pip install --no-deps -c constraints.txt -r benchmarks/requirements-peers.txt
    benchmarks/.venv-peers/bin/pip install --no-deps -e .

then run:  benchmarks/.venv-peers/bin/python benchmarks/evasion_peers.py [--quick]
"""


def _check_environment() -> None:
    inside = Path(sys.prefix).resolve() == VENV.resolve()
    missing = []
    for module in ("torch", "art", "foolbox", "torchattacks", "hoplon"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if not inside or missing:
        why = f"missing modules: {', '.join(missing)}" if missing else f"running in {sys.prefix}"
        print(f"evasion_peers: not inside the benchmark environment ({why}).\n\n{SETUP}", file=sys.stderr)
        raise SystemExit(2)


_check_environment()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

from hoplon.core.memory import keep_freed_memory  # noqa: E402

KEPT_FREED_MEMORY = keep_freed_memory()

import art  # noqa: E402
import foolbox as fb  # noqa: E402
import torchattacks  # noqa: E402
from art.attacks.evasion import (  # noqa: E402
    AutoProjectedGradientDescent,
    CarliniL2Method,
    FastGradientMethod,
    ProjectedGradientDescent,
)
from art.estimators.classification import PyTorchClassifier  # noqa: E402

import hoplon  # noqa: E402
from hoplon.attacks import ATTACKS, evaluate, make  # noqa: E402
from hoplon.attacks.evasion import APGD  # noqa: E402
from hoplon.audit.robustness import auto_attacks  # noqa: E402
from hoplon.data import demo  # noqa: E402
from hoplon.models import accuracy, digits_cnn, tabular_mlp, train_classifier  # noqa: E402
from hoplon.targets import TorchTarget  # noqa: E402
from hoplon.targets.types import Bounds  # noqa: E402

log = logging.getLogger("evasion_peers")

PGD_STEPS = 40
PGD_REL_STEP = 2.5 / PGD_STEPS  # hoplon's default (Madry et al.); every peer is set to the same
APGD_STEPS = 100
# The peers' CW-L2 budget: the paper's search rule at hoplon's step size and learning rate (9 values of c from
# c0 = 0.01, 200 Adam steps each at 0.025), hoplon's default before it chose its first c per sample. torchattacks
# has no search: it gets c = 1 for 9 × 200 steps, and hoplon is also run at exactly that budget.
PEER_CW = {"binary_search_steps": 9, "steps": 200, "learning_rate": 0.025, "initial_const": 0.01}
N_TARGET_CLASSES = 9
TOL = 1e-6


# ----------------------------------------------------------------------------------------------- models


@dataclass
class Tally:
    """Model rows evaluated, shared by the wrappers of one problem's model copies."""

    rows: int = 0


class Counting(nn.Module):
    """Wraps the model and counts the rows it evaluates (forward passes × batch rows) into ``tally``."""

    def __init__(self, model: nn.Module, tally: Tally | None = None) -> None:
        super().__init__()
        self.model = model
        self.tally = tally if tally is not None else Tally()  # a plain object: .to() never reaches it

    @property
    def rows(self) -> int:
        return self.tally.rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tally.rows += int(x.shape[0])
        return self.model(x)


class UnitBox(nn.Module):
    """The torchattacks workarounds: its attacks clamp to [0, 1] and its L2/APGD code assumes image batches
    ``(n, c, h, w)``. This model takes u ∈ [0, 1] of shape ``(n, 1, 1, d)`` and evaluates the real model at
    ``lo + (hi − lo)·u`` reshaped to the sample shape."""

    def __init__(self, model: nn.Module, lo: float, hi: float, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.lo, self.width, self.shape = model, lo, hi - lo, shape

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model((self.lo + self.width * u).reshape(len(u), *self.shape))


@dataclass
class Problem:
    name: str
    x: torch.Tensor
    y: torch.Tensor
    lo: float
    hi: float
    n_classes: int
    script: torch.jit.ScriptModule
    eps: dict[str, list[float]]
    clean_accuracy: float = 0.0
    counted: Counting = field(init=False)
    hoplon_script: torch.jit.ScriptModule = field(init=False)  # hoplon's copy (its TorchTarget converts it)

    def __post_init__(self) -> None:
        self.counted = Counting(self.script).eval()
        self.hoplon_script = copy.deepcopy(self.script).eval()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, n: int) -> Problem:
        """A seeded subset of the samples (same model), for the expensive attacks."""
        if n >= len(self.x):
            return self
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(1))[:n].sort().values
        sub = Problem(
            self.name,
            self.x[order].contiguous(),
            self.y[order].contiguous(),
            self.lo,
            self.hi,
            self.n_classes,
            self.script,
            self.eps,
        )
        sub.clean_accuracy = accuracy(self.script, sub.x, sub.y)
        return sub


def _load_problem(name: str, n_samples: int | None, cache: Path) -> Problem:
    """Train (seeded, once, cached) with hoplon's ``train_classifier``, save as TorchScript, load it back."""
    train, test = demo(name, split="train"), demo(name, split="test")
    n_classes = int(train.y.max()) + 1
    path = cache / f"{name}-seed0.pt"
    if not path.exists():
        factory = digits_cnn if name == "digits" else tabular_mlp
        torch.manual_seed(0)
        module = factory(tuple(train.x.shape[1:]), n_classes)
        train_classifier(module, train.x, train.y, seed=0)
        cache.mkdir(parents=True, exist_ok=True)
        torch.jit.save(torch.jit.script(module.eval()), str(path))
        log.info("trained %s and saved it as TorchScript: %s", name, path)
    script = torch.jit.load(str(path), map_location="cpu").eval()
    for parameter in script.parameters():  # every library gets the same frozen module (input gradients only)
        parameter.requires_grad_(False)
    x, y = test.x, test.y
    if n_samples is not None and n_samples < len(x):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n_samples].sort().values
        x, y = x[order], y[order]
    lo, hi = float(test.bounds.lower), float(test.bounds.upper)
    eps = (
        {"linf": [0.05, 0.1, 0.2, 0.3], "l2": [0.5, 1.0, 2.0]}
        if name == "digits"
        else {"linf": [0.1, 0.3, 0.5], "l2": [0.5, 1.0, 2.0]}
    )
    problem = Problem(name, x.contiguous(), y.contiguous(), lo, hi, n_classes, script, eps)
    problem.clean_accuracy = accuracy(script, x, y)
    return problem


# -------------------------------------------------------------------------------------------- evaluator


def rescore(p: Problem, x_adv: Any, norm: str, eps: float | None) -> dict[str, Any]:
    """The one evaluator: validity (box, ε-ball, finite), robust accuracy, success rate, median norms.

    Nothing is clipped. ``eps=None`` checks the box only (a minimum-norm attack's raw output).
    """
    xa = torch.as_tensor(np.asarray(x_adv) if not isinstance(x_adv, torch.Tensor) else x_adv)
    xa = xa.detach().to(torch.float32).reshape(p.x.shape)
    with torch.no_grad():
        clean = p.script(p.x).argmax(1)
        finite = torch.isfinite(xa).reshape(len(xa), -1).all(1)
        adv = p.script(torch.nan_to_num(xa)).argmax(1)
    delta = (xa - p.x).reshape(len(xa), -1)
    linf, l2 = delta.abs().amax(1), delta.norm(dim=1)
    in_box = ((xa >= p.lo - TOL) & (xa <= p.hi + TOL)).reshape(len(xa), -1).all(1)
    size = linf if norm == "linf" else l2
    in_ball = torch.ones_like(in_box) if eps is None else size <= eps + TOL
    valid = finite & in_box & in_ball
    correct = clean == p.y
    fooled = correct & valid & (adv != p.y)
    n_correct = int(correct.sum())
    return {
        "robust_accuracy": float((correct & ~fooled).float().mean()),
        "success_rate": float(fooled.sum()) / n_correct if n_correct else None,
        "n_invalid": int((~valid).sum()),
        "n_outside_box": int((~in_box).sum()),
        "n_outside_ball": int((~in_ball).sum()),
        "median_linf": float(linf[fooled].median()) if bool(fooled.any()) else None,
        "median_l2": float(l2[fooled].median()) if bool(fooled.any()) else None,
        "fooled": fooled,
        "l2": l2,
        "valid_box": finite & in_box,
        "adv_wrong": adv != p.y,
        "correct": correct,
    }


@dataclass
class Run:
    """One (library, attack, norm) entry: per-ε scores, CPU seconds and counted rows."""

    dataset: str
    norm: str
    library: str
    attack: str
    mode: str  # "per-ε" (independent run per ε), "sweep" (hoplon's evaluate over the ε list), "min-norm"
    config: str
    per_eps: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu_s: float = 0.0
    rows: int = 0
    n: int = 0
    hoplon_queries: int | None = None
    error: str | None = None
    note: str = ""

    def public(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "norm": self.norm,
            "library": self.library,
            "attack": self.attack,
            "mode": self.mode,
            "config": self.config,
            "cpu_s": round(self.cpu_s, 4),
            "rows": self.rows,
            "n": self.n,
            "rows_per_sample": round(self.rows / self.n, 2) if self.n else None,
            "hoplon_queries": self.hoplon_queries,
            "error": self.error,
            "note": self.note,
            "per_eps": {
                e: {k: v for k, v in s.items() if not isinstance(v, torch.Tensor)} for e, s in self.per_eps.items()
            },
        }


REPEAT_UNDER_S = 0.5  # a call faster than this is run REPEATS times (same seeds) and timed by the fastest
REPEATS = 5


def _timed(p: Problem, fn: Callable[[], Any], seed: int = 0) -> tuple[Any, float, int]:
    """Output, CPU seconds and counted model rows of one attack call. A call under ``REPEAT_UNDER_S`` is run
    ``REPEATS`` times with the same seeds, every library's alike, and its CPU time is the fastest of them (as
    ``timeit`` reports): other jobs on this shared machine only ever add time, so the minimum is the least
    disturbed reading, where a median of a few millisecond calls still moves by tens of percent."""
    times: list[float] = []
    out, rows = None, 0
    while True:
        torch.manual_seed(seed)
        np.random.seed(seed)
        rows0 = p.counted.rows
        start = time.process_time()
        result = fn()
        times.append(time.process_time() - start)
        if out is None:
            out, rows = result, p.counted.rows - rows0
        if len(times) >= REPEATS or times[0] >= REPEAT_UNDER_S:
            return out, min(times), rows


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:110]


def per_eps_run(p: Problem, run: Run, attack_at: Callable[[float], Any], seed: int = 0) -> Run:
    """Run ``attack_at(eps)`` independently at every ε of the norm (the peers' protocol) and re-score."""
    run.n = len(p.x)
    for e in p.eps[run.norm]:
        try:
            x_adv, cpu, rows = _timed(p, lambda e=e: attack_at(e), seed)
        except Exception as exc:  # a peer failing is a result: record it and go on
            run.error = _short(exc)
            log.warning("%s %s %s eps=%g failed: %s", run.library, run.attack, run.norm, e, run.error)
            return run
        run.cpu_s += cpu
        run.rows += rows
        try:
            score = rescore(p, x_adv, run.norm, e)
        except RuntimeError as exc:  # e.g. an output of the wrong shape
            run.error = "bad output: " + _short(exc)
            return run
        score.update(cpu_s=cpu, rows=rows)
        run.per_eps[f"{e:g}"] = score
    return run


def min_norm_run(p: Problem, run: Run, attack: Callable[[], Any]) -> Run:
    """Run a minimum-norm attack once; re-score its raw output at every L2 ε (‖δ‖₂ ≤ ε checked, not forced)."""
    run.n = len(p.x)
    try:
        x_adv, cpu, rows = _timed(p, attack)
    except Exception as exc:
        run.error = _short(exc)
        log.warning("%s %s failed: %s", run.library, run.attack, run.error)
        return run
    run.cpu_s, run.rows = cpu, rows
    raw = rescore(p, x_adv, "l2", None)
    run.per_eps["raw"] = raw
    for e in p.eps["l2"]:
        run.per_eps[f"{e:g}"] = rescore(p, x_adv, "l2", e)
    return run


# ----------------------------------------------------------------------------------------------- hoplon


class _CountedTarget(TorchTarget):
    """hoplon's target over its TorchScript copy, counting the rows of every forward into the problem's tally
    (what ``Counting`` does for the peers, at the same place: the call into the model)."""

    tally: Tally

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tally.rows += int(x.shape[0])
        return super()._forward(x)


def _target(p: Problem) -> TorchTarget:
    bounds = Bounds.scalar(p.lo, p.hi)
    target = _CountedTarget(p.hoplon_script, input_shape=p.shape, n_classes=p.n_classes, bounds=bounds, name=p.name)
    target.tally = p.counted.tally
    return target


def hoplon_sweep(p: Problem, run: Run, attacks: Callable[[], Any], eps: list[float] | None = None) -> Run:
    """hoplon's own protocol: one ``evaluate`` over the ε list (running best, fooled samples not re-attacked)."""
    run.n = len(p.x)
    eps = eps or p.eps[run.norm]
    try:
        target = _target(p)
        chain = attacks()
        ev, cpu, rows = _timed(
            p, lambda: evaluate(chain, target, p.x, p.y, eps=eps, bounds=Bounds.scalar(p.lo, p.hi), seed=0)
        )
    except Exception as exc:
        run.error = _short(exc)
        log.warning("hoplon %s %s failed: %s", run.attack, run.norm, run.error)
        return run
    run.cpu_s, run.rows, run.hoplon_queries = cpu, rows, sum(o.queries for o in ev.outcomes)
    for outcome in ev.outcomes:
        score = rescore(p, outcome.x_adv, run.norm, outcome.eps)
        score.update(cpu_s=outcome.cpu_s, rows=outcome.queries)
        run.per_eps[f"{outcome.eps:g}"] = score
    return run


def hoplon_per_eps(p: Problem, run: Run, attacks: Callable[[], Any], seed: int = 0) -> Run:
    """hoplon under the peers' protocol: a separate ``evaluate`` at each ε."""
    target = _target(p)
    bounds = Bounds.scalar(p.lo, p.hi)

    def at(e: float) -> torch.Tensor:
        return evaluate(attacks(), target, p.x, p.y, eps=[e], bounds=bounds, seed=seed).outcomes[0].x_adv

    return per_eps_run(p, run, at)


def hoplon_cw_raw(p: Problem, run: Run, **config: Any) -> Run:
    """hoplon's CW-L2 output before ``evaluate`` projects it: the raw minimum-norm examples."""
    target = _target(p)
    bounds = Bounds.scalar(p.lo, p.hi)
    attack = make("cw-l2", **config)

    def go() -> torch.Tensor:
        return attack.run(target, p.x, p.y, eps=1.0, bounds=bounds, rng=torch.Generator().manual_seed(0)).x_adv

    return min_norm_run(p, run, go)


# ----------------------------------------------------------------------------------------------- peers


def bare_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    lo: float,
    hi: float,
    steps: int = PGD_STEPS,
) -> torch.Tensor:
    """The 15-line reference: random start, `steps` ascent steps of 2.5ε/steps, projection, no early stop."""
    alpha, view = PGD_REL_STEP * eps, (-1, *[1] * (x.ndim - 1))
    if norm == "linf":
        delta = (torch.rand_like(x) * 2 - 1) * eps
    else:
        d = torch.randn_like(x)
        delta = d / d.flatten(1).norm(dim=1).view(view) * eps * torch.rand(len(x)).pow(1 / x[0].numel()).view(view)
    x_adv = (x + delta).clamp(lo, hi)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        with torch.no_grad():
            step = grad.sign() if norm == "linf" else grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
            delta = x_adv + alpha * step - x
            delta = (
                delta.clamp(-eps, eps)
                if norm == "linf"
                else delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1).view(view)
            )
            x_adv = (x + delta).clamp(lo, hi)
    return x_adv.detach()


def _art_classifier(p: Problem) -> PyTorchClassifier:
    return PyTorchClassifier(
        model=p.counted,
        loss=nn.CrossEntropyLoss(),
        input_shape=p.shape,
        nb_classes=p.n_classes,
        clip_values=(p.lo, p.hi),
        device_type="cpu",
    )


def _likeliest_wrong(p: Problem, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        scores = p.counted(x).clone()
    scores.scatter_(1, y[:, None], -torch.inf)
    return scores.argsort(dim=1, descending=True, stable=True)


def art_chain(p: Problem, norm: str, e: float) -> np.ndarray:
    """AutoAttack's gradient pair from ART's parts: APGD-CE, then APGD-DLR targeted at the 9 likeliest wrong
    classes, each on the samples still robust (ART's ``AutoAttack`` class targets every class in index
    order and runs each attack in both modes, so its protocol is built here from its own APGD)."""
    clf = _art_classifier(p)
    art_norm = np.inf if norm == "linf" else 2
    x, y = p.x.numpy(), p.y.numpy()
    ce = AutoProjectedGradientDescent(
        clf,
        norm=art_norm,
        eps=e,
        eps_step=2 * e,
        max_iter=APGD_STEPS,
        nb_random_init=1,
        batch_size=512,
        loss_type="cross_entropy",
        verbose=False,
    )
    x_adv = ce.generate(x, y)
    wrong = clf.predict(x_adv, batch_size=512).argmax(1) != y
    order = _likeliest_wrong(p, p.x, p.y).numpy()
    dlr = AutoProjectedGradientDescent(
        clf,
        norm=art_norm,
        eps=e,
        eps_step=2 * e,
        max_iter=APGD_STEPS,
        targeted=True,
        nb_random_init=1,
        batch_size=512,
        loss_type="difference_logits_ratio",
        verbose=False,
    )
    for rank in range(min(N_TARGET_CLASSES, p.n_classes - 1)):
        todo = np.flatnonzero(~wrong)
        if todo.size == 0:
            break
        candidate = dlr.generate(x[todo], order[todo, rank])
        hit = clf.predict(candidate, batch_size=512).argmax(1) != y[todo]
        x_adv[todo[hit]] = candidate[hit]
        wrong[todo[hit]] = True
    return x_adv


class TorchattacksBox:
    """Runs a torchattacks attack on a box other than [0, 1] through :class:`UnitBox` (the workaround)."""

    def __init__(self, p: Problem) -> None:
        self.p = p
        self.is_unit = p.lo == 0.0 and p.hi == 1.0
        self.is_image = p.x.ndim == 4
        self.model = p.counted if self.is_unit and self.is_image else UnitBox(p.counted, p.lo, p.hi, p.shape).eval()
        self.scale = p.hi - p.lo

    def __call__(self, make_attack: Callable[[nn.Module, float], Any], e: float) -> torch.Tensor:
        p = self.p
        if self.is_unit and self.is_image:
            return make_attack(self.model, e)(p.x, p.y)
        u = ((p.x - p.lo) / self.scale).reshape(len(p.x), 1, 1, -1)
        u_adv = make_attack(self.model, e / self.scale)(u, p.y)
        return p.x + self.scale * (u_adv - u).reshape(p.x.shape)


# --------------------------------------------------------------------------------------------- the plan


def _two_runs(p: Problem, norm: str, label: str, name: str, config: str) -> list[Run]:
    """``name`` with a second run, from a random start, on the samples the first left robust (``restarts=2``),
    in both protocols."""
    return [
        protocol(
            p, Run(p.name, norm, "hoplon", f"{label}, 2 runs", mode, config), lambda: make(name, norm=norm, restarts=2)
        )
        for protocol, mode in ((hoplon_sweep, "sweep"), (hoplon_per_eps, "per-ε"))
    ]


def hoplon_runs(p: Problem, norm: str, fast: bool) -> list[Run]:
    runs: list[Run] = []
    add = runs.append
    d = p.name
    add(hoplon_sweep(p, Run(d, norm, "hoplon", "FGSM", "sweep", "fgsm"), lambda: make("fgsm", norm=norm)))
    add(hoplon_per_eps(p, Run(d, norm, "hoplon", "FGSM", "per-ε", "fgsm"), lambda: make("fgsm", norm=norm)))
    add(
        hoplon_sweep(
            p,
            Run(d, norm, "hoplon", "PGD-40", "sweep", "pgd steps=40 rel_step=2.5/40, first run from x"),
            lambda: make("pgd", norm=norm),
        )
    )
    add(
        hoplon_per_eps(
            p,
            Run(d, norm, "hoplon", "PGD-40", "per-ε", "pgd steps=40 rel_step=2.5/40, first run from x"),
            lambda: make("pgd", norm=norm),
        )
    )
    runs += _two_runs(p, norm, "PGD-40", "pgd", "pgd steps=40 restarts=2: from x, then a random start")
    if not fast:  # the random start's lottery (hoplon's former default; not counted against the targets)
        for seed in (0, 1, 2):
            add(
                hoplon_per_eps(
                    p,
                    Run(d, norm, "hoplon", "PGD-40", f"per-ε random start, seed {seed}", "pgd init=random"),
                    lambda: make("pgd", norm=norm, init="random"),
                    seed=seed,
                )
            )
    add(
        hoplon_sweep(
            p,
            Run(d, norm, "hoplon", "APGD-CE", "sweep", "apgd-ce steps=100 restarts=1"),
            lambda: make("apgd-ce", norm=norm),
        )
    )
    if not fast:
        add(
            hoplon_per_eps(
                p,
                Run(d, norm, "hoplon", "APGD-CE", "per-ε", "apgd-ce steps=100 restarts=1"),
                lambda: make("apgd-ce", norm=norm),
            )
        )
    runs += _two_runs(p, norm, "APGD-CE", "apgd-ce", "apgd-ce steps=100 restarts=2: from x, then a random start")
    return runs


def hoplon_heavy_runs(p: Problem, norm: str) -> list[Run]:
    """The worst-case ensemble and CW-L2 (run on a subset of the digits)."""
    runs: list[Run] = []
    add = runs.append
    d = p.name
    add(
        hoplon_sweep(
            p,
            Run(
                d,
                norm,
                "hoplon",
                "worst-case (auto)",
                "sweep",
                "audit.robustness.auto_attacks: apgd-ce → apgd-t (9 targets)",
            ),
            lambda: auto_attacks(norm, p.n_classes),
        )
    )  # type: ignore[arg-type]
    add(
        hoplon_per_eps(
            p,
            Run(d, norm, "hoplon", "worst-case (auto)", "per-ε", "audit.robustness.auto_attacks, one evaluate per ε"),
            lambda: auto_attacks(norm, p.n_classes),
        )
    )  # type: ignore[arg-type]
    if p.n_classes < 4:  # the same chain built from the classes, in case the registry lacks a preset
        add(
            hoplon_sweep(
                p,
                Run(
                    d,
                    norm,
                    "hoplon",
                    "worst-case (APGD classes)",
                    "sweep",
                    "APGD(loss=ce) → APGD(loss=margin, init=random)",
                ),
                lambda: [APGD(norm=norm, loss="ce"), APGD(norm=norm, loss="margin", init="random")],
            )
        )
    return runs


def hoplon_cw_runs(p: Problem) -> list[Run]:
    """CW-L2 (on its own subset of the digits: ART's CW is the slowest thing in the run)."""
    runs: list[Run] = []
    add = runs.append
    d, norm = p.name, "l2"
    if "cw-l2" in ATTACKS:
        add(hoplon_cw_raw(p, Run(d, norm, "hoplon", "CW-L2", "min-norm", _cw_config())))
        budget = PEER_CW["binary_search_steps"] * PEER_CW["steps"]
        add(
            hoplon_cw_raw(
                p,
                Run(
                    d,
                    norm,
                    "hoplon",
                    "CW-L2",
                    "min-norm, torchattacks' budget",
                    f"c=1 steps={budget} lr={PEER_CW['learning_rate']}, no binary search (torchattacks' CW)",
                ),
                binary_search_steps=1,
                steps=budget,
                learning_rate=PEER_CW["learning_rate"],
                initial_const=1.0,
            )
        )
        add(
            hoplon_sweep(
                p,
                Run(d, norm, "hoplon", "CW-L2", "sweep", "evaluate(cw-l2): projected onto each ε"),
                lambda: make("cw-l2"),
            )
        )
        # The former default: 5 values of c per sample instead of 3 (mean L2 0.2-0.4 % smaller, same medians).
        slow = "binary_search_steps=5 (the default until 2026-11-29), otherwise the defaults"
        add(hoplon_cw_raw(p, Run(d, norm, "hoplon", "CW-L2, 5 search steps", "min-norm", slow), binary_search_steps=5))
        add(
            hoplon_sweep(
                p,
                Run(d, norm, "hoplon", "CW-L2, 5 search steps", "sweep", slow),
                lambda: make("cw-l2", binary_search_steps=5),
            )
        )
    return runs


def _cw_config() -> str:
    cw = make("cw-l2")
    return (
        f"binary_search_steps={cw.binary_search_steps} steps={cw.steps} lr={cw.learning_rate} "  # type: ignore[attr-defined]
        f"c0={cw.initial_const} (per sample) κ=0 abort_early"
    )  # type: ignore[attr-defined]


def _peer_setup(p: Problem, norm: str) -> tuple[Any, ...]:
    box = TorchattacksBox(p)
    ta_note = (
        ""
        if box.is_unit and box.is_image
        else ("workaround: model wrapped as f(lo + (hi−lo)·u), u ∈ [0,1] shaped (n,1,1,d), ε/(hi−lo)")
    )
    fmodel = fb.PyTorchModel(p.counted, bounds=(p.lo, p.hi), device="cpu")

    def fool(attack: Any, e: float | None) -> torch.Tensor:
        _, clipped, _ = attack(fmodel, p.x, p.y, epsilons=e)
        return clipped

    return (
        p.x.numpy(),
        p.y.numpy(),
        np.inf if norm == "linf" else 2,
        box,
        ta_note,
        "Linf" if norm == "linf" else "L2",
        fool,
    )


def peer_runs(p: Problem, norm: str) -> list[Run]:
    runs: list[Run] = []
    add = runs.append
    d = p.name
    x_np, y_np, art_norm, box, ta_note, ta_norm, fool = _peer_setup(p, norm)

    # --- bare loop
    add(
        per_eps_run(
            p,
            Run(d, norm, "bare torch loop", "PGD-40", "per-ε", "15 lines, no early stop"),
            lambda e: bare_pgd(p.counted, p.x, p.y, e, norm, p.lo, p.hi),
        )
    )
    if len(p.x) > 100:  # the random start's lottery, as for hoplon
        for seed in (1, 2):
            add(
                per_eps_run(
                    p,
                    Run(d, norm, "bare torch loop", "PGD-40", f"per-ε seed {seed}", "torch.manual_seed"),
                    lambda e: bare_pgd(p.counted, p.x, p.y, e, norm, p.lo, p.hi),
                    seed=seed,
                )
            )
    # --- FGSM / FGM
    add(
        per_eps_run(
            p,
            Run(d, norm, "ART 1.20", "FGSM", "per-ε", f"FastGradientMethod norm={norm}"),
            lambda e: FastGradientMethod(_art_classifier(p), norm=art_norm, eps=e, eps_step=e, batch_size=512).generate(
                x_np, y_np
            ),
        )
    )
    fb_fgsm = fb.attacks.FGSM() if norm == "linf" else fb.attacks.FGM()
    add(
        per_eps_run(p, Run(d, norm, "Foolbox 3.3", "FGSM", "per-ε", type(fb_fgsm).__name__), lambda e: fool(fb_fgsm, e))
    )
    if norm == "linf":
        ta_fgsm: Callable[[nn.Module, float], Any] = lambda m, e: torchattacks.FGSM(m, eps=e)  # noqa: E731
        fgsm_cfg = "FGSM"
    else:
        ta_fgsm = lambda m, e: torchattacks.PGDL2(m, eps=e, alpha=e, steps=1, random_start=False)  # noqa: E731
        fgsm_cfg = "no L2 FGM: PGDL2(steps=1, alpha=eps, random_start=False)"
    add(
        per_eps_run(
            p, Run(d, norm, "torchattacks 3.5", "FGSM", "per-ε", fgsm_cfg, note=ta_note), lambda e: box(ta_fgsm, e)
        )
    )
    # --- PGD-40
    add(
        per_eps_run(
            p,
            Run(d, norm, "ART 1.20", "PGD-40", "per-ε", "ProjectedGradientDescent num_random_init=1"),
            lambda e: ProjectedGradientDescent(
                _art_classifier(p),
                norm=art_norm,
                eps=e,
                eps_step=PGD_REL_STEP * e,
                max_iter=PGD_STEPS,
                num_random_init=1,
                batch_size=512,
                verbose=False,
            ).generate(x_np, y_np),
        )
    )
    fb_pgd = (fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD)(
        rel_stepsize=PGD_REL_STEP, steps=PGD_STEPS, random_start=True
    )
    add(
        per_eps_run(p, Run(d, norm, "Foolbox 3.3", "PGD-40", "per-ε", type(fb_pgd).__name__), lambda e: fool(fb_pgd, e))
    )
    if norm == "linf":
        ta_pgd: Callable[[nn.Module, float], Any] = lambda m, e: torchattacks.PGD(  # noqa: E731
            m, eps=e, alpha=PGD_REL_STEP * e, steps=PGD_STEPS, random_start=True
        )
    else:
        ta_pgd = lambda m, e: torchattacks.PGDL2(  # noqa: E731
            m, eps=e, alpha=PGD_REL_STEP * e, steps=PGD_STEPS, random_start=True
        )
    add(
        per_eps_run(
            p,
            Run(d, norm, "torchattacks 3.5", "PGD-40", "per-ε", "PGD" if norm == "linf" else "PGDL2", note=ta_note),
            lambda e: box(ta_pgd, e),
        )
    )
    if not box.is_unit:  # what a user gets without the workaround: torchattacks clamps to [0, 1]
        add(
            per_eps_run(
                p,
                Run(
                    d,
                    norm,
                    "torchattacks 3.5",
                    "PGD-40 (as is)",
                    "per-ε",
                    "no workaround: the model gets the [-3,3] data directly",
                ),
                lambda e: ta_pgd(p.counted, e)(p.x, p.y),
            )
        )
    # --- APGD-CE
    add(
        per_eps_run(
            p,
            Run(
                d,
                norm,
                "ART 1.20",
                "APGD-CE",
                "per-ε",
                "AutoProjectedGradientDescent ce, eps_step=2ε, nb_random_init=1",
            ),
            lambda e: AutoProjectedGradientDescent(
                _art_classifier(p),
                norm=art_norm,
                eps=e,
                eps_step=2 * e,
                max_iter=APGD_STEPS,
                nb_random_init=1,
                batch_size=512,
                loss_type="cross_entropy",
                verbose=False,
            ).generate(x_np, y_np),
        )
    )
    add(
        per_eps_run(
            p,
            Run(d, norm, "torchattacks 3.5", "APGD-CE", "per-ε", "APGD ce n_restarts=1", note=ta_note),
            lambda e: box(
                lambda m, e2: torchattacks.APGD(
                    m, norm=ta_norm, eps=e2, steps=APGD_STEPS, n_restarts=1, loss="ce", seed=0
                ),
                e,
            ),
        )
    )
    return runs


def peer_heavy_runs(p: Problem, norm: str) -> list[Run]:
    runs: list[Run] = []
    add = runs.append
    d = p.name
    _, _, _, box, ta_note, ta_norm, _ = _peer_setup(p, norm)
    # --- worst-case ensemble (AutoAttack's gradient pair)
    add(
        per_eps_run(
            p,
            Run(
                d,
                norm,
                "ART 1.20",
                "worst-case (APGD-CE → APGD-T)",
                "per-ε",
                "ART APGD parts chained as AutoAttack: ce, then targeted DLR × 9 likeliest classes",
            ),
            lambda e: art_chain(p, norm, e),
        )
    )
    add(
        per_eps_run(
            p,
            Run(
                d,
                norm,
                "torchattacks 3.5",
                "worst-case (APGD-CE → APGD-T)",
                "per-ε",
                "MultiAttack([APGD ce, APGDT n_classes]) = AutoAttack minus FAB-T and Square",
                note=ta_note,
            ),
            lambda e: box(
                lambda m, e2: torchattacks.MultiAttack(
                    [
                        torchattacks.APGD(m, norm=ta_norm, eps=e2, steps=APGD_STEPS, n_restarts=1, loss="ce", seed=0),
                        torchattacks.APGDT(
                            m, norm=ta_norm, eps=e2, steps=APGD_STEPS, n_restarts=1, n_classes=p.n_classes, seed=0
                        ),
                    ]
                ),
                e,
            ),
        )
    )
    return runs


def peer_cw_runs(p: Problem) -> list[Run]:
    """CW-L2 (minimum norm) at ``PEER_CW``: the paper's search rule with hoplon's steps and learning rate."""
    runs: list[Run] = []
    add = runs.append
    d, norm = p.name, "l2"
    x_np, y_np, _, box, ta_note, _, fool = _peer_setup(p, norm)
    if "cw-l2" in ATTACKS:
        bs, st, lr, c0 = (
            PEER_CW["binary_search_steps"],
            PEER_CW["steps"],
            PEER_CW["learning_rate"],
            PEER_CW["initial_const"],
        )
        add(
            min_norm_run(
                p,
                Run(
                    d,
                    norm,
                    "ART 1.20",
                    "CW-L2",
                    "min-norm",
                    f"CarliniL2Method binary_search_steps={bs} max_iter={st} lr={lr} c0={c0}",
                ),
                lambda: CarliniL2Method(
                    _art_classifier(p),
                    binary_search_steps=bs,
                    max_iter=st,
                    learning_rate=lr,
                    initial_const=c0,
                    batch_size=512,
                    verbose=False,
                ).generate(x_np, y_np),
            )
        )
        fb_cw = fb.attacks.L2CarliniWagnerAttack(
            binary_search_steps=bs, steps=st, stepsize=lr, initial_const=c0, abort_early=True
        )
        add(
            min_norm_run(
                p,
                Run(
                    d,
                    norm,
                    "Foolbox 3.3",
                    "CW-L2",
                    "min-norm",
                    f"L2CarliniWagnerAttack binary_search_steps={bs} steps={st} stepsize={lr} c0={c0}",
                ),
                lambda: fool(fb_cw, None),
            )
        )
        add(
            min_norm_run(
                p,
                Run(
                    d,
                    norm,
                    "torchattacks 3.5",
                    "CW-L2",
                    "min-norm",
                    f"CW c=1 steps={bs * st} lr={lr} (no binary search in torchattacks)",
                    note=ta_note,
                ),
                lambda: box(lambda m, _e: torchattacks.CW(m, c=1.0, kappa=0, steps=bs * st, lr=lr), 1.0),
            )
        )
    return runs


# ----------------------------------------------------------------------------------------------- output


FAMILIES = {
    "FGSM": "FGSM",
    "PGD-40": "PGD-40",
    "PGD-40, 2 runs": "PGD-40",
    "APGD-CE": "APGD-CE",
    "APGD-CE, 2 runs": "APGD-CE",
    "CW-L2": "CW-L2",
    "CW-L2, 3 search steps": "CW-L2",
    "worst-case (auto)": "worst-case",
    "worst-case (APGD classes)": "worst-case",
    "worst-case (APGD-CE → APGD-T)": "worst-case",
}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _cpu(v: float) -> str:
    return "–" if v != v else f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _num(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}g}"


def table(runs: list[Run], p: Problem, norm: str) -> str:
    eps = [f"{e:g}" for e in p.eps[norm]]
    head = (
        ["library", "attack", "mode", "n"]
        + [f"RA@{e}" for e in eps]
        + [f"ASR@{eps[-1]}", f"med ‖δ‖{'∞' if norm == 'linf' else '₂'}@{eps[-1]}", "rows/sample", "CPU s", "invalid"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        if r.error:
            cells = [r.library, r.attack, r.mode, str(r.n), f"error: {r.error}"] + [""] * (len(head) - 5)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        last = r.per_eps.get(eps[-1], {})
        if r.mode.startswith("min-norm"):
            raw = r.per_eps["raw"]
            median = raw["median_l2"]
            asr = f"{_pct(raw['success_rate'])} (unbounded)"
        else:
            median = last.get("median_linf" if norm == "linf" else "median_l2")
            asr = _pct(last.get("success_rate"))
        invalid = max((s["n_invalid"] for k, s in r.per_eps.items() if k != "raw"), default=0)
        if r.mode.startswith("min-norm"):
            invalid = r.per_eps["raw"]["n_invalid"]
        cells = (
            [r.library, r.attack, r.mode, str(r.n)]
            + [_pct(r.per_eps.get(e, {}).get("robust_accuracy")) for e in eps]
            + [asr, _num(median), f"{r.rows / r.n:.0f}" if r.n else "–", _cpu(r.cpu_s), str(invalid)]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_checks(runs: list[Run], p: Problem, norm: str) -> list[dict[str, Any]]:
    """The issue's targets, per attack family: hoplon's RA ≤ the strongest peer's at every ε, CPU ≤ the fastest
    peer's, hoplon PGD within 1.2× the bare loop."""
    out = []
    eps = [f"{e:g}" for e in p.eps[norm]]
    ok = [r for r in runs if not r.error]
    peers = [r for r in ok if r.library not in ("hoplon", "bare torch loop") and "(as is)" not in r.attack]
    for family in ("FGSM", "PGD-40", "APGD-CE", "worst-case", "CW-L2"):
        mine = [r for r in ok if r.library == "hoplon" and FAMILIES.get(r.attack) == family and "seed" not in r.mode]
        theirs = [r for r in peers if FAMILIES.get(r.attack) == family]
        if not mine or not theirs:
            continue
        for m in mine:
            # A row run at one peer's exact budget is compared with that peer only.
            budget = "budget" in m.mode
            pool = [t for t in theirs if t.library.startswith("torchattacks")] if budget else theirs
            if not pool:
                continue
            gaps = {}
            for e in eps:
                peer_best = min(t.per_eps[e]["robust_accuracy"] for t in pool if e in t.per_eps)
                gaps[e] = m.per_eps[e]["robust_accuracy"] - peer_best if e in m.per_eps else None
            fastest = min(pool, key=lambda t: t.cpu_s)
            out.append(
                {
                    "dataset": p.name,
                    "norm": norm,
                    "family": f"{family} (vs torchattacks, same budget)" if budget else family,
                    "hoplon": f"{m.attack} [{m.mode}]",
                    "ra_gap_pp": {e: (None if g is None else round(100 * g, 2)) for e, g in gaps.items()},
                    "ra_met": all(g is not None and g <= 1e-9 for g in gaps.values()),
                    "cpu_s": round(m.cpu_s, 3),
                    "fastest_peer": f"{fastest.library} {_cpu(fastest.cpu_s)}",
                    "cpu_ratio": round(m.cpu_s / fastest.cpu_s, 3) if fastest.cpu_s else None,
                    "cpu_met": m.cpu_s <= fastest.cpu_s,
                }
            )
        out += _family_verdicts(family, [m for m in mine if "budget" not in m.mode], theirs, p, norm, eps)
    # Overall, on the same samples: hoplon's strongest row against the strongest peer row, per ε.
    for n in sorted({r.n for r in ok}):
        mine = [r for r in ok if r.library == "hoplon" and r.n == n and r.mode in ("sweep", "per-ε")]
        theirs = [r for r in peers if r.n == n and not r.mode.startswith("min-norm")]
        if not mine or not theirs:
            continue
        best = {e: min(r.per_eps[e]["robust_accuracy"] for r in mine if e in r.per_eps) for e in eps}
        strongest = {e: min(r.per_eps[e]["robust_accuracy"] for r in theirs if e in r.per_eps) for e in eps}
        out.append(
            {
                "dataset": p.name,
                "norm": norm,
                "family": f"overall (n={n})",
                "hoplon": "strongest hoplon row",
                "ra_gap_pp": {e: round(100 * (best[e] - strongest[e]), 2) for e in eps},
                "ra_met": all(best[e] <= strongest[e] + 1e-9 for e in eps),
                "cpu_s": float("nan"),
                "fastest_peer": "–",
                "cpu_ratio": None,
                "cpu_met": None,
            }
        )
    return out


def _family_verdicts(
    family: str, mine: list[Run], theirs: list[Run], p: Problem, norm: str, eps: list[str]
) -> list[dict[str, Any]]:
    """Whether SOME hoplon configuration of the family meets both targets at once: CPU ≤ the fastest peer's and
    RA ≤ the strongest peer's at every ε. Judged over the single-run rows, then also over the 2-run rows (when the
    family has them). The row shown is the cheapest that meets both, else the strongest of those within the CPU
    target, else the cheapest."""
    fastest = min(theirs, key=lambda t: t.cpu_s)
    strongest = {e: min(t.per_eps[e]["robust_accuracy"] for t in theirs if e in t.per_eps) for e in eps}

    def gaps(m: Run) -> dict[str, float | None]:
        return {e: m.per_eps[e]["robust_accuracy"] - strongest[e] if e in m.per_eps else None for e in eps}

    def ra_ok(m: Run) -> bool:
        return all(g is not None and g <= 1e-9 for g in gaps(m).values())

    def worst_gap(m: Run) -> float:
        return max(float("inf") if g is None else g for g in gaps(m).values())

    single = [m for m in mine if "2 runs" not in m.attack]
    pools = [("single run", single)] + ([("up to 2 runs", mine)] if len(mine) > len(single) else [])
    out = []
    for label, pool in pools:
        if not pool:
            continue
        cheap = [m for m in pool if m.cpu_s <= fastest.cpu_s]
        both = [m for m in cheap if ra_ok(m)]
        pick = (
            min(both, key=lambda m: m.cpu_s)
            if both
            else min(cheap, key=worst_gap)
            if cheap
            else min(pool, key=lambda m: m.cpu_s)
        )
        out.append(
            {
                "dataset": p.name,
                "norm": norm,
                "family": f"{family}: some config meets both ({label})",
                "hoplon": f"{pick.attack} [{pick.mode}]",
                "ra_gap_pp": {e: (None if g is None else round(100 * g, 2)) for e, g in gaps(pick).items()},
                "ra_met": ra_ok(pick),
                "cpu_s": round(pick.cpu_s, 3),
                "fastest_peer": f"{fastest.library} {_cpu(fastest.cpu_s)}",
                "cpu_ratio": round(pick.cpu_s / fastest.cpu_s, 3) if fastest.cpu_s else None,
                "cpu_met": pick.cpu_s <= fastest.cpu_s,
                "verdict": bool(both),
            }
        )
    return out


BARE_REPEATS = 5


def bare_check(p: Problem, norm: str) -> dict[str, Any]:
    """hoplon's PGD at ONE ε against the bare loop at the same ε (the 1.2× target): ``BARE_REPEATS`` interleaved
    repeats (each the fastest of ``REPEATS`` calls when short), best of each — other jobs on the machine only ever
    add CPU time, so the minimum is the least disturbed reading."""
    e = p.eps[norm][len(p.eps[norm]) // 2 - 1] if norm == "linf" else p.eps[norm][0]
    bounds, target = Bounds.scalar(p.lo, p.hi), _target(p)
    hop, bare, hop_rows, bare_rows = [], [], 0, 0
    for _ in range(BARE_REPEATS):
        ev, cpu, hop_rows = _timed(
            p, lambda: evaluate(make("pgd", norm=norm), target, p.x, p.y, eps=[e], bounds=bounds, seed=0)
        )
        hop.append(cpu)
        xb, cpu, bare_rows = _timed(p, lambda: bare_pgd(p.counted, p.x, p.y, e, norm, p.lo, p.hi))
        bare.append(cpu)
    h_ra = rescore(p, ev.outcomes[0].x_adv, norm, e)["robust_accuracy"]
    b_ra = rescore(p, xb, norm, e)["robust_accuracy"]
    return {
        "dataset": p.name,
        "norm": norm,
        "eps": e,
        "hoplon_cpu_s": min(hop),
        "bare_cpu_s": min(bare),
        "ratio": round(min(hop) / min(bare), 3),
        "met": min(hop) <= 1.2 * min(bare),
        "hoplon_rows": hop_rows,
        "bare_rows": bare_rows,
        "hoplon_ra": h_ra,
        "bare_ra": b_ra,
    }


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "hoplon": hoplon.__version__ if hasattr(hoplon, "__version__") else "0.1.0",
        "adversarial-robustness-toolbox": art.__version__,
        "foolbox": fb.__version__,
        "torchattacks": torchattacks.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "cpu": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 digit samples, 60 tabular ones")
    parser.add_argument("--datasets", default="digits,breast-cancer")
    parser.add_argument("--norms", default="linf,l2")
    parser.add_argument(
        "--heavy-n",
        type=int,
        default=150,
        help="samples (seeded subset) for the worst-case ensembles (default 150)",
    )
    parser.add_argument(
        "--cw-n", type=int, default=75, help="samples (seeded subset of those) for CW-L2 on the digits (default 75)"
    )
    parser.add_argument("--no-peers", action="store_true", help="hoplon and the bare loop only")
    parser.add_argument(
        "--bare-only", action="store_true", help="only the PGD-vs-bare-loop check (the 1.2× target), nothing else"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("art").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    all_runs: list[Run] = []
    checks: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    markdown: list[str] = []
    meta: dict[str, Any] = {
        "versions": versions(),
        "quick": args.quick,
        "kept_freed_memory": KEPT_FREED_MEMORY,
        "problems": {},
    }
    t0 = time.process_time()
    wall0 = time.perf_counter()
    for name in args.datasets.split(","):
        p = _load_problem(name, 60 if args.quick else None, RESULTS / "models")
        heavy = p.subset(args.heavy_n)
        cw_problem = heavy.subset(args.cw_n) if p.x.ndim == 4 else heavy
        meta["problems"][name] = {
            "n": len(p.x),
            "n_heavy": len(heavy.x),
            "n_cw": len(cw_problem.x),
            "clean_accuracy": p.clean_accuracy,
            "box": [p.lo, p.hi],
            "n_classes": p.n_classes,
            "eps": p.eps,
        }
        subset = (
            f"; the worst-case ensembles run on a seeded subset of {len(heavy.x)} "
            f"(clean accuracy {100 * heavy.clean_accuracy:.1f} %)"
            if heavy is not p
            else ""
        )
        if cw_problem is not p:
            subset += (
                f", CW-L2 on a seeded subset of {len(cw_problem.x)} of those "
                f"(clean accuracy {100 * cw_problem.clean_accuracy:.1f} %)"
            )
        markdown.append(
            f"\n### {name}: {len(p.x)} test samples, box [{p.lo:g}, {p.hi:g}], "
            f"clean accuracy {100 * p.clean_accuracy:.1f} %{subset}\n"
        )
        for norm in args.norms.split(","):
            log.info("== %s %s", name, norm)
            if args.bare_only:
                bare.append(bare_check(p, norm))
                continue
            runs = hoplon_runs(p, norm, args.quick)
            if not args.no_peers:
                runs += peer_runs(p, norm)
            runs += hoplon_heavy_runs(heavy, norm)
            if not args.no_peers:
                runs += peer_heavy_runs(heavy, norm)
            if norm == "l2":
                runs += hoplon_cw_runs(cw_problem)
                if not args.no_peers:
                    runs += peer_cw_runs(cw_problem)
            bare.append(bare_check(p, norm))
            all_runs += runs
            checks += target_checks(runs, p, norm)
            markdown.append(f"\n#### {name}, {norm} (ε = {', '.join(f'{e:g}' for e in p.eps[norm])})\n")
            markdown.append(table(runs, p, norm))
            for r in runs:
                log.info(
                    "%-17s %-32s %-8s cpu %7.2fs rows/sample %6.0f %s",
                    r.library,
                    r.attack,
                    r.mode,
                    r.cpu_s,
                    r.rows / max(r.n, 1),
                    r.error
                    or " ".join(f"{k}:{_pct(v['robust_accuracy'])}" for k, v in r.per_eps.items() if k != "raw"),
                )
    meta["cpu_s_total"] = time.process_time() - t0
    meta["wall_s_total"] = time.perf_counter() - wall0
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"meta": meta, "runs": [r.public() for r in all_runs], "targets": checks, "pgd_vs_bare": bare}
    (args.out / "evasion_peers.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    lines = [
        "| dataset | norm | family | hoplon | RA gap vs strongest peer (pp, per ε) | RA met | CPU s | fastest peer | "
        "CPU ratio | CPU met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        gaps = ", ".join("–" if g is None else f"{g:+.1f}" for g in c["ra_gap_pp"].values())
        lines.append(
            f"| {c['dataset']} | {c['norm']} | {c['family']} | {c['hoplon']} | {gaps} | "
            f"{'yes' if c['ra_met'] else 'NO'} | {_cpu(c['cpu_s'])} | {c['fastest_peer']} | "
            f"{c['cpu_ratio'] if c['cpu_ratio'] is not None else '–'} | "
            f"{'–' if c['cpu_met'] is None else 'yes' if c['cpu_met'] else 'NO'} |"
        )
    verdicts = [c for c in checks if "verdict" in c]
    lines += ["", "Per family, does some hoplon configuration meet both targets at once (CPU and RA)?", ""]
    lines += [
        f"- {c['dataset']} {c['norm']} {c['family']}: **{'yes' if c['verdict'] else 'no'}** — {c['hoplon']}, "
        f"CPU {c['cpu_ratio'] if c['cpu_ratio'] is not None else '–'}× {c['fastest_peer']}, RA gap "
        + ", ".join("–" if g is None else f"{g:+.1f}" for g in c["ra_gap_pp"].values())
        + " pp"
        for c in verdicts
    ]
    lines += [
        "",
        "| dataset | norm | ε | hoplon PGD CPU s | bare loop CPU s | ratio | ≤ 1.2× | hoplon rows | bare rows |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b in bare:
        lines.append(
            f"| {b['dataset']} | {b['norm']} | {b['eps']:g} | {_cpu(b['hoplon_cpu_s'])} | {_cpu(b['bare_cpu_s'])} | "
            f"{b['ratio']} | {'yes' if b['met'] else 'NO'} | {b['hoplon_rows']} | {b['bare_rows']} |"
        )
    v = meta["versions"]
    header = (
        f"hoplon {v['hoplon']}, ART {v['adversarial-robustness-toolbox']}, Foolbox {v['foolbox']}, "
        f"torchattacks {v['torchattacks']}, torch {v['torch']}, numpy {v['numpy']}, Python {v['python']}, "
        f"{v['torch_threads']} torch thread, freed memory kept for reuse: {'yes' if KEPT_FREED_MEMORY else 'NO'}; "
        f"total {meta['cpu_s_total']:.0f} CPU s, {meta['wall_s_total']:.0f} s wall"
        f"{' (QUICK run)' if args.quick else ''}{' (PGD-vs-bare-loop check only)' if args.bare_only else ''}."
    )
    text = "\n".join([header, "", "## Targets", "", *lines, "", "## Tables", *markdown, ""])
    (args.out / "evasion_peers.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
