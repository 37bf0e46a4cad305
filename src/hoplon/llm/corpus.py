"""Build hoplon's prompt-injection corpus: templated items with family ids, MinHash dedup, family split.

Every item carries the id of the template family it came from. Near-duplicates (Jaccard similarity of
character 5-gram shingles at or above ``threshold``, estimated with MinHash and banded LSH, then checked
exactly) are removed across the whole corpus, and the split is by *family*: no family has items in two
splits, so held-out figures measure generalisation to ways of attacking the detector has not seen.

numpy is used here (corpus building is offline work), never in the scanning path.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from hoplon.llm._corpus_extra import EXTRA_BENIGN
from hoplon.llm._corpus_text import ATTACKS, BENIGN, FILLER, SLOTS

__all__ = ["Item", "build_corpus", "dedup_minhash", "read_jsonl", "shingles", "split_by_family", "write_jsonl"]

Split = Literal["train", "val", "test"]
_SLOT_RE = re.compile(r"\{([a-z_0-9]+)\}")
_PREFIXES = ("", "", "", "hey, ", "quick question: ", "ok so ", "Hello! ", "pls ", "")
_SUFFIXES = ("", "", "", " thanks", " Thank you.", "!!", " :)", "")
_WRAPPERS = ("", "", "", "Summarise this for me: ", "Can you help with the following? ", "Read this: ")


@dataclass(frozen=True, slots=True)
class Item:
    """One corpus text. ``label`` 1 is an attack; ``hard_negative`` marks benign text with trigger words."""

    id: str
    text: str
    label: int
    family: str
    channel: str
    hard_negative: bool = False
    split: str = ""


def _fill(template: str, rng: random.Random) -> str:
    chosen: dict[str, str] = {}

    def pick(match: re.Match[str]) -> str:
        token = match.group(1)
        if token in chosen:
            return chosen[token]
        base = token.removesuffix("_cap").rstrip("0123456789")
        value = rng.choice(FILLER) if base == "filler" else rng.choice(SLOTS[base])
        if "{" in value:
            value = _SLOT_RE.sub(pick, value)
        if token.endswith("_cap"):
            value = value[:1].upper() + value[1:]
        if base != "filler":
            chosen[token] = value
        return value

    protected = template.replace("{{", "\x00").replace("}}", "\x01")
    return _SLOT_RE.sub(pick, protected).replace("\x00", "{").replace("\x01", "}")


def _variant(text: str, channel: str, label: int, rng: random.Random) -> str:
    if channel == "user":
        text = rng.choice(_PREFIXES) + text + rng.choice(_SUFFIXES)
        if label and rng.random() < 0.3:
            text = rng.choice(_WRAPPERS) + text
    elif rng.random() < 0.3:
        before = " ".join(rng.choice(FILLER) for _ in range(rng.randint(3, 12)))
        after = " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, 10)))
        text = f"{before}\n{text}\n{after}".strip()
    if rng.random() < 0.15:
        text = text.lower()
    return text


def shingles(text: str, k: int = 5) -> set[int]:
    """Hashes (CRC-32) of the character ``k``-grams of ``text``, lower-cased with runs of space collapsed."""
    norm = " ".join(text.lower().split())
    if len(norm) < k:
        return {zlib.crc32(norm.encode())}
    return {zlib.crc32(norm[i : i + k].encode()) for i in range(len(norm) - k + 1)}


def dedup_minhash(
    texts: Sequence[str], *, threshold: float = 0.85, n_perm: int = 64, bands: int = 16, seed: int = 0
) -> list[int]:
    """Indices of the texts to keep: the first of each group of near-duplicates survives.

    MinHash signatures (``n_perm`` permutations) on character 5-gram shingles; banded LSH proposes candidate
    pairs, and each candidate is confirmed with the exact Jaccard similarity before a text is dropped.
    """
    import numpy as np

    prime = (1 << 61) - 1
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 31, size=n_perm, dtype=np.uint64)
    b = rng.integers(0, 1 << 31, size=n_perm, dtype=np.uint64)
    sets = [shingles(t) for t in texts]
    rows = n_perm // bands
    buckets: dict[tuple[int, bytes], list[int]] = {}
    sigs: list[Any] = []
    keep: list[int] = []
    for idx, sh in enumerate(sets):
        x = np.fromiter(sh, dtype=np.uint64, count=len(sh))
        sig = ((a[:, None] * x[None, :] + b[:, None]) % np.uint64(prime)).min(axis=1)
        keys = [(band, sig[band * rows : (band + 1) * rows].tobytes()) for band in range(bands)]
        sigs.append(sig)
        candidates = sorted({j for key in keys for j in buckets.get(key, ())})
        duplicate = False
        if candidates:
            agree = (np.stack([sigs[j] for j in candidates]) == sig).mean(axis=1)
            duplicate = any(
                len(sh & sets[j]) / max(1, len(sh | sets[j])) >= threshold
                for j, est in zip(candidates, agree, strict=True)
                if est >= threshold - 0.15
            )
        if duplicate:
            continue
        keep.append(idx)
        for key in keys:
            buckets.setdefault(key, []).append(idx)
    return keep


def split_by_family(
    families: Iterable[tuple[str, int, bool]], *, seed: int = 0, fractions: tuple[float, float] = (0.6, 0.2)
) -> dict[str, Split]:
    """Assign each family to ``train``, ``val`` or ``test``, separately within attacks, plain benign and hard
    negatives so each split has some of each. ``families`` holds ``(family, label, hard_negative)``."""
    groups: dict[tuple[int, bool], list[str]] = {}
    for family, label, hard in sorted(set(families)):
        groups.setdefault((label, hard), []).append(family)
    rng = random.Random(seed)
    out: dict[str, Split] = {}
    for key in sorted(groups):
        names = groups[key]
        rng.shuffle(names)
        n = len(names)
        n_test = max(1, round(n * (1 - fractions[0] - fractions[1])))
        n_val = max(1, round(n * fractions[1])) if n >= 3 else 0
        for i, name in enumerate(names):
            out[name] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def build_corpus(
    *, seed: int = 0, per_family: int = 160, benign_per_family: int = 360, dedup_threshold: float = 0.85
) -> list[Item]:
    """Generate, deduplicate and split the corpus. Deterministic for a given ``seed``.

    The families of :mod:`hoplon.llm._corpus_text` are split at random by family; the extra benign families
    (:data:`~hoplon.llm._corpus_extra.EXTRA_BENIGN`) come last, with their fixed train/val split, so they change
    neither the items generated for the others nor which families are held out.
    """
    rng = random.Random(seed)
    raw: list[Item] = []
    specs = [(f, 1, ch, tpl) for f, (ch, tpl) in ATTACKS.items()] + [(f, 0, ch, tpl) for f, (ch, tpl) in BENIGN.items()]
    specs += [(f, 0, ch, tpl) for f, (_, ch, tpl) in EXTRA_BENIGN.items()]
    for family, label, channel, templates in specs:
        for i in range(per_family if label else benign_per_family):
            text = _variant(_fill(templates[i % len(templates)], rng), channel, label, rng)
            raw.append(
                Item(
                    id=f"{family}-{i:04d}",
                    text=text,
                    label=label,
                    family=family,
                    channel=channel,
                    hard_negative=family.startswith("hn-"),
                )
            )
    kept = dedup_minhash([it.text for it in raw], threshold=dedup_threshold, seed=seed)
    fixed: dict[str, Split] = {f: "val" if sp == "val" else "train" for f, (sp, _, _) in EXTRA_BENIGN.items()}
    splits = split_by_family(
        ((it.family, it.label, it.hard_negative) for it in raw if it.family not in fixed), seed=seed
    )
    splits.update(fixed)
    out: list[Item] = []
    for idx in kept:
        it = raw[idx]
        out.append(Item(**{**asdict(it), "split": splits[it.family]}))
    return out


def write_jsonl(items: Iterable[Item], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps(asdict(it), ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[Item]:
    with Path(path).open(encoding="utf-8") as fh:
        return [Item(**json.loads(line)) for line in fh if line.strip()]
