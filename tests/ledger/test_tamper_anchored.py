"""Tampering against a ledger pinned by signed checkpoints in an external log, both backends.

Each test builds 12 records with checkpoints at sizes 4, 8 and 12 (so ``verify`` says
``valid``), changes the database behind Sentinel's back with plain SQL, and checks the status
and the first bad sequence number. Tail truncation and rollback to an older backup are caught
only through the external checkpoint log.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.ledger import Ledger, VerifyResult
from sentinel.ledger.checkpoint import Anchor, CheckpointLog
from sentinel.ledger.note import Signer
from tests.ledger.helpers import FixedClock, audit_record, raw, rewrite_from, row, update

N = 12
TABLES = ("ledger_entries", "ledger_tree", "ledger_dedup", "ledger_cursors", "ledger_checkpoints")
ORIGIN = "sentinel/sentinel"
SIGNER = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


@pytest.fixture
def anchor(tmp_path: Path) -> Anchor:
    return Anchor(CheckpointLog(tmp_path / "anchor", "sentinel"), (SIGNER.verifier,), ORIGIN)


def _build(url: str, anchor: Anchor, n: int = N) -> None:
    with Ledger.open(url, clock=FixedClock(), anchor=anchor) as led:
        for start in range(0, n, 4):
            led.append([audit_record(i) for i in range(start, start + 4)])
            led.checkpoint(SIGNER)
        assert led.verify().status == "valid"


@pytest.fixture
def url(ledger_url: str, anchor: Anchor) -> str:
    _build(ledger_url, anchor)
    return ledger_url


def verify(url: str, anchor: Anchor) -> VerifyResult:
    """One range, and ranges of 4 and 8 records stitched together: the same outcome, with the
    compiled accelerator (SQLite) and with the reference implementation alone."""
    with Ledger.open(url, anchor=anchor) as led:
        whole = led.verify(batch=5, workers=1)
        for span in (4, 8):
            for accelerated in (True, False):
                ranged = led.verify(batch=5, workers=1, range_size=span, accelerated=accelerated)
                assert _outcome(ranged) == _outcome(whole), (span, accelerated)
        return whole


def _outcome(r: VerifyResult) -> tuple[object, ...]:
    # (an invalid result names the checkpoints read so far: how far depends on the cut)
    return (r.status, r.first_bad_seq, r.problem, r.root, r.checkpoint_size if r.ok else None)


def assert_invalid(result: VerifyResult, seq: int | None, problem: str) -> None:
    assert result.status == "invalid", result
    assert result.first_bad_seq == seq, result
    assert result.problem is not None and problem in result.problem, result


def _snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    with raw(url) as conn:
        return {
            t: [dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {t}")).mappings()]
            for t in TABLES
        }


def _restore(url: str, snap: dict[str, list[dict[str, Any]]]) -> None:
    """Restore an older backup: every ledger table back to the snapshot's rows."""
    with raw(url) as conn:
        for table, rows in snap.items():
            conn.execute(sa.text(f"DELETE FROM {table}"))
            if rows:
                cols = list(rows[0])
                conn.execute(
                    sa.text(
                        f"INSERT INTO {table} ({', '.join(cols)}) "
                        f"VALUES ({', '.join(':' + c for c in cols)})"
                    ),
                    rows,
                )


def test_modification(url: str, anchor: Anchor) -> None:
    body = row(url, 6)["body"].replace(b'"action":"pull"', b'"action":"PULL"')
    update(url, 6, body=body)
    assert_invalid(verify(url, anchor), 6, "leaf_hash")


def test_modification_with_every_hash_recomputed(url: str, anchor: Anchor) -> None:
    """A self-consistent rewrite from record 9: only the signed checkpoints can tell."""
    rewrite_from(url, 9)
    with Ledger.open(url) as led:  # the database alone looks fine
        assert led.verify().status == "valid"
    assert_invalid(verify(url, anchor), 8, "differ from the signed checkpoint of size 12")


def test_deletion(url: str, anchor: Anchor) -> None:
    with raw(url) as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq = 3"))
    assert_invalid(verify(url, anchor), 3, "record 3 is missing")


def test_insertion(url: str, anchor: Anchor) -> None:
    with raw(url) as conn:
        for seq in range(N - 1, 4, -1):
            conn.execute(
                sa.text("UPDATE ledger_entries SET seq = :n WHERE seq = :s"),
                {"n": seq + 1, "s": seq},
            )
    r = row(url, 4)
    with raw(url) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ledger_entries (log_id, seq, recorded_at, kind, body, leaf_hash, "
                "prev_hash, chain_hash) VALUES ('sentinel', 5, :r, :k, :b, :l, :p, :c)"
            ),
            {
                "r": r["recorded_at"],
                "k": r["kind"],
                "b": r["body"],
                "l": r["leaf_hash"],
                "p": b"\x09" * 32,
                "c": r["chain_hash"],
            },
        )
    assert_invalid(verify(url, anchor), 5, "moved")


def test_reordering(url: str, anchor: Anchor) -> None:
    a, b = row(url, 1), row(url, 10)
    cols = ("body", "leaf_hash", "prev_hash", "chain_hash", "recorded_at", "kind")
    update(url, 1, prev_hash=b"\x03" * 32)
    update(url, 10, **{c: a[c] for c in cols})
    update(url, 1, **{c: b[c] for c in cols})
    assert_invalid(verify(url, anchor), 1, "moved")


def test_tail_truncation(url: str, anchor: Anchor) -> None:
    with raw(url) as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq >= 9"))
        conn.execute(sa.text("DELETE FROM ledger_tree WHERE level > 0"))  # and hide the tree
    with Ledger.open(url) as led:  # without the anchor, only the missing tree shows
        assert led.verify().status == "invalid"
    assert_invalid(verify(url, anchor), 1, "Merkle node (level 1, index 0)")


def test_tail_truncation_with_tree_trimmed(url: str, anchor: Anchor) -> None:
    """The attacker deletes the tail rows and exactly the tree nodes that covered them."""
    with raw(url) as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq >= 9"))
        conn.execute(sa.text("DELETE FROM ledger_tree WHERE ((idx + 1) * power(2, level)) > 9"))
    with Ledger.open(url) as led:
        assert led.verify().status == "valid"  # the database alone cannot tell
    assert_invalid(verify(url, anchor), 9, "tail truncated or rolled back")


def test_rollback_to_older_backup(url: str, anchor: Anchor, ledger_url: str) -> None:
    # a second ledger state: back up at 8 records, grow to 16, restore the backup
    _restore(url, _snapshot_at(url, 8))
    assert_invalid(verify(url, anchor), 8, "signed 12")


def test_rollback_then_new_records(url: str, anchor: Anchor) -> None:
    """Restore the size-8 backup and append 6 new records: size 14 > 12, but the records
    differ from what the size-12 checkpoint signed, and signing is refused."""
    _restore(url, _snapshot_at(url, 8))
    with Ledger.open(url, anchor=anchor) as led:
        led.append([audit_record(100 + i) for i in range(6)])
        result = led.verify()
        assert_invalid(result, 8, "differ from the signed checkpoint of size 12")
        from sentinel.ledger.checkpoint import ConsistencyError

        with pytest.raises(ConsistencyError):
            led.checkpoint(SIGNER)


def test_tree_node_modified(url: str, anchor: Anchor) -> None:
    with raw(url) as conn:
        conn.execute(
            sa.text("UPDATE ledger_tree SET hash = :h WHERE level = 2 AND idx = 1"),
            {"h": b"\x02" * 32},
        )
    assert_invalid(verify(url, anchor), 7, "(level 2, index 1) over records 4..7 is wrong")


def _snapshot_at(url: str, size: int) -> dict[str, list[dict[str, Any]]]:
    """What a backup taken when the ledger held ``size`` records contained."""
    snap = _snapshot(url)
    snap["ledger_entries"] = [r for r in snap["ledger_entries"] if r["seq"] < size]
    snap["ledger_tree"] = [r for r in snap["ledger_tree"] if ((r["idx"] + 1) << r["level"]) <= size]
    snap["ledger_checkpoints"] = [r for r in snap["ledger_checkpoints"] if r["size"] <= size]
    return snap


# -- property: any single-row tampering is detected at that row (SQLite, anchored) ---------

COLUMNS = ("body", "leaf_hash", "prev_hash", "chain_hash", "kind", "recorded_at", "delete")


@pytest.fixture(scope="module")
def anchored_sqlite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Anchor]:
    base = tmp_path_factory.mktemp("prop")
    anchor = Anchor(CheckpointLog(base / "anchor", "sentinel"), (SIGNER.verifier,), ORIGIN)
    _build(f"sqlite:///{base / 'ledger.db'}", anchor, 24)
    return base / "ledger.db", anchor


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_single_row_tampering_detected(
    anchored_sqlite: tuple[Path, Anchor], data: st.DataObject
) -> None:
    path, anchor = anchored_sqlite
    seq = data.draw(st.integers(0, 23), label="seq")
    column = data.draw(st.sampled_from(COLUMNS), label="column")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        original = conn.execute("SELECT * FROM ledger_entries WHERE seq = ?", (seq,)).fetchone()
        if column == "delete":
            conn.execute("DELETE FROM ledger_entries WHERE seq = ?", (seq,))
        else:
            (value,) = conn.execute(
                f"SELECT {column} FROM ledger_entries WHERE seq = ?",
                (seq,),
            ).fetchone()
            raw_value = value.encode() if isinstance(value, str) else bytes(value)
            pos = data.draw(st.integers(0, len(raw_value) - 1), label="pos")
            bad = bytearray(raw_value)
            bad[pos] ^= data.draw(st.integers(1, 127), label="xor")
            new: Any = bytes(bad) if isinstance(value, bytes) else bytes(bad).decode("latin-1")
            conn.execute(
                f"UPDATE ledger_entries SET {column} = ? WHERE seq = ?",
                (new, seq),
            )
        conn.execute("COMMIT")
        try:
            result = verify(f"sqlite:///{path}", anchor)
        finally:
            conn.execute("BEGIN")
            conn.execute("DELETE FROM ledger_entries WHERE seq = ?", (seq,))
            conn.execute(
                f"INSERT INTO ledger_entries VALUES ({', '.join('?' * len(original))})",
                original,
            )
            conn.execute("COMMIT")
    finally:
        conn.close()
    assert result.status == "invalid", (column, result)
    if column == "delete" and seq == 23:  # the tail: caught by the checkpoint of size 24
        assert result.first_bad_seq == 23 and "truncated" in (result.problem or "")
    else:
        assert result.first_bad_seq == seq, (column, result)
