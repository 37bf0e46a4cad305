"""The linear character/word n-gram model of the lexical stage, in pure Python.

The model is a logistic regression over n-gram counts scaled by ``1/sqrt(n_features)``. Because it is linear,
the score of any window of the text is ``bias + (sum of the weights of the n-grams that start in it) /
sqrt(number of n-grams that start in it)``: one pass computes per-position contributions, prefix sums give
every window in O(1), and a short injection inside a long document is scored on its own window instead of
being diluted by the whole. Weights ship as JSON (never pickle); unknown n-grams weigh zero.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

from hoplon.core.errors import InputError

__all__ = ["MODEL_FORMAT", "NgramModel", "default_model", "extract_features"]

MODEL_FORMAT = "hoplon.llm.ngram/v1"
_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def extract_features(text: str, *, char_n: Sequence[int] = (3, 5), word_n: int = 2) -> Counter[str]:
    """The n-gram counts of ``text`` (already normalised): ``c:`` character n-grams, ``w:`` words, ``b:`` pairs.

    This is the definition the trainer uses; :meth:`NgramModel.window_scores` computes the same thing
    positionally.
    """
    feats: Counter[str] = Counter()
    for n in char_n:
        feats.update("c:" + text[i : i + n] for i in range(len(text) - n + 1))
    words = _WORD_RE.findall(text)
    feats.update("w:" + w for w in words)
    if word_n >= 2:
        feats.update("b:" + a + " " + b for a, b in pairwise(words))
    return feats


@dataclass(frozen=True, slots=True)
class NgramModel:
    """Weights and calibration of the lexical model.

    Args:
        weights: n-gram (``c:``/``w:``/``b:`` prefixed) to weight.
        bias: the intercept.
        char_n: character n-gram lengths.
        window_chars: window length for long inputs (stride is half of it).
        thresholds: per channel, the raw-score thresholds ``{"review": t, "block": t}`` from calibration.
        meta: training provenance (corpus size, seed, families).
    """

    weights: Mapping[str, float]
    bias: float
    char_n: tuple[int, ...] = (3, 5)
    window_chars: int = 400
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    _chars: dict[int, dict[str, float]] = field(init=False, repr=False, compare=False, default_factory=dict)
    _words: dict[str, float] = field(init=False, repr=False, compare=False, default_factory=dict)
    _pairs: dict[str, float] = field(init=False, repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NgramModel:
        if data.get("format") != MODEL_FORMAT:
            raise InputError(f"Not a {MODEL_FORMAT} model (format={data.get('format')!r}).")
        try:
            return cls(
                weights={str(k): float(v) for k, v in data["weights"].items()},
                bias=float(data["bias"]),
                char_n=tuple(int(n) for n in data.get("char_n", (3, 5))),
                window_chars=int(data.get("window_chars", 400)),
                thresholds={str(c): {str(k): float(v) for k, v in t.items()} for c, t in data["thresholds"].items()},
                meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"Malformed n-gram model: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> NgramModel:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"Cannot read n-gram model {path}: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "bias": self.bias,
            "char_n": list(self.char_n),
            "window_chars": self.window_chars,
            "thresholds": {c: dict(t) for c, t in self.thresholds.items()},
            "meta": dict(self.meta),
            "weights": dict(sorted(self.weights.items())),
        }

    def __post_init__(self) -> None:
        chars: dict[int, dict[str, float]] = {n: {} for n in self.char_n}
        words: dict[str, float] = {}
        pairs: dict[str, float] = {}
        for key, w in self.weights.items():
            kind, gram = key[:2], key[2:]
            if kind == "c:":
                if len(gram) in chars:
                    chars[len(gram)][gram] = w
            else:
                (words if kind == "w:" else pairs)[gram] = w
        object.__setattr__(self, "_chars", chars)
        object.__setattr__(self, "_words", words)
        object.__setattr__(self, "_pairs", pairs)

    def score_text(self, text: str) -> float:
        """Raw score (log-odds) of the whole text, the way the trainer sees it."""
        return self.window_scores(text, window_chars=max(1, len(text)))[0][2]

    def window_scores(self, text: str, *, window_chars: int | None = None) -> list[tuple[int, int, float]]:
        """``(start, end, raw score)`` for each window of ``text`` (one window when it is short).

        One pass computes prefix sums of the n-gram weights per position; each window then costs O(1).
        """
        size = window_chars or self.window_chars
        n_chars = len(text)
        # One pass over start positions sums every n-gram length's weight (a slice cut short by the end of the
        # text is shorter than n, so it is never found in that length's table).
        lasts = [max(0, n_chars - n + 1) for n in self.char_n]
        span = max(lasts, default=0)
        if len(self.char_n) == 2:
            (n1, n2), (g1, g2) = self.char_n, (self._chars[self.char_n[0]].get, self._chars[self.char_n[1]].get)
            weights = [g1(text[i : i + n1], 0.0) + g2(text[i : i + n2], 0.0) for i in range(span)]
        else:
            tables = [(n, self._chars[n].get) for n in self.char_n]
            weights = [sum(g(text[i : i + n], 0.0) for n, g in tables) for i in range(span)]
        prefix = [0.0, *accumulate(weights)]
        wget = self._words.get
        pget = self._pairs.get
        starts: list[int] = []
        word_w: list[float] = [0.0]
        word_c: list[int] = [0]
        prev: str | None = None
        for m in _WORD_RE.finditer(text):
            word = m.group(0)
            w = wget(word, 0.0)
            c = 1
            if prev is not None:
                w += pget(prev + " " + word, 0.0)
                c = 2
            starts.append(m.start())
            word_w.append(word_w[-1] + w)
            word_c.append(word_c[-1] + c)
            prev = word
        stride = max(1, size // 2)
        out: list[tuple[int, int, float]] = []
        start = 0
        while True:
            end = min(n_chars, start + size)
            total = 0.0
            count = 0
            total += prefix[min(end, span)] - prefix[min(start, span)]
            for last in lasts:
                count += min(end, last) - min(start, last)
            i, j = bisect_left(starts, start), bisect_left(starts, end)
            total += word_w[j] - word_w[i]
            count += word_c[j] - word_c[i]
            # The first word of a window drops its pair with the word before the window.
            if i < j and i > 0:
                count -= 1
                total -= pget(_pair_before(text, starts, i), 0.0)
            out.append((start, end, self.bias + (total / math.sqrt(count) if count else 0.0)))
            if end >= n_chars:
                break
            start += stride
        return out

    def max_window(self, text: str) -> tuple[int, int, float]:
        """The highest-scoring window ``(start, end, raw score)``."""
        return max(self.window_scores(text), key=lambda t: t[2])


def _pair_before(text: str, starts: list[int], i: int) -> str:
    prev = _WORD_RE.match(text, starts[i - 1])
    cur = _WORD_RE.match(text, starts[i])
    return (prev.group(0) if prev else "") + " " + (cur.group(0) if cur else "")


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@cache
def default_model() -> NgramModel:
    """The model shipped in ``hoplon/llm/data/ngram_model.json`` (trained by ``hoplon.llm.train``)."""
    text = resources.files("hoplon.llm").joinpath("data/ngram_model.json").read_text(encoding="utf-8")
    return NgramModel.from_dict(json.loads(text))
