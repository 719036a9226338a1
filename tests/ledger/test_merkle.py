"""RFC 9162 Merkle tree: reference roots and proofs, transparency-dev accept/reject probes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from sentinel.ledger import merkle
from sentinel.ledger.hashing import leaf_hash


def _load(corpus: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((corpus / "merkle" / name).read_text())
    return data


@pytest.fixture(scope="module")
def ref(corpus: Path) -> dict[str, Any]:
    return _load(corpus, "rfc6962_reference_vectors.json")


def _tree(ref: dict[str, Any], size: int) -> merkle.MemoryTree:
    leaves = [leaf_hash(bytes.fromhex(h)) for h in ref["leaves_hex"][:size]]
    return merkle.MemoryTree(leaves)


def test_reference_roots(ref: dict[str, Any]) -> None:
    assert len(ref["roots_by_tree_size"]) == 9
    for size, want in ref["roots_by_tree_size"].items():
        assert merkle.root(int(size), _tree(ref, int(size))).hex() == want


def test_reference_node_hashes(ref: dict[str, Any]) -> None:
    tree = _tree(ref, 8)
    for level, nodes in enumerate(ref["node_hashes_by_level"]):
        for index, want in enumerate(nodes):
            assert tree(level, index).hex() == want


@pytest.mark.parametrize("key", ["published_inclusion_proofs", "derived_all_inclusion_proofs"])
def test_reference_inclusion(ref: dict[str, Any], key: str) -> None:
    cases = ref[key]
    assert cases
    for case in cases:
        idx, size = case["leaf_index"], case["tree_size"]
        proof = merkle.inclusion_path(idx, size, _tree(ref, size))
        assert [p.hex() for p in proof] == case["proof"], case
        merkle.verify_inclusion(
            idx, size, bytes.fromhex(case["leaf_hash"]), proof, bytes.fromhex(case["root"])
        )
        assert len(merkle.needed_for_inclusion(idx, size)) >= len(proof)


@pytest.mark.parametrize("key", ["published_consistency_proofs", "derived_all_consistency_proofs"])
def test_reference_consistency(ref: dict[str, Any], key: str) -> None:
    cases = ref[key]
    assert cases
    for case in cases:
        old, new = case["size1"], case["size2"]
        proof = merkle.consistency_path(old, new, _tree(ref, new))
        assert [p.hex() for p in proof] == case["proof"], case
        merkle.verify_consistency(
            old, new, bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"]), proof
        )


def _b64(value: str | None) -> bytes:
    return b"" if value is None else base64.b64decode(value)


def test_transparency_dev_probes(corpus: Path) -> None:
    probes = _load(corpus, "transparency-dev-merkle-probes.json")
    results = {"accepted": 0, "rejected": 0}
    for case in probes["inclusion"]:
        proof = [_b64(p) for p in case["proof"] or []]
        try:
            merkle.verify_inclusion(
                case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"])
            )
        except merkle.ProofError:
            assert case["wantErr"], case
            results["rejected"] += 1
        else:
            assert not case["wantErr"], case
            results["accepted"] += 1
    for case in probes["consistency"]:
        proof = [_b64(p) for p in case["proof"] or []]
        try:
            merkle.verify_consistency(
                case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), proof
            )
        except merkle.ProofError:
            assert case["wantErr"], case
            results["rejected"] += 1
        else:
            assert not case["wantErr"], case
            results["accepted"] += 1
    assert sum(results.values()) == 196
    assert results["accepted"] > 0 and results["rejected"] > 0


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64, 100, 257])
def test_large_trees_round_trip(size: int) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = merkle.MemoryTree(leaves)
    r = merkle.root(size, tree)
    assert len(merkle.needed_for_root(size)) == bin(size).count("1")
    for idx in range(0, size, max(1, size // 7)):
        merkle.verify_inclusion(idx, size, leaves[idx], merkle.inclusion_path(idx, size, tree), r)
    for old in range(1, size + 1, max(1, size // 5)):
        old_root = merkle.root(old, merkle.MemoryTree(leaves[:old]))
        proof = merkle.consistency_path(old, size, tree)
        merkle.verify_consistency(old, size, old_root, r, proof)
        if proof:
            bad = [bytes(32), *proof[1:]]
            with pytest.raises(merkle.ProofError):
                merkle.verify_consistency(old, size, old_root, r, bad)


def test_completed_nodes_and_frontier() -> None:
    assert merkle.completed_nodes(0) == []
    assert merkle.completed_nodes(1) == [(1, 0)]
    assert merkle.completed_nodes(7) == [(1, 3), (2, 1), (3, 0)]
    assert merkle.frontier(13) == [(3, 0), (2, 2), (0, 12)]
    assert merkle.frontier(0) == []
