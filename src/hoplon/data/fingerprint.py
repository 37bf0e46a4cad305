"""Dataset fingerprints: an RFC 9162 Merkle root over the records, with inclusion and exclusion proofs.

Each record ``(x_i, y_i)`` hashes to a leaf ``SHA-256(0x00 || "hoplon.record/v1" || shape || x (float32 LE) ||
y (int64 LE))``. ``ordered`` fingerprints keep the dataset's order; ``sorted`` (order-independent) ones sort
the leaf hashes first, so shuffling does not change the root, and a record's *absence* can be proved by the
two adjacent leaves that bracket its hash. The fingerprint file keeps the leaf hashes (32 bytes per record),
so proofs need neither the data nor trust in whoever stored it: only the root, e.g. from the ledger.
"""

from __future__ import annotations

import bisect
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hoplon.core.errors import InputError

if TYPE_CHECKING:
    import torch

    from hoplon.data.dataset import Dataset

__all__ = ["DatasetFingerprint", "MembershipProof", "fingerprint", "prove_membership", "record_hash", "records_root"]

FORMAT = "hoplon.dataset-fingerprint/v1"
Mode = Literal["ordered", "sorted"]


def record_hash(x: torch.Tensor, y: int) -> bytes:
    """The Merkle leaf hash of one record (``x`` one sample without the batch axis, ``y`` its label)."""
    from hoplon.core.merkle import leaf_hash

    shape = struct.pack(f"<{x.ndim + 1}I", x.ndim, *(int(s) for s in x.shape))
    body = x.detach().cpu().contiguous().numpy().astype("<f4").tobytes()
    return leaf_hash(b"hoplon.record/v1" + shape + body + struct.pack("<q", int(y)))


@dataclass(frozen=True, slots=True)
class DatasetFingerprint:
    """The Merkle root of a dataset's records and the leaf hashes it was built from."""

    root: str
    n: int
    mode: Mode
    leaves: tuple[str, ...]
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "root": self.root,
            "n": self.n,
            "mode": self.mode,
            "name": self.name,
            "leaves": list(self.leaves),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetFingerprint:
        if data.get("format") != FORMAT:
            raise InputError(f"Not a {FORMAT} document (format={data.get('format')!r}).")
        from hoplon.core.merkle import root_of

        fp = cls(
            root=str(data["root"]),
            n=int(data["n"]),
            mode=data["mode"],
            leaves=tuple(data["leaves"]),
            name=str(data.get("name", "")),
        )
        if fp.mode not in ("ordered", "sorted") or len(fp.leaves) != fp.n:
            raise InputError("The fingerprint file is inconsistent (mode or number of leaves).")
        if root_of([bytes.fromhex(h) for h in fp.leaves]).hex() != fp.root:
            raise InputError("The fingerprint file's leaves do not hash to its root: it was altered.")
        return fp

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> DatasetFingerprint:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"Cannot read the fingerprint {path}: {exc}") from None

    def matches(self, data: Dataset) -> bool:
        """True when ``data`` has exactly the fingerprinted records (in order, for ``ordered``)."""
        return fingerprint(data, order_independent=self.mode == "sorted").root == self.root


@dataclass(frozen=True, slots=True)
class MembershipProof:
    """A proof that a record is (``member``) or is not in a fingerprinted dataset.

    A member is proved by its leaf's audit path. A non-member of a ``sorted`` fingerprint is proved by the
    audit paths of the two adjacent leaves that bracket its hash (or of the first/last leaf).
    """

    member: bool
    leaf: str
    root: str
    tree_size: int
    proofs: tuple[tuple[int, str, tuple[str, ...]], ...]

    def verify(self) -> bool:
        """Check every audit path against the root, and for absence, that the bracketing leaves are adjacent."""
        from hoplon.core.merkle import verify_inclusion

        root = bytes.fromhex(self.root)
        for index, leaf, path in self.proofs:
            if not verify_inclusion(bytes.fromhex(leaf), index, self.tree_size, [bytes.fromhex(p) for p in path], root):
                return False
        if self.member:
            return len(self.proofs) == 1 and self.proofs[0][1] == self.leaf
        indices = [p[0] for p in self.proofs]
        leaves = [p[1] for p in self.proofs]
        if len(self.proofs) == 2:
            return indices[1] == indices[0] + 1 and leaves[0] < self.leaf < leaves[1]
        if len(self.proofs) == 1:
            first, last = (
                indices[0] == 0 and self.leaf < leaves[0],
                indices[0] == self.tree_size - 1 and (self.leaf > leaves[0]),
            )
            return first or last
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "leaf": self.leaf,
            "root": self.root,
            "tree_size": self.tree_size,
            "proofs": [{"index": i, "leaf": leaf, "path": list(p)} for i, leaf, p in self.proofs],
            "verified": self.verify(),
        }


def _leaves(x: torch.Tensor, y: torch.Tensor, order_independent: bool) -> list[bytes]:
    leaves = [record_hash(x[i], int(y[i])) for i in range(len(x))]
    if order_independent:
        leaves.sort()
    return leaves


def records_root(x: torch.Tensor, y: torch.Tensor, *, order_independent: bool = False) -> str:
    """``merkle:<hex>``: the Merkle root over the records ``(x_i, y_i)``, the provenance id of a dataset that
    training records, reports and the ledger carry (:func:`fingerprint` gives the leaves for proofs too)."""
    from hoplon.core.merkle import root_of

    return "merkle:" + root_of(_leaves(x, y, order_independent)).hex()


def fingerprint(data: Dataset, *, order_independent: bool = False) -> DatasetFingerprint:
    """The Merkle fingerprint of ``data``; ``order_independent`` sorts the leaves (any order, same root)."""
    from hoplon.core.merkle import root_of

    leaves = _leaves(data.x, data.y, order_independent)
    return DatasetFingerprint(
        root=root_of(leaves).hex(),
        n=len(leaves),
        mode="sorted" if order_independent else "ordered",
        leaves=tuple(h.hex() for h in leaves),
        name=data.name,
    )


def prove_membership(fp: DatasetFingerprint, x: torch.Tensor, y: int) -> MembershipProof:
    """Prove that the record ``(x, y)`` is, or is not, in the dataset ``fp`` fingerprints.

    Absence can only be proved compactly for an order-independent (``sorted``) fingerprint.
    """
    from hoplon.core.merkle import inclusion_path

    leaf = record_hash(x, y).hex()
    raw = [bytes.fromhex(h) for h in fp.leaves]

    def one(index: int) -> tuple[int, str, tuple[str, ...]]:
        return index, fp.leaves[index], tuple(p.hex() for p in inclusion_path(index, raw))

    if leaf in fp.leaves:
        return MembershipProof(True, leaf, fp.root, fp.n, (one(fp.leaves.index(leaf)),))
    if fp.mode != "sorted":
        raise InputError(
            "The record is not in the dataset, but an ordered fingerprint cannot prove absence compactly; "
            "fingerprint with --order-independent (or compare against the full dataset)."
        )
    at = bisect.bisect_left(fp.leaves, leaf)
    bracket = [i for i in (at - 1, at) if 0 <= i < fp.n]
    return MembershipProof(False, leaf, fp.root, fp.n, tuple(one(i) for i in bracket))
