"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, inclusion and consistency proofs.

Leaves hash as ``SHA-256(0x00 || data)`` and interior nodes as ``SHA-256(0x01 || left || right)``; the
split of ``n`` leaves is at the largest power of two below ``n`` (RFC 9162 §2.1.1). Proof generation
follows §2.1.3.1 / §2.1.4.1 and verification the algorithms of §2.1.3.2 / §2.1.4.2, so proofs made here
check with any conforming implementation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "consistency_path",
    "inclusion_path",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of *leaf hashes* (RFC 9162 §2.1.1); the empty tree hashes to ``SHA-256("")``."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Bottom-up pairing gives the same tree as the recursive split: an odd node is promoted unchanged.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def inclusion_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1 for leaf ``index`` among ``leaves`` (leaf hashes)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"Leaf index {index} is outside a tree of {n} leaves.")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_path(index, leaves[:k]), root_of(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), root_of(leaves[:k])]


def consistency_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1: the tree of the first ``m`` leaves is a prefix of ``leaves``."""
    n = len(leaves)
    if not 0 < m <= n:
        raise ValueError(f"A consistency proof needs 0 < m <= n. Got m={m}, n={n}.")
    return _subproof(m, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_of(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root_of(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root_of(leaves[:k])]


def verify_inclusion(leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove leaf hash ``leaf`` at ``index`` in the tree with ``root``?"""
    if index >= tree_size or index < 0:
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(size1: int, size2: int, path: Sequence[bytes], root1: bytes, root2: bytes) -> bool:
    """RFC 9162 §2.1.4.2: does ``path`` prove the tree (size1, root1) is a prefix of (size2, root2)?"""
    if size1 <= 0 or size1 > size2:
        return False
    if size1 == size2:
        return not path and root1 == root2
    proof = list(path)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: the old root is the first node
        proof = [root1, *proof]
    if not proof:
        return False
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0


class Frontier:
    """The compact right edge of a Merkle tree: one perfect-subtree root per set bit of ``size``.

    Appending is O(log n) and ``root()`` equals :func:`root_of` over all leaves so far, so a ledger can make
    a checkpoint without rereading its history.
    """

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if len(nodes) != bin(size).count("1"):
            raise ValueError(f"A frontier of size {size} has {bin(size).count('1')} nodes. Got {len(nodes)}.")
        self.size = size
        self.nodes = list(nodes)  # largest subtree first

    def append(self, leaf: bytes) -> None:
        node, size = leaf, self.size
        while size & 1:
            node = node_hash(self.nodes.pop(), node)
            size >>= 1
        self.nodes.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            acc = node_hash(node, acc)
        return acc

    def copy(self) -> Frontier:
        return Frontier(self.size, self.nodes)
