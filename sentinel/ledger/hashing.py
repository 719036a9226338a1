"""Leaf and chain hashes of the ledger (pure functions, no I/O).

* ``leaf_hash(data) = SHA-256(0x00 ‖ data)`` — the RFC 6962 §2.1 / RFC 9162 §2.1.1 Merkle leaf
  hash, so the Merkle tree of issue 3 is built over exactly these values.
* ``chain_hash(prev, leaf) = SHA-256(0x02 ‖ prev ‖ leaf)`` — Sentinel's hash chain. The prefix
  ``0x02`` is distinct from RFC 6962's leaf (``0x00``) and interior-node (``0x01``) prefixes, so
  a chain value can never be confused with a Merkle node (domain separation).
* The first record's ``prev`` is ``GENESIS``: 32 zero bytes.

All hashes are raw 32-byte SHA-256 digests (FIPS 180-4).
"""

from __future__ import annotations

import hashlib

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
#: RFC 6962 interior-node prefix, reserved for the Merkle tree (issue 3)
NODE_PREFIX = b"\x01"
CHAIN_PREFIX = b"\x02"
#: ``prev`` of the record at sequence number 0
GENESIS = bytes(HASH_SIZE)


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 ‖ data)``: 32 bytes (RFC 9162 §2.1.1 leaf hash of ``data``)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def chain_hash(prev: bytes, leaf: bytes) -> bytes:
    """``SHA-256(0x02 ‖ prev ‖ leaf)``: 32 bytes. Raises ``ValueError`` on a wrong-sized input."""
    if len(prev) != HASH_SIZE or len(leaf) != HASH_SIZE:
        raise ValueError("chain_hash takes two 32-byte SHA-256 digests")
    return hashlib.sha256(CHAIN_PREFIX + prev + leaf).digest()
