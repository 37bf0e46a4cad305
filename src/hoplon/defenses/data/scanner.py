"""`DatasetScanner`: per-record suspicion scores from several methods, combined and ranked.

Methods on the inputs alone: k-NN label consistency (flipped labels), conflicting duplicates, out-of-distribution
distance. Methods on a model's penultimate features (the given model, or one the recipe trains on the data):
spectral signatures, activation clustering, and robust covariance (SPECTRE-style). The method that holds when
the poison is a large share of its class is **robust-core disagreement**: per class, keep the half of the
records closest to the robust (MCD) centre, train the recipe on that core only, and score every record by how
little that model believes its label. Triggered, relabelled records look like their source class to a model
that never saw the trigger, so they score near 1, whatever share of the target class they are (up to half).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from hoplon.core.errors import InputError
from hoplon.defenses.data import methods

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hoplon.data import Dataset
    from hoplon.recipes import Recipe

__all__ = ["METHODS", "DatasetScanner", "ScanResult"]

log = logging.getLogger(__name__)

Method = Literal["knn", "duplicates", "ood", "spectral", "activation-clustering", "robust-covariance", "robust-core"]
METHODS: tuple[Method, ...] = (
    "knn",
    "duplicates",
    "ood",
    "spectral",
    "activation-clustering",
    "robust-covariance",
    "robust-core",
)
FEATURE_METHODS = frozenset({"spectral", "activation-clustering", "robust-covariance", "robust-core"})
FLAG = 0.5


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Per-record scores (``(n,)`` tensors in [0, 1], 0.5 = flag threshold) by method, and combined.

    ``ranking`` holds record indices, most suspicious first.
    """

    scores: dict[str, torch.Tensor]
    combined: torch.Tensor
    ranking: torch.Tensor
    skipped: dict[str, str] = field(default_factory=dict)

    def reasons(self, index: int) -> list[str]:
        return [name for name, s in self.scores.items() if float(s[index]) >= FLAG]

    def records(self) -> list[dict[str, object]]:
        """``[{"index", "score", "reasons"}]``, most suspicious first (what ``report.json`` lists)."""
        return [
            {"index": int(i), "score": round(float(self.combined[i]), 6), "reasons": self.reasons(int(i))}
            for i in self.ranking
        ]

    def top(self, k: int) -> torch.Tensor:
        return self.ranking[:k]


@dataclass(frozen=True, kw_only=True)
class DatasetScanner:
    """Scan a labelled training set for poisoned records.

    Threat model: the defender holds the training set (and optionally the model trained on it, or the recipe to
    train one) and wants the records an attacker flipped or stamped with a trigger. No clean reference data is
    needed. Robust statistics hold while the poison is under half of each class.

    References:
        Tran, Li, Madry. Spectral Signatures in Backdoor Attacks. NeurIPS 2018. https://arxiv.org/abs/1811.00636
        Chen et al. Detecting Backdoor Attacks by Activation Clustering. 2019. https://arxiv.org/abs/1811.03728
        Hayase, Kong, Somani, Oh. SPECTRE. ICML 2021. https://arxiv.org/abs/2104.11315

    Args:
        methods: which methods to run (default all; feature methods need a model or a recipe).
        k: neighbours for k-NN label consistency (default 10).
        core_share: share of each class kept as the robust core, in (0, 0.5] (default 0.5).
        rounds: core models trained, >= 1 (default 2): each after the first trains on every record the
            previous one agreed with.
        seed: seed of clustering and of the core model's training.
    """

    methods: tuple[Method, ...] = METHODS
    k: int = 10
    core_share: float = 0.5
    rounds: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise InputError(f"Unknown scanner method(s) {unknown}; known: {', '.join(METHODS)}.")
        if not isinstance(self.k, int) or self.k < 1:
            raise InputError(f"The 'k' parameter of DatasetScanner must be an int >= 1. Got {self.k!r}.")
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise InputError(f"The 'rounds' parameter of DatasetScanner must be an int >= 1. Got {self.rounds!r}.")
        if not 0 < self.core_share <= 0.5:
            raise InputError(f"The 'core_share' parameter must be in (0, 0.5]. Got {self.core_share!r}.")

    def scan(
        self,
        data: Dataset,
        *,
        model: nn.Module | None = None,
        recipe: Recipe | None = None,
    ) -> ScanResult:
        """Score every record of ``data``; ``model`` gives features, else ``recipe`` trains one on ``data``."""

        from hoplon.defenses.data._features import penultimate_features

        if data.n < 2 * self.k:
            raise InputError(f"Scanning needs at least {2 * self.k} records (k = {self.k}); got {data.n}.")
        n_classes = int(data.y.max()) + 1
        scores: dict[str, torch.Tensor] = {}
        skipped: dict[str, str] = {}
        x, y = data.x, data.y
        if "knn" in self.methods:
            scores["knn"] = methods.knn_label_consistency(x, y, k=self.k)
        if "duplicates" in self.methods:
            scores["duplicates"] = methods.conflicting_duplicates(x, y)
        if "ood" in self.methods:
            scores["ood"] = methods.out_of_distribution(x)
        wanted = [m for m in self.methods if m in FEATURE_METHODS]
        if wanted and model is None and recipe is not None:
            from hoplon.recipes import train

            model, _ = train(recipe, x, y, n_classes=n_classes, seed=self.seed)
        if wanted and model is None:
            for name in wanted:
                skipped[name] = "needs a model (--model) or a recipe (--recipe)"
        elif wanted and model is not None:
            feats = penultimate_features(model, x)
            if "spectral" in self.methods:
                scores["spectral"] = methods.spectral_signatures(feats, y)
            if "activation-clustering" in self.methods:
                scores["activation-clustering"] = methods.activation_clustering(feats, y, seed=self.seed)
            distance = methods.robust_distance(feats, y, seed=self.seed)
            if "robust-covariance" in self.methods:
                scores["robust-covariance"] = distance
            if "robust-core" in self.methods:
                if recipe is None:
                    skipped["robust-core"] = "needs a recipe (--recipe) to train the core model"
                else:
                    scores["robust-core"] = self._core_disagreement(data, distance, recipe, n_classes)
        combined = _combine(scores)
        ranking = combined.argsort(descending=True, stable=True)
        return ScanResult(scores=scores, combined=combined, ranking=ranking, skipped=skipped)

    def _core_disagreement(self, data: Dataset, distance: torch.Tensor, recipe: Recipe, n_classes: int) -> torch.Tensor:
        import torch

        from hoplon.recipes import train

        keep = torch.zeros(data.n, dtype=torch.bool)
        for c in torch.unique(data.y):
            members = (data.y == c).nonzero()[:, 0]
            n_keep = max(1, int(len(members) * self.core_share))
            keep[members[distance[members].argsort(stable=True)[:n_keep]]] = True
        score = torch.zeros(data.n)
        for _ in range(self.rounds):
            core, _ = train(recipe, data.x[keep], data.y[keep], n_classes=n_classes, seed=self.seed)
            core.eval()
            with torch.no_grad():
                probs = torch.cat([core(data.x[i : i + 1024]).softmax(1) for i in range(0, data.n, 1024)])
            score = (1 - probs[torch.arange(data.n), data.y]).float()
            # The next round trains on every record the core model agrees with: far more clean data, and
            # still (almost) no poison, so the hard-but-clean records stop looking suspicious.
            keep = score < FLAG
        return score


def _combine(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ranking score: the strongest method (robust core, else robust covariance, else k-NN) weighs 3/4, the
    most alarmed of the others 1/4, so a record several methods agree on ranks first."""
    import torch

    primary_name = next((m for m in ("robust-core", "robust-covariance", "knn") if m in scores), None)
    if primary_name is None:
        stacked = torch.stack(list(scores.values()))
        return stacked.max(0).values
    primary = scores[primary_name]
    others = [s for name, s in scores.items() if name != primary_name]
    if not others:
        return primary
    return 0.75 * primary + 0.25 * torch.stack(others).max(0).values
