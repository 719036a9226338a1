"""Tamper-evident ledger: RFC 8785 canonical records, RFC 6962 leaf hashes, a hash chain.

Public API: ``Ledger`` (open, append, head, size, get_cursor, iter_entries, query, verify,
close), ``AppendResult``, ``VerifyResult``, ``VerifyStatus``, ``Entry``, ``Head``,
``RecordError``, ``canonical_bytes``, ``leaf_hash``, ``chain_hash``, ``GENESIS``.
See DESIGN.md "Ledger"; Merkle tree and signed checkpoints follow in issue 3.
"""

from sentinel.ledger.canonical import RecordError, canonical_bytes
from sentinel.ledger.hashing import GENESIS, chain_hash, leaf_hash
from sentinel.ledger.store import (
    AppendResult,
    Entry,
    Head,
    Ledger,
    VerifyResult,
    VerifyStatus,
)

__all__ = [
    "GENESIS",
    "AppendResult",
    "Entry",
    "Head",
    "Ledger",
    "RecordError",
    "VerifyResult",
    "VerifyStatus",
    "canonical_bytes",
    "chain_hash",
    "leaf_hash",
]
