"""Tamper-evident ledger: RFC 8785 canonical records, RFC 6962 leaf hashes, a hash chain, an
RFC 9162 Merkle tree with stored subtree hashes, C2SP signed checkpoints kept outside the
database.

Public API: ``Ledger`` (open, append, head, size, get_cursor, iter_entries, query,
query_entries, count_by_kind, log_ids, root, inclusion_proof, consistency_proof, checkpoint,
latest_checkpoint, verify, close), ``AppendResult``, ``VerifyResult``, ``VerifyStatus``,
``InclusionProof``, ``ConsistencyProof``, ``Entry``, ``Head``, ``RecordError``,
``canonical_bytes``, ``leaf_hash``, ``chain_hash``, ``GENESIS``; checkpoints: ``Anchor``,
``SignedCheckpoint``, ``make_checkpoint``, ``anchor_from_settings``, ``ConsistencyError``;
modules ``merkle`` (RFC 9162 proofs), ``note`` (C2SP signed notes), ``checkpoint``,
``urls`` (a ``--ledger`` URL or path: ``database_url``, ``display_url``).
See DESIGN.md "Ledger".
"""

from sentinel.ledger import merkle, note
from sentinel.ledger.canonical import RecordError, canonical_bytes
from sentinel.ledger.checkpoint import (
    Anchor,
    CheckpointError,
    ConsistencyError,
    SignedCheckpoint,
    anchor_from_settings,
    make_checkpoint,
)
from sentinel.ledger.hashing import GENESIS, chain_hash, leaf_hash
from sentinel.ledger.store import (
    AppendResult,
    ConsistencyProof,
    Entry,
    Head,
    InclusionProof,
    Ledger,
    VerifyResult,
    VerifyStatus,
)

__all__ = [
    "GENESIS",
    "Anchor",
    "AppendResult",
    "CheckpointError",
    "ConsistencyError",
    "ConsistencyProof",
    "Entry",
    "Head",
    "InclusionProof",
    "Ledger",
    "RecordError",
    "SignedCheckpoint",
    "VerifyResult",
    "VerifyStatus",
    "anchor_from_settings",
    "canonical_bytes",
    "chain_hash",
    "leaf_hash",
    "make_checkpoint",
    "merkle",
    "note",
]
