"""Per-record suspicion scores in [0, 1] (0.5 = the method's flag threshold) from each scanning method.

Every function takes the labels and a representation (raw inputs or penultimate features) and returns a
``(n,)`` float tensor; higher is more suspicious. The scanner combines them (see ``scanner.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "activation_clustering",
    "conflicting_duplicates",
    "knn_label_consistency",
    "out_of_distribution",
    "robust_distance",
    "spectral_signatures",
]


def _standardise(z: torch.Tensor) -> torch.Tensor:
    flat = z.reshape(len(z), -1).double()
    return (flat - flat.mean(0)) / (flat.std(0) + 1e-8)


def _knn(z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and indices of the ``k`` nearest other records (exact, blockwise)."""
    import torch

    k = min(k, len(z) - 1)
    dists, idx = [], []
    sq = (z * z).sum(1)
    for i in range(0, len(z), 1024):
        block = z[i : i + 1024]
        d2 = (sq[i : i + 1024, None] + sq[None, :] - 2 * block @ z.T).clamp_min(0)
        d2[torch.arange(len(block)), torch.arange(i, i + len(block))] = float("inf")
        values, where = d2.topk(k, dim=1, largest=False)
        dists.append(values.sqrt())
        idx.append(where)
    return torch.cat(dists), torch.cat(idx)


def knn_label_consistency(z: torch.Tensor, y: torch.Tensor, *, k: int = 10) -> torch.Tensor:
    """From the share ``s`` of a record's ``k`` nearest neighbours (standardised ``z``) whose label differs from
    its own: ``clamp((s - 0.6) / 0.4, 0, 1)``, so a record is flagged (0.5) when 80 % of its neighbours disagree.

    Catches flipped labels: a mislabelled record sits among records of its true class. Records on a class
    boundary disagree with about half their neighbours and stay under the flag.
    """
    _, idx = _knn(_standardise(z), k)
    disagree = (y[idx] != y[:, None]).double().mean(1)
    score: torch.Tensor = ((disagree - 0.6) / 0.4).clamp(0, 1)
    return score.float()


def _robust_z(values: torch.Tensor) -> torch.Tensor:
    med = values.median()
    mad = (values - med).abs().median() * 1.4826 + 1e-12
    return (values - med) / mad


def _per_class(y: torch.Tensor, min_size: int) -> list[torch.Tensor]:
    import torch

    return [(y == c).nonzero()[:, 0] for c in torch.unique(y) if int((y == c).sum()) >= min_size]


def spectral_signatures(features: torch.Tensor, y: torch.Tensor, *, z_flag: float = 3.0) -> torch.Tensor:
    """Tran et al. 2018: per class, the squared projection on the top singular vector of centred features.

    Scored as a robust z-score within the class; ``z_flag`` maps to 0.5. https://arxiv.org/abs/1811.00636
    """
    import torch

    out = torch.zeros(len(y), dtype=torch.float64)
    feats = features.double()
    for members in _per_class(y, 4):
        r = feats[members] - feats[members].mean(0)
        _, _, vh = torch.linalg.svd(r, full_matrices=False)
        score = (r @ vh[0]) ** 2
        out[members] = (_robust_z(score) / (2 * z_flag)).clamp(0, 1)
    return out.float()


def activation_clustering(
    features: torch.Tensor, y: torch.Tensor, *, n_components: int = 10, max_share: float = 0.35, seed: int = 0
) -> torch.Tensor:
    """Chen et al. 2019: per class, 2-means on PCA-reduced features; the smaller cluster is suspicious when it
    holds less than ``max_share`` of the class. The score grows with the share of the class's variance the
    split explains.
    https://arxiv.org/abs/1811.03728
    """
    import numpy as np
    import torch
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    out = torch.zeros(len(y), dtype=torch.float64)
    feats = features.double().numpy()
    for members in _per_class(y, 2 * n_components):
        sub = feats[members.numpy()]
        reduced = PCA(n_components=min(n_components, sub.shape[1], len(sub) - 1), random_state=seed).fit_transform(sub)
        kmeans = KMeans(n_clusters=2, n_init=1, random_state=seed).fit(reduced)
        labels = kmeans.labels_
        sizes = np.bincount(labels, minlength=2)
        small = int(np.argmin(sizes))
        if sizes[small] == 0 or sizes[small] / len(labels) >= max_share:
            continue
        # Share of the class's variance the split explains (cheap, unlike a silhouette score).
        separation = 1.0 - float(kmeans.inertia_) / float(((reduced - reduced.mean(0)) ** 2).sum() + 1e-12)
        flagged = members[torch.from_numpy(labels == small)]
        out[flagged] = min(1.0, 0.5 + max(separation, 0.0))
    return out.float()


def robust_distance(features: torch.Tensor, y: torch.Tensor, *, n_components: int = 8, seed: int = 0) -> torch.Tensor:
    """Per class, the robust (MCD) Mahalanobis distance in PCA space divided by the 97.5 % quantile of the
    distances of the MCD support (the clean core), so 1 is the edge of the core in every class."""
    import numpy as np
    import torch
    from sklearn.covariance import MinCovDet
    from sklearn.decomposition import PCA

    out = torch.zeros(len(y), dtype=torch.float64)
    feats = features.double().numpy()
    for members in _per_class(y, 4 * n_components):
        sub = feats[members.numpy()]
        dims = min(n_components, sub.shape[1], len(sub) // 4)
        reduced = PCA(n_components=dims, random_state=seed).fit_transform(sub)
        mcd = MinCovDet(random_state=seed).fit(reduced)
        d2 = mcd.mahalanobis(reduced)
        out[members] = torch.from_numpy(d2 / (float(np.quantile(d2[mcd.support_], 0.975)) + 1e-12))
    return (out / 2).clamp(0, 1).float()


def conflicting_duplicates(z: torch.Tensor, y: torch.Tensor, *, tol: float = 1e-3) -> torch.Tensor:
    """1 for records with an exact or near duplicate (relative L2 distance ≤ ``tol``) of another label, else 0;
    0.25 for a same-label duplicate (harmless, but inflates the data)."""
    import torch

    flat = z.reshape(len(z), -1).double()
    scale = flat.norm(dim=1).median().item() + 1e-12
    dist, idx = _knn(flat, 5)
    near = dist <= tol * scale
    conflict = (near & (y[idx] != y[:, None])).any(1)
    same = (near & (y[idx] == y[:, None])).any(1)
    out = torch.where(conflict, 1.0, torch.where(same, 0.25, 0.0))
    return out.float()


def out_of_distribution(z: torch.Tensor, *, k: int = 5, z_flag: float = 4.0) -> torch.Tensor:
    """Distance to the ``k``-th nearest record (standardised), as a robust z-score; ``z_flag`` maps to 0.5."""
    dist, _ = _knn(_standardise(z), k)
    score: torch.Tensor = (_robust_z(dist[:, -1]) / (2 * z_flag)).clamp(0, 1)
    return score.float()
