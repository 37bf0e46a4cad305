"""hoplon's tamper-evident ledger: a hash chain with signed RFC 9162 Merkle checkpoints.

``Ledger.open("sqlite:///audit.db")`` (or ``postgresql://…``), ``append(record) -> Entry``,
``checkpoint()``, ``inclusion_proof(seq)``, ``consistency_proof(old, new)`` and ``verify()``. The gateway's
audit records, registry events and dataset fingerprints all go into one ledger.
"""

from hoplon.core.merkle import leaf_hash, node_hash, root_of, verify_consistency, verify_inclusion
from hoplon.ledger.ledger import GENESIS, Ledger, LedgerError
from hoplon.ledger.signing import load_public_key
from hoplon.ledger.types import Checkpoint, ConsistencyProof, Entry, InclusionProof, Problem, VerifyResult
from hoplon.ledger.verify import verify_url

__all__ = [
    "GENESIS",
    "Checkpoint",
    "ConsistencyProof",
    "Entry",
    "InclusionProof",
    "Ledger",
    "LedgerError",
    "Problem",
    "VerifyResult",
    "leaf_hash",
    "load_public_key",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
    "verify_url",
]
