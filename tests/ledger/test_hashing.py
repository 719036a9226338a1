"""Leaf and chain hashes, checked against the RFC 6962 reference leaves and by hand."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sentinel.ledger.hashing import GENESIS, chain_hash, leaf_hash


def test_leaf_hash_matches_rfc6962_reference(corpus: Path) -> None:
    """Level 0 of the reference tree is the leaf hashes of the 8 reference leaves."""
    vectors = json.loads((corpus / "merkle" / "rfc6962_reference_vectors.json").read_text())
    leaves = [bytes.fromhex(h) for h in vectors["leaves_hex"]]
    level0 = vectors["node_hashes_by_level"][0]
    assert len(leaves) == len(level0) == 8
    assert [leaf_hash(d).hex() for d in leaves] == level0
    assert leaf_hash(leaves[0]).hex() == vectors["roots_by_tree_size"]["1"]


def test_leaf_and_chain_definitions() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    leaf = leaf_hash(b"x")
    assert chain_hash(GENESIS, leaf) == hashlib.sha256(b"\x02" + bytes(32) + leaf).digest()
    assert bytes(32) == GENESIS
    # domain separation: a chain value is never the interior node of the same two hashes
    assert chain_hash(GENESIS, leaf) != hashlib.sha256(b"\x01" + bytes(32) + leaf).digest()


def test_chain_hash_rejects_wrong_sizes() -> None:
    with pytest.raises(ValueError):
        chain_hash(b"short", leaf_hash(b""))
