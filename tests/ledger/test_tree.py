"""Stored Merkle subtree hashes: roots and proofs from the store match RFC 9162, both backends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sentinel.errors import LedgerError
from sentinel.ledger import Ledger, merkle
from tests.ledger.helpers import FixedClock, audit_record, raw


def _leaves(led: Ledger) -> list[bytes]:
    return [e.leaf_hash for e in led.iter_entries()]


def test_roots_and_proofs_match_an_in_memory_tree(ledger_url: str) -> None:
    with Ledger.open(ledger_url, clock=FixedClock()) as led:
        assert led.root() == merkle.EMPTY_ROOT
        # uneven batches so that nodes complete across append calls
        start = 0
        for n in (1, 2, 5, 1, 13, 8, 3, 31):
            led.append([audit_record(i) for i in range(start, start + n)])
            start += n
        leaves = _leaves(led)
        size = len(leaves)
        assert size == start == 64
        tree = merkle.MemoryTree(leaves)
        for n in range(0, size + 1):
            assert led.root(n) == merkle.root(n, tree), n
        for seq in (0, 1, 17, 31, 32, 63):
            for n in (seq + 1, 33, size):
                if seq >= n:
                    continue
                proof = led.inclusion_proof(seq, n)
                assert list(proof.path) == merkle.inclusion_path(seq, n, tree)
                merkle.verify_inclusion(seq, n, proof.leaf_hash, list(proof.path), proof.root)
                assert proof.root == led.root(n)
        for old in (1, 2, 3, 7, 8, 33, 63, 64):
            for new in (old, 40, 64):
                if new < old:
                    continue
                cp = led.consistency_proof(old, new)
                assert list(cp.path) == merkle.consistency_path(old, new, tree)
                merkle.verify_consistency(old, new, cp.old_root, cp.new_root, list(cp.path))
        assert led.consistency_proof(5).new == size


def test_every_complete_node_is_stored_once(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as led:
        for start in range(0, 23, 4):
            led.append([audit_record(i) for i in range(start, start + 4)])
        size = led.size()
        assert size == 24
    with raw(ledger_url) as conn:
        rows = conn.execute(sa.text("SELECT level, idx FROM ledger_tree")).all()
    want = {(lv, ix) for n in range(size) for lv, ix in merkle.completed_nodes(n)}
    assert sorted(rows) == sorted(want)  # 12 + 6 + 3 + 1 nodes, no duplicate


def test_proof_reads_are_logarithmic(ledger_url: str) -> None:
    """A proof reads O(log n) nodes: the planned node set never grows with the log."""
    for n in (1000, 1 << 20, (1 << 40) + 12345):
        assert len(merkle.needed_for_root(n)) <= n.bit_length()
        assert len(merkle.needed_for_inclusion(n // 3, n)) <= 2 * n.bit_length()
        assert len(merkle.needed_for_consistency(n // 3, n)) <= 2 * n.bit_length()


def test_bad_arguments(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as led:
        led.append([audit_record(i) for i in range(3)])
        with pytest.raises(ValueError, match="tree size"):
            led.root(4)
        with pytest.raises(ValueError, match="not in a tree"):
            led.inclusion_proof(3)
        with pytest.raises(ValueError, match="consistency"):
            led.consistency_proof(0)
        with pytest.raises(ValueError, match="tree size"):
            led.consistency_proof(1, 9)


def test_missing_node_is_a_loud_error(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as led:
        led.append([audit_record(i) for i in range(8)])
    with raw(ledger_url) as conn:
        conn.execute(sa.text("DELETE FROM ledger_tree WHERE level = 3"))
    with Ledger.open(ledger_url) as led:
        with pytest.raises(LedgerError, match=r"node \(level 3, index 0\) is missing"):
            led.root()
        with pytest.raises(LedgerError, match="missing"):
            led.append([audit_record(8)])  # the frontier is gone: no append on a broken tree
        result = led.verify()
        assert result.status == "invalid" and result.first_bad_seq == 7, result
        assert result.problem is not None and "(level 3, index 0)" in result.problem


@pytest.mark.parametrize("batch", [1, 3, 4, 7, 64, 8192])
def test_verify_batches_checkpoints_and_high_nodes(
    batch: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Any batch size, checkpoints at unaligned sizes, and a damaged node above the batch."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sentinel.ledger.checkpoint import Anchor, CheckpointLog
    from sentinel.ledger.note import Signer

    base = tmp_path_factory.mktemp(f"b{batch}")
    signer = Signer("sentinel/sentinel", Ed25519PrivateKey.generate())
    anchor = Anchor(CheckpointLog(base / "cp", "sentinel"), (signer.verifier,), signer.name)
    url = f"sqlite:///{base / 'l.db'}"
    with Ledger.open(url, anchor=anchor) as led:
        start = 0
        for n in (5, 8, 17, 7):
            led.append([audit_record(i) for i in range(start, start + n)])
            start += n
            led.checkpoint(signer)
        result = led.verify(batch=batch)
        assert (result.status, result.checkpoints_checked) == ("valid", 4), result
        assert result.root == led.root().hex()
    with raw(url) as conn:
        conn.execute(
            sa.text("UPDATE ledger_tree SET hash = :h WHERE level = 4 AND idx = 1"),
            {"h": b"\x04" * 32},
        )
    with Ledger.open(url, anchor=anchor) as led:
        result = led.verify(batch=batch)
    assert (result.status, result.first_bad_seq) == ("invalid", 31), result
    assert result.problem is not None and "(level 4, index 1)" in result.problem
