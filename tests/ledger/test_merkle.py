"""RFC 9162 hashing and proofs against a slow oracle written straight from the RFC's definitions."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from hoplon.core import merkle


def _mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1, recursively, over raw leaf *data*."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _data(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


def test_known_vector_empty_tree() -> None:
    # RFC 6962/9162 test vector: the empty tree's root is SHA-256 of the empty string.
    assert merkle.root_of([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_leaf_and_node_prefixes() -> None:
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert merkle.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


def test_root_and_frontier_match_the_oracle_for_sizes_up_to_70() -> None:
    frontier = merkle.Frontier()
    data = _data(70)
    for n in range(71):
        hashes = [merkle.leaf_hash(d) for d in data[:n]]
        assert merkle.root_of(hashes) == _mth(data[:n])
        assert frontier.root() == _mth(data[:n])
        if n < 70:
            frontier.append(merkle.leaf_hash(data[n]))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 130).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_verify_and_reject_wrong_leaves(case: tuple[int, int]) -> None:
    n, index = case
    leaves = [merkle.leaf_hash(d) for d in _data(n)]
    root = merkle.root_of(leaves)
    path = merkle.inclusion_path(index, leaves)
    assert merkle.verify_inclusion(leaves[index], index, n, path, root)
    assert not merkle.verify_inclusion(merkle.leaf_hash(b"other"), index, n, path, root)
    if n > 1:
        assert not merkle.verify_inclusion(leaves[index], (index + 1) % n, n, path, root)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 130).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_proofs_verify_and_reject_rewritten_history(case: tuple[int, int]) -> None:
    m, n = case
    leaves = [merkle.leaf_hash(d) for d in _data(n)]
    old_root, new_root = merkle.root_of(leaves[:m]), merkle.root_of(leaves)
    path = merkle.consistency_path(m, leaves)
    assert merkle.verify_consistency(m, n, path, old_root, new_root)
    forged = [*leaves]
    forged[m - 1] = merkle.leaf_hash(b"rewritten")
    assert not merkle.verify_consistency(m, n, merkle.consistency_path(m, forged), old_root, merkle.root_of(forged))


def test_rfc_style_consistency_proof_lengths() -> None:
    # RFC 9162 §2.1.4.2's example tree of 7 leaves: PROOF(3, D[7]) = [c, d, g, l] has four nodes.
    leaves = [merkle.leaf_hash(d) for d in _data(7)]
    assert len(merkle.consistency_path(3, leaves)) == 4
    assert len(merkle.consistency_path(4, leaves)) == 1
    assert len(merkle.consistency_path(6, leaves)) == 3
