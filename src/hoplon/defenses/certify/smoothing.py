"""Randomized smoothing (Cohen, Rosenfeld, Kolter 2019): a certified L2 radius from Monte-Carlo label counts.

The smoothed classifier ``g(x) = argmax_c P(f(x + N(0, σ²I)) = c)`` is certified at ``x`` with radius
``σ·Φ⁻¹(p_A)`` whenever the top class's probability is at least ``p_A > ½``. ``p_A`` is a one-sided
Clopper–Pearson lower bound at level ``1 − α`` from ``n`` noise draws, after a separate ``n0`` draws chose
the class, exactly as in the paper's CERTIFY; with probability at least ``1 − α`` per sample, a returned
certificate is correct. With ``n`` draws no radius beyond ``σ·Φ⁻¹(α^{1/n})`` can be certified
(:func:`max_certifiable_radius`; about 2.5σ for n = 1,000 and α = 0.001), so a curve that is flat at that
cap shows the sample count's limit, not the model's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.targets.types import Target

__all__ = ["ABSTAIN", "Certificate", "Smooth", "certified_accuracy", "clopper_pearson_lower", "max_certifiable_radius"]

ABSTAIN = -1


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided ``1 − alpha`` Clopper–Pearson lower bound on a binomial proportion (0 when no success)."""
    from scipy.stats import beta

    if successes <= 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def max_certifiable_radius(n: int, alpha: float, sigma: float) -> float:
    """The largest radius ``n`` draws can certify: all ``n`` agree, so ``p_A = α^{1/n}``."""
    from scipy.stats import norm

    return float(sigma * norm.ppf(alpha ** (1.0 / n)))


@dataclass(frozen=True, slots=True)
class Certificate:
    """Per-sample outcome: ``prediction`` (``ABSTAIN`` = -1) and certified L2 ``radius`` (0 when abstaining)."""

    prediction: torch.Tensor
    radius: torch.Tensor
    p_lower: torch.Tensor
    n: int
    n0: int
    alpha: float
    sigma: float

    @property
    def abstained(self) -> torch.Tensor:
        return self.prediction == ABSTAIN


def certified_accuracy(certificate: Certificate, y: torch.Tensor, radius: float) -> float:
    """Share of samples predicted correctly with a certified radius of at least ``radius`` (abstain = wrong)."""
    ok = (certificate.prediction == y) & (certificate.radius >= radius)
    return float(ok.float().mean()) if len(y) else 0.0


@dataclass(frozen=True, kw_only=True)
class Smooth:
    """The smoothed classifier of a base ``target`` under isotropic Gaussian noise of level ``sigma``.

    Threat model: the certificate holds against any L2 perturbation smaller than the radius, for an
    attacker who knows everything, including the model; it is probabilistic (level ``1 − alpha`` per sample).
    The base classifier is queried through its target (so queries are counted and budgeted), labels only.

    References:
        Cohen, Rosenfeld, Kolter. Certified Adversarial Robustness via Randomized Smoothing. ICML 2019.
        https://arxiv.org/abs/1902.02918

    Args:
        sigma: noise level, > 0 (in input units).
        batch_size: noisy rows per query batch (default 1000).
    """

    sigma: float
    batch_size: int = 1000

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, int | float) and math.isfinite(self.sigma) and self.sigma > 0):
            raise InputError(f"The 'sigma' parameter of randomized smoothing must be a float > 0. Got {self.sigma}.")
        if self.batch_size < 1:
            raise InputError(f"The 'batch_size' parameter must be an int >= 1. Got {self.batch_size}.")

    def counts(self, target: Target, x: torch.Tensor, num: int, rng: torch.Generator) -> torch.Tensor:
        """``(len(x), n_classes)`` label counts of the base classifier over ``num`` noise draws per sample."""
        import torch

        out = torch.zeros((len(x), target.n_classes), dtype=torch.long)
        per_sample = max(1, self.batch_size // max(len(x), 1))
        done = 0
        while done < num:
            k = min(per_sample, num - done)
            batch = x.repeat_interleave(k, dim=0)
            noisy = batch + self.sigma * torch.randn(batch.shape, generator=rng, dtype=batch.dtype)
            labels = target.predict(noisy).argmax(1).reshape(len(x), k)
            out += torch.nn.functional.one_hot(labels, target.n_classes).sum(dim=1)
            done += k
        return out

    def certify(
        self, target: Target, x: torch.Tensor, *, n0: int = 100, n: int = 10_000, alpha: float = 0.001, seed: int = 0
    ) -> Certificate:
        """Cohen et al.'s CERTIFY for each sample: the class from ``n0`` draws, its bound from ``n`` others."""
        import torch
        from scipy.stats import norm

        _check_counts(n0, n, alpha)
        rng = torch.Generator().manual_seed(seed)
        choose = self._chunked(target, x, n0, rng)
        guess = choose.argmax(1)
        estimate = self._chunked(target, x, n, rng)
        n_a = estimate.gather(1, guess[:, None]).squeeze(1)
        p_lower = torch.tensor([clopper_pearson_lower(int(k), n, alpha) for k in n_a.tolist()], dtype=torch.float64)
        certified = p_lower > 0.5
        radius = torch.where(
            certified,
            torch.as_tensor(self.sigma * norm.ppf(p_lower.clamp(0.5, 1.0).numpy()), dtype=torch.float64),
            torch.zeros_like(p_lower),
        ).to(torch.float32)
        prediction = torch.where(certified, guess, torch.full_like(guess, ABSTAIN))
        return Certificate(prediction, radius, p_lower.to(torch.float32), n, n0, alpha, self.sigma)

    def predict(
        self, target: Target, x: torch.Tensor, *, n: int = 1000, alpha: float = 0.001, seed: int = 0
    ) -> torch.Tensor:
        """Cohen et al.'s PREDICT: the top class when a two-sided binomial test beats ``alpha``, else ``ABSTAIN``."""
        import torch
        from scipy.stats import binomtest

        _check_counts(1, n, alpha)
        counts = self._chunked(target, x, n, torch.Generator().manual_seed(seed))
        top2 = counts.topk(min(2, counts.shape[1]), dim=1)
        out = torch.full((len(x),), ABSTAIN, dtype=torch.long)
        for i in range(len(x)):
            n_a, n_b = int(top2.values[i, 0]), int(top2.values[i, 1])
            if binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha:
                out[i] = int(top2.indices[i, 0])
        return out

    def _chunked(self, target: Target, x: torch.Tensor, num: int, rng: torch.Generator) -> torch.Tensor:
        import torch

        # Sample-major chunks keep a batch near batch_size rows whatever the mix of n and len(x).
        per_chunk = max(1, self.batch_size // max(num, 1)) if num < self.batch_size else 1
        parts = [self.counts(target, x[i : i + per_chunk], num, rng) for i in range(0, len(x), per_chunk)]
        return torch.cat(parts) if parts else torch.zeros((0, target.n_classes), dtype=torch.long)


def _check_counts(n0: int, n: int, alpha: float) -> None:
    if n0 < 1 or n < 1:
        raise InputError(f"The noise sample counts n0 and n must be >= 1. Got n0={n0}, n={n}.")
    if not 0 < alpha < 1:
        raise InputError(f"The 'alpha' parameter must be in (0, 1). Got {alpha}.")
