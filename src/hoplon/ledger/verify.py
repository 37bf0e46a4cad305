"""Offline verification of a ledger: the hash chain, every signed checkpoint, and consistency proofs.

Verification reads the database only; it needs no signing key. It names the first bad entry:

* an entry whose stored hash does not match its content (edited), whose ``seq`` skips (deleted), or whose
  ``prev`` does not link to the entry before it (reordered, or the entry before was rewritten);
* a checkpoint whose signature fails (swapped, forged) or whose root differs from the root recomputed from
  the entries (history rewritten with a recomputed chain): the first entry that checkpoint covers beyond the
  previous good one;
* a checkpoint that covers more entries than the ledger holds (truncated);
* a trusted checkpoint kept elsewhere (``--checkpoint``) the ledger is not consistent with.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hoplon.core import merkle
from hoplon.ledger._backends import connect, sqlite_path
from hoplon.ledger.ledger import GENESIS, read_checkpoints, read_entries, stored_public_keys
from hoplon.ledger.signing import key_id, verify_signature
from hoplon.ledger.types import Checkpoint, ConsistencyProof, Entry, Problem, VerifyResult

__all__ = ["verify_url"]


def verify_url(
    url: str, *, public_keys: Sequence[Ed25519PublicKey] = (), trusted: Sequence[Checkpoint] = ()
) -> VerifyResult:
    """Verify the ledger at ``url``. ``public_keys`` pins the checkpoint keys (else the stored ones are used)."""
    conn = connect(url, readonly=sqlite_path(url) is not None, create=False)
    try:
        entries = list(read_entries(conn))
        checkpoints = read_checkpoints(conn)
        stored = stored_public_keys(conn)
    finally:
        conn.close()
    problems: list[Problem] = []
    warnings: list[str] = []
    keys = {key_id(k): k for k in public_keys}
    if not keys:
        keys = stored
        warnings.append(
            "Checkpoint signatures were checked against the public key stored in the ledger itself; pass "
            "--public-key to pin the key you trust."
        )

    # 1. The chain, in order; everything after the first break is untrusted, so the walk stops there.
    leaves: list[bytes] = []
    prev = GENESIS
    for expected, entry in enumerate(entries, start=1):
        problem = _check_entry(entry, expected, prev)
        if problem is not None:
            problems.append(problem)
            break
        leaves.append(bytes.fromhex(entry.hash))
        prev = entry.hash

    # 2. Checkpoints: signature, then the root over the good prefix of the chain.
    frontier = merkle.Frontier()
    good_size = 0
    roots: dict[int, bytes] = {}
    for cp in checkpoints:
        first_covered = good_size + 1
        public = keys.get(cp.key_id)
        if public is None:
            problems.append(
                Problem(
                    first_covered,
                    "checkpoint",
                    f"checkpoint at size {cp.tree_size} was signed by unknown key {cp.key_id}",
                )
            )
            break
        if not verify_signature(public, cp.signed_text(), cp.signature):
            problems.append(
                Problem(
                    first_covered,
                    "checkpoint",
                    f"checkpoint at size {cp.tree_size} has a bad signature (swapped or forged)",
                )
            )
            break
        if cp.tree_size > len(entries):
            problems.append(
                Problem(
                    len(entries) + 1,
                    "truncated",
                    f"checkpoint at size {cp.tree_size} covers entries "
                    f"{len(entries) + 1}..{cp.tree_size}, which are missing (the ledger was truncated)",
                )
            )
            break
        if cp.tree_size > len(leaves):
            break  # the chain is already broken below this checkpoint; that problem is reported
        while frontier.size < cp.tree_size:
            frontier.append(leaves[frontier.size])
        root = frontier.root()
        if root.hex() != cp.root:
            problems.append(
                Problem(
                    first_covered,
                    "checkpoint",
                    f"checkpoint at size {cp.tree_size} does not match the entries: "
                    f"one of entries {first_covered}..{cp.tree_size} was rewritten",
                )
            )
            break
        roots[cp.tree_size] = root
        good_size = cp.tree_size

    # 3. Consistency between successive good checkpoints, with RFC 9162 proofs built from the leaves.
    sizes = sorted(roots)
    for old, new in itertools.pairwise(sizes):
        proof = merkle.consistency_path(old, leaves[:new])
        if not merkle.verify_consistency(old, new, proof, roots[old], roots[new]):  # pragma: no cover - invariant
            problems.append(Problem(old + 1, "consistency", f"checkpoint {new} is not an extension of {old}"))

    # 4. Trusted checkpoints kept outside the ledger (a witness): signature and consistency.
    for cp in trusted:
        public = keys.get(cp.key_id)
        if public is None or not verify_signature(public, cp.signed_text(), cp.signature):
            problems.append(Problem(0, "trusted", f"the trusted checkpoint at size {cp.tree_size} has a bad signature"))
            continue
        if cp.tree_size > len(leaves):
            problems.append(
                Problem(
                    len(leaves) + 1,
                    "truncated",
                    f"the trusted checkpoint covers {cp.tree_size} entries; the "
                    f"ledger's good chain holds {len(leaves)}",
                )
            )
            continue
        size = max(len(leaves), cp.tree_size)
        witness = ConsistencyProof(
            cp.tree_size,
            size,
            cp.root,
            merkle.root_of(leaves[:size]).hex(),
            tuple(p.hex() for p in merkle.consistency_path(cp.tree_size, leaves[:size])),
        )
        if not witness.verify():
            # Without the witnessed leaves only the range is known: one of the entries it covers changed.
            problems.append(
                Problem(
                    1,
                    "consistency",
                    f"the ledger is not consistent with the "
                    f"trusted checkpoint at size {cp.tree_size}: history was rewritten",
                )
            )

    if checkpoints and len(leaves) > checkpoints[-1].tree_size and not problems:
        warnings.append(
            f"Entries {checkpoints[-1].tree_size + 1}..{len(leaves)} are not yet covered by a signed checkpoint."
        )
    return VerifyResult(
        len(entries), len(checkpoints), tuple(sorted(problems, key=lambda p: p.seq or 1 << 62)), tuple(warnings)
    )


def _check_entry(entry: Entry, expected: int, prev: str) -> Problem | None:
    if entry.seq != expected:
        if entry.seq > expected:
            return Problem(expected, "missing", f"entries {expected}..{entry.seq - 1} are missing (deleted)")
        return Problem(expected, "order", f"entry {entry.seq} appears where entry {expected} should be")
    digest = merkle.leaf_hash(entry.data.encode()).hex()
    try:
        content = json.loads(entry.data)
    except ValueError:
        return Problem(expected, "edited", f"entry {expected} is not valid JSON")
    if digest != entry.hash:
        return Problem(expected, "edited", f"entry {expected} does not match its hash (its content was changed)")
    columns = (content.get("seq"), content.get("ts"), content.get("kind"), content.get("identity"), content.get("prev"))
    if columns != (entry.seq, entry.ts, entry.kind, entry.identity, entry.prev):
        return Problem(expected, "edited", f"entry {expected}'s columns differ from its hashed content")
    if entry.prev != prev:
        if expected > 1:
            return Problem(
                expected - 1,
                "link",
                f"entry {expected} does not link to entry {expected - 1}: entry {expected - 1} "
                "was rewritten, or entries were reordered",
            )
        return Problem(expected, "link", "entry 1 does not start the chain")
    return None
