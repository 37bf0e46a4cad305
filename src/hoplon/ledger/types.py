"""The ledger's value types: entries, checkpoints, proofs and the result of a verification."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENTRY_VERSION",
    "Checkpoint",
    "ConsistencyProof",
    "Entry",
    "InclusionProof",
    "Problem",
    "VerifyResult",
    "canonical_json",
]

ENTRY_VERSION = 1
CHECKPOINT_ORIGIN = "hoplon.ledger/v1"


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces, UTF-8 kept, NaN refused (JSON has none)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True, slots=True)
class Entry:
    """One appended record.

    ``data`` is the exact canonical text that was hashed: ``{"v", "seq", "ts", "kind", "identity", "prev",
    "body"}``. ``hash`` is its RFC 9162 leaf hash, ``SHA-256(0x00 || data)``, and the next entry's ``prev``
    holds it, so the hash chain and the Merkle tree share one hash per entry.
    """

    seq: int
    ts: float
    kind: str
    identity: str | None
    prev: str
    hash: str
    data: str

    @property
    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.data)["body"]
        return parsed

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "identity": self.identity,
            "prev": self.prev,
            "hash": self.hash,
            "body": self.body,
        }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: the Merkle root of the first ``tree_size`` entries, signed with Ed25519."""

    tree_size: int
    root: str
    ts: float
    key_id: str
    signature: str
    frontier: tuple[str, ...] = field(default=(), compare=False)

    def signed_text(self) -> bytes:
        return checkpoint_text(self.tree_size, self.root, self.ts, self.key_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": CHECKPOINT_ORIGIN,
            "tree_size": self.tree_size,
            "root": self.root,
            "ts": self.ts,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Checkpoint:
        return cls(int(raw["tree_size"]), str(raw["root"]), float(raw["ts"]), str(raw["key_id"]), str(raw["signature"]))


def checkpoint_text(tree_size: int, root: str, ts: float, key_id: str) -> bytes:
    """The bytes a checkpoint signs (a note in the spirit of the C2SP signed-note checkpoint format)."""
    return f"{CHECKPOINT_ORIGIN}\n{tree_size}\n{root}\n{ts:.6f}\n{key_id}\n".encode()


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Entry ``seq`` (leaf index ``seq - 1``) is in the tree of ``tree_size`` leaves with ``root``."""

    seq: int
    tree_size: int
    leaf_hash: str
    path: tuple[str, ...]
    root: str

    def verify(self) -> bool:
        from hoplon.core.merkle import verify_inclusion

        return verify_inclusion(
            bytes.fromhex(self.leaf_hash),
            self.seq - 1,
            self.tree_size,
            [bytes.fromhex(p) for p in self.path],
            bytes.fromhex(self.root),
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """The tree of ``old_size`` leaves (``old_root``) is a prefix of the tree of ``new_size`` (``new_root``)."""

    old_size: int
    new_size: int
    old_root: str
    new_root: str
    path: tuple[str, ...]

    def verify(self) -> bool:
        from hoplon.core.merkle import verify_consistency

        return verify_consistency(
            self.old_size,
            self.new_size,
            [bytes.fromhex(p) for p in self.path],
            bytes.fromhex(self.old_root),
            bytes.fromhex(self.new_root),
        )


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing verification found wrong; ``seq`` names the first entry it concerns (0: none)."""

    seq: int
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :meth:`Ledger.verify`. ``first_bad`` is the lowest entry a problem names, if any."""

    entries: int
    checkpoints: int
    problems: tuple[Problem, ...]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> int | None:
        named = [p.seq for p in self.problems if p.seq > 0]
        return min(named) if named else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "first_bad": self.first_bad,
            "problems": [{"seq": p.seq, "kind": p.kind, "message": p.message} for p in self.problems],
            "warnings": list(self.warnings),
        }
