"""Input profiles: the model's real input space, learnt from reference data, enforced by the gateway.

``build_profile`` records the sample shape, dtype, per-feature observed ranges, an enforced box (the observed
range widened by ``margin`` of each feature's range) and, for features that take a few integer values, the
allowed categories. ``Profile.check`` refuses values outside the box or the categories and scores how far a
batch lies outside the *observed* range (a soft out-of-distribution signal, 0 inside).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hoplon.core.errors import InputError

__all__ = ["PROFILE_SCHEMA", "Profile", "build_profile"]

PROFILE_SCHEMA = "hoplon.profile/v1"


def _clip_ufunc() -> Callable[..., Any]:
    """The clip ufunc itself (numpy 2: ``numpy._core``, 1.26: ``numpy.core``): np.clip and ndarray.clip reach
    it through two layers of Python."""
    for module in ("numpy._core.umath", "numpy.core.umath"):
        try:
            clip = getattr(importlib.import_module(module), "clip", None)
        except ImportError:
            continue
        if isinstance(clip, np.ufunc):
            return clip
    return np.clip  # pragma: no cover - every supported numpy has the ufunc


_clip = _clip_ufunc()


def build_profile(
    x: np.ndarray, *, margin: float = 0.05, max_categories: int = 10, model_digest: str | None = None
) -> dict[str, Any]:
    """The profile of reference samples ``x`` (batch axis first) as a JSON-able dict."""
    if x.ndim < 2 or len(x) == 0:
        raise InputError(f"A profile needs a batch of samples (batch axis first). Got shape {x.shape}.")
    if not 0 <= margin <= 1:
        raise InputError(f"The 'margin' parameter of build_profile must be in [0, 1]. Got {margin}.")
    flat = x.reshape(len(x), -1).astype(np.float64)
    if not np.isfinite(flat).all():
        raise InputError("The reference data holds NaN or infinite values.")
    low, high = flat.min(axis=0), flat.max(axis=0)
    span = high - low
    global_span = float(high.max() - low.min()) or 1.0
    pad = margin * np.where(span > 0, span, global_span)
    categories: dict[str, list[float]] = {}
    if max_categories > 0:
        integral = np.all(flat == np.round(flat), axis=0)
        for j in np.flatnonzero(integral):
            values = np.unique(flat[:, j])
            if 2 <= len(values) <= max_categories:
                categories[str(int(j))] = [float(v) for v in values]
    return {
        "schema": PROFILE_SCHEMA,
        "shape": list(x.shape[1:]),
        "dtype": str(x.dtype),
        "n_reference": len(x),
        "margin": margin,
        "min": low.tolist(),
        "max": high.tolist(),
        "lower": (low - pad).tolist(),
        "upper": (high + pad).tolist(),
        "categories": categories,
        "model_digest": model_digest,
    }


@dataclass(frozen=True, slots=True)
class Violation:
    row: int
    feature: int
    value: float
    reason: str


class Profile:
    """A loaded profile; :meth:`check` runs in O(batch × features) numpy work."""

    def __init__(self, raw: dict[str, Any]) -> None:
        if raw.get("schema") != PROFILE_SCHEMA:
            raise InputError(f"Not a hoplon input profile (schema {raw.get('schema')!r}, expected {PROFILE_SCHEMA}).")
        self.raw = raw
        self.shape = tuple(int(s) for s in raw["shape"])
        self.min = np.asarray(raw["min"], dtype=np.float64)
        self.max = np.asarray(raw["max"], dtype=np.float64)
        self.lower = np.asarray(raw["lower"], dtype=np.float64)
        self.upper = np.asarray(raw["upper"], dtype=np.float64)
        self.scale = np.where(self.max > self.min, self.max - self.min, 1.0)
        self.categories = {int(j): np.asarray(v, dtype=np.float64) for j, v in raw.get("categories", {}).items()}
        # The observed range in the samples' shape, where the profile's shape and bounds agree.
        fits = self.min.shape == self.max.shape == (int(np.prod(self.shape)),)
        self._low = self.min.reshape(self.shape) if fits else None
        self._high = self.max.reshape(self.shape) if fits else None
        # The observed range lies inside the enforced box (as ``build_profile`` makes it): a batch inside the
        # observed range then has no box violation and scores 0, which one clip tells. The clip test needs
        # min <= max (no NaN): clipping to [min, max] then leaves only the values inside unchanged.
        self._nested = bool(
            self.lower.shape == self.min.shape == self.max.shape == self.upper.shape
            and (self.lower <= self.min).all()
            and (self.min <= self.max).all()
            and (self.max <= self.upper).all()
        )

    @classmethod
    def from_file(cls, path: str | Path) -> Profile:
        try:
            return cls(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"The input profile {path} cannot be read: {exc}") from None

    def check(self, x: np.ndarray) -> tuple[list[Violation], float]:
        """Violations of the box or categories (at most 5 reported) and the batch's OOD score."""
        violations: list[Violation] = []
        # The common case, a batch inside the observed range: clipped to it, it is unchanged (one ufunc and
        # two copies out, against two comparisons, their conjunction and ndarray.all's Python wrapper). A
        # batch it leaves short of that (or a -0.0 clipped to 0.0) takes the full path below. Samples of the
        # profile's shape are clipped as they are, against the bounds in that shape (no reshape).
        if self._nested:
            if self._low is not None and x.shape[1:] == self.shape:
                sample, low, high = x, self._low, self._high
            else:
                sample, low, high = x.reshape(len(x), -1), self.min, self.max
            if _clip(sample, low, high).tobytes() == sample.tobytes():
                if not self.categories:
                    return violations, 0.0
                return self._category_violations(x.reshape(len(x), -1), violations)[:5], 0.0
        flat = x.reshape(len(x), -1)
        if not ((flat >= self.lower).all() and (flat <= self.upper).all()):
            outside = (flat < self.lower) | (flat > self.upper)
            violations = [
                Violation(int(r), int(c), float(flat[r, c]), "out_of_range") for r, c in np.argwhere(outside)[:5]
            ]
        self._category_violations(flat, violations)
        score = 0.0
        if len(flat) and not ((flat >= self.min).all() and (flat <= self.max).all()):
            excess = np.maximum(self.min - flat, 0) + np.maximum(flat - self.max, 0)
            score = float((excess / self.scale).mean(axis=1).max())
        return violations[:5], score

    def _category_violations(self, flat: np.ndarray, violations: list[Violation]) -> list[Violation]:
        """Add to ``violations`` (at most 5 per categorical feature) the values outside their categories."""
        for j, allowed in self.categories.items():
            bad = ~np.isin(flat[:, j], allowed)
            if bad.any():
                violations.extend(Violation(int(r), j, float(flat[r, j]), "category") for r in np.flatnonzero(bad)[:5])
        return violations
