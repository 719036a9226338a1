"""Tampering with the stored rows is detected, and the first bad sequence number is named.

Every test builds a 10-record ledger, changes the database behind Sentinel's back with plain
SQL (as an attacker with database access would), and runs ``verify``. Tail truncation and
rollback to an older copy need signed checkpoints outside the database (issue 3).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.errors import LedgerError
from sentinel.ledger import Ledger, VerifyResult, chain_hash, leaf_hash
from sentinel.ledger.canonical import canonical_bytes
from tests.ledger.helpers import FixedClock, audit_record, raw, row, update

N = 10


@pytest.fixture
def url(ledger_url: str) -> str:
    with Ledger.open(ledger_url, clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(6)])
        led.append([audit_record(i) for i in range(6, N)])
        assert led.verify().ok
    return ledger_url


def verify(url: str) -> VerifyResult:
    """``verify`` as one range, and cut into ranges of 2 and 4 records (stitched in this
    process, as the worker pool's results are): the outcome must not depend on the cut, nor
    on whether the compiled accelerator (SQLite) or the reference alone checked the ranges."""
    with Ledger.open(url) as led:
        whole = led.verify(batch=3, workers=1)
        for span in (2, 4):
            for accelerated in (True, False):
                ranged = led.verify(batch=3, workers=1, range_size=span, accelerated=accelerated)
                assert _outcome(ranged) == _outcome(whole), (span, accelerated)
        return whole


def _outcome(r: VerifyResult) -> tuple[object, ...]:
    return (r.status, r.first_bad_seq, r.problem, r.records_checked, r.root)


def assert_invalid(result: VerifyResult, seq: int, problem: str) -> None:
    assert result.status == "invalid", result
    assert result.first_bad_seq == seq, result
    assert result.problem is not None and problem in result.problem, result
    assert result.records_checked == seq


def test_modified_body_byte(url: str) -> None:
    body = bytearray(row(url, 4)["body"])
    body[body.index(b"pull")] = ord("P")
    update(url, 4, body=bytes(body))
    assert_invalid(verify(url), 4, "leaf_hash")


def test_modified_body_with_recomputed_hashes(url: str) -> None:
    """An attacker who recomputes the row's own hashes still breaks the link to the next row."""
    r = row(url, 4)
    body = r["body"].replace(b'"action":"pull"', b'"action":"push"')
    leaf = leaf_hash(body)
    update(url, 4, body=body, leaf_hash=leaf, chain_hash=chain_hash(r["prev_hash"], leaf))
    assert_invalid(verify(url), 5, "prev_hash")


@pytest.mark.parametrize(
    ("column", "problem"),
    [
        ("leaf_hash", "leaf_hash"),
        ("prev_hash", "prev_hash"),
        ("chain_hash", "chain_hash"),
    ],
)
def test_modified_stored_hash(url: str, column: str, problem: str) -> None:
    update(url, 7, **{column: b"\x07" * 32})
    assert_invalid(verify(url), 7, problem)


def test_non_canonical_body_with_its_leaf_hash(url: str) -> None:
    """The same JSON, not in canonical form (a space), with a matching leaf_hash: the tail
    check flags it and the slow check names it (it used to crash in ``chain_hash``)."""
    body = row(url, 3)["body"].replace(b'{"data":{', b'{"data": {', 1)
    update(url, 3, body=body, leaf_hash=leaf_hash(body))
    assert_invalid(verify(url), 3, "canonical form")


def test_modified_kind_column(url: str) -> None:
    update(url, 2, kind="egress_violation")
    assert_invalid(verify(url), 2, "columns differ")


def test_deleted_middle_row(url: str) -> None:
    with raw(url) as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq = 5"))
    assert_invalid(verify(url), 5, "record 5 is missing")


def test_deleted_first_rows(url: str) -> None:
    with raw(url) as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq < 2"))
    assert_invalid(verify(url), 0, "record 0 is missing")


def _shift_up_from(url: str, start: int) -> None:
    with raw(url) as conn:
        for seq in range(N - 1, start - 1, -1):
            conn.execute(
                sa.text("UPDATE ledger_entries SET seq = :n WHERE seq = :s"),
                {"n": seq + 1, "s": seq},
            )


def test_inserted_forged_row_renumbering(url: str) -> None:
    """Rows 4.. are renumbered to make room for a forged record at 4."""
    _shift_up_from(url, 4)
    prev = row(url, 3)["chain_hash"]
    forged = {
        "v": 1,
        "log": "sentinel",
        "seq": 4,
        "kind": "audit_event",
        "recorded_at": "2026-03-01T12:00:00.123456Z",
        "data": audit_record(77)["data"],
    }
    body = canonical_bytes(forged)
    leaf = leaf_hash(body)
    values = {
        "log_id": "sentinel",
        "seq": 4,
        "recorded_at": forged["recorded_at"],
        "kind": "audit_event",
        "body": body,
        "leaf_hash": leaf,
        "prev_hash": prev,
        "chain_hash": chain_hash(prev, leaf),
    }
    insert = sa.text(
        "INSERT INTO ledger_entries (log_id, seq, recorded_at, kind, body, leaf_hash, "
        "prev_hash, chain_hash) VALUES (:log_id, :seq, :recorded_at, :kind, :body, "
        ":leaf_hash, :prev_hash, :chain_hash)"
    )
    # a perfectly forged row collides with the real successor on UNIQUE (log_id, prev_hash)
    with pytest.raises(sa.exc.IntegrityError), raw(url) as conn:
        conn.execute(insert, values)
    # so the forger must break the link somewhere; verify names the forged row
    with raw(url) as conn:
        conn.execute(insert, {**values, "prev_hash": os.urandom(32)})
    assert_invalid(verify(url), 4, "prev_hash")


def test_inserted_row_detected_by_embedded_seq(url: str) -> None:
    """Even a forged row that links perfectly leaves the renumbered successor out of place."""
    _shift_up_from(url, 4)
    prev = row(url, 3)["chain_hash"]
    original_4 = row(url, 5)
    # copy the real row 4 back into position 4 except for data: same prev, valid hashes
    forged_body = original_4["body"].replace(b'"req-4"', b'"req-X"')
    leaf = leaf_hash(forged_body)
    # rewrite the successor's prev_hash out of the way of the unique constraint first
    update(url, 5, prev_hash=b"\x01" * 32)
    with raw(url) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ledger_entries (log_id, seq, recorded_at, kind, body, leaf_hash, "
                "prev_hash, chain_hash) VALUES ('sentinel', 4, :r, 'audit_event', :b, :l, :p, :c)"
            ),
            {
                "r": original_4["recorded_at"],
                "b": forged_body,
                "l": leaf,
                "p": prev,
                "c": chain_hash(prev, leaf),
            },
        )
    # row 4 is locally indistinguishable from a genuine record; row 5 carries body seq 4
    assert_invalid(verify(url), 5, "moved")


def test_swapped_bodies(url: str) -> None:
    a, b = row(url, 2), row(url, 6)
    update(url, 2, body=b["body"])
    update(url, 6, body=a["body"])
    assert_invalid(verify(url), 2, "leaf_hash")


def test_reordered_rows_with_their_hashes(url: str) -> None:
    """Moving whole rows (body and hashes) is caught by the seq embedded in the body."""
    a, b = row(url, 2), row(url, 6)
    cols = ("body", "leaf_hash", "prev_hash", "chain_hash", "recorded_at", "kind")
    update(url, 2, prev_hash=b"\x03" * 32)  # keep UNIQUE (log_id, prev_hash) satisfied
    update(url, 6, **{c: a[c] for c in cols})
    update(url, 2, **{c: b[c] for c in cols})
    assert_invalid(verify(url), 2, "moved")


def test_row_moved_from_another_log(url: str) -> None:
    with Ledger.open(url, log_id="other", clock=FixedClock()) as other:
        other.append([audit_record(i) for i in range(N)])
    stranger = row(url, 3, log_id="other")
    update(url, 3, body=stranger["body"], leaf_hash=stranger["leaf_hash"])
    assert_invalid(verify(url), 3, "belongs to log 'other'")


def test_row_with_negative_seq(url: str) -> None:
    r = row(url, 0)
    with raw(url) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ledger_entries (log_id, seq, recorded_at, kind, body, leaf_hash, "
                "prev_hash, chain_hash) VALUES ('sentinel', -1, :r, 'x', :b, :l, :p, :c)"
            ),
            {
                "r": r["recorded_at"],
                "b": b"{}",
                "l": r["leaf_hash"],
                "p": b"\x05" * 32,
                "c": r["chain_hash"],
            },
        )
    result = verify(url)
    assert result.status == "invalid"
    assert result.first_bad_seq == -1
    assert result.problem == "unexpected record -1 before 0"
    assert result.records_checked == 0  # not -1: nothing was checked before it


@pytest.mark.parametrize(
    ("level", "idx", "problem"),
    [
        (1, 5, "(level 1, index 5) over records 10..11 is beyond the log's size (10 records)"),
        (2, 2, "(level 2, index 2) over records 8..11 is beyond"),
        (4, 0, "(level 4, index 0) over records 0..15 is beyond"),
        (40, 0, "(level 40, index 0) over records 0..1099511627775 is beyond"),
        (0, 3, "(level 0, index 3) cannot exist"),  # leaves are not stored in the tree
        (1, -1, "(level 1, index -1) cannot exist"),
    ],
)
def test_extra_tree_node_beyond_the_size(url: str, level: int, idx: int, problem: str) -> None:
    """A node no tree of the log's size has is a modification (or a tail deleted with its
    tree left behind): invalid at the size, whichever verifier, however cut."""
    with raw(url) as conn:
        conn.execute(
            sa.text("INSERT INTO ledger_tree VALUES ('sentinel', :lv, :ix, :h)"),
            {"lv": level, "ix": idx, "h": b"\x09" * 32},
        )
    assert_invalid(verify(url), N, problem)
    with Ledger.open(url) as led:
        assert_invalid(led.verify(batch=2, workers=2, range_size=4), N, problem)


def test_tail_deleted_with_its_tree_left_is_invalid_without_an_anchor(url: str) -> None:
    with raw(url) as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq >= 7"))
    assert_invalid(verify(url), 7, "(level 1, index 3) over records 6..7 is beyond")


def _edited_sqlite_ledger(
    tmp_path: Path, edit: str, query: str | None = None
) -> tuple[str, object]:
    """A SQLite ledger of ``N`` records, edited by hand with ``edit`` in the sqlite3 module (as
    an attacker with the file would); returns its URL and the first value ``query`` (run after
    the edit) gives, or ``None``."""
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    with Ledger.open(url, clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(N)])
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(edit)
        value = conn.execute(query).fetchone()[0] if query is not None else None
    finally:
        conn.close()
    return url, value


@pytest.mark.parametrize(
    ("edit", "bad", "problem"),
    [
        # TEXT and BLOB sort after every number in SQLite: head() used to pick them and crash
        ("UPDATE ledger_entries SET seq = '5x' WHERE seq = 5", 5, "record 5 is missing"),
        ("UPDATE ledger_entries SET seq = X'00' WHERE seq = 9", 9, "non-integer sequence"),
        ("UPDATE ledger_entries SET seq = 'abc' WHERE seq = 0", 0, "record 0 is missing"),
        # an extra row that leaves every numbered one in place: flagged after the last
        (
            "INSERT INTO ledger_entries SELECT log_id, 'z', recorded_at, kind, body, leaf_hash, "
            "X'01', chain_hash FROM ledger_entries WHERE seq = 3",
            N,
            "non-integer sequence number ('z')",
        ),
        # a REAL sorts among the numbers
        ("UPDATE ledger_entries SET seq = 4.5 WHERE seq = 9", 5, "(4.5) is stored where record 5"),
        ("UPDATE ledger_entries SET seq = 4.5 WHERE seq = 4", 4, "(4.5) is stored where record 4"),
        # a REAL at the head: the size counts it (floored), head() refuses it
        ("UPDATE ledger_entries SET seq = 9.5 WHERE seq = 9", 9, "(9.5) is stored where record 9"),
    ],
)
def test_sqlite_non_integer_seq_is_a_finding_not_a_crash(
    tmp_path: Path, edit: str, bad: int, problem: str
) -> None:
    url, _ = _edited_sqlite_ledger(tmp_path, edit)
    assert_invalid(verify(url), bad, problem)  # every cut, C first and the reference alone
    with Ledger.open(url) as led:
        pooled = led.verify(batch=2, workers=2, range_size=4)
    assert_invalid(pooled, bad, problem)
    if "4.5" not in edit:  # the head itself is not a number: a clear error, not a ValueError
        with Ledger.open(url) as led, pytest.raises(LedgerError, match="non-integer sequence"):
            led.head()


# -- property: any single-byte change of any body is caught at that row (SQLite) -----------


@pytest.fixture(scope="module")
def sqlite_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prop") / "ledger.db"
    with Ledger.open(f"sqlite:///{path}", clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(40)])
    return path


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_single_byte_change_detected(sqlite_ledger: Path, data: st.DataObject) -> None:
    seq = data.draw(st.integers(0, 39), label="seq")
    conn = sqlite3.connect(sqlite_ledger, isolation_level=None)
    try:
        (body,) = conn.execute("SELECT body FROM ledger_entries WHERE seq = ?", (seq,)).fetchone()
        pos = data.draw(st.integers(0, len(body) - 1), label="pos")
        flip = data.draw(st.integers(1, 255), label="xor")
        bad = bytearray(body)
        bad[pos] ^= flip
        conn.execute("UPDATE ledger_entries SET body = ? WHERE seq = ?", (bytes(bad), seq))
        try:
            result = verify(f"sqlite:///{sqlite_ledger}")
        finally:
            conn.execute("UPDATE ledger_entries SET body = ? WHERE seq = ?", (body, seq))
    finally:
        conn.close()
    assert result.status == "invalid"
    assert result.first_bad_seq == seq


# -- the same through worker processes (spawned; both backends) ------------------------------


@pytest.mark.parametrize("tamper", ["none", "body", "tree"])
def test_worker_processes_agree_with_one_process(url: str, tamper: str) -> None:
    if tamper == "body":
        body = bytearray(row(url, 6)["body"])
        body[body.index(b"pull")] = ord("P")
        update(url, 6, body=bytes(body))
    elif tamper == "tree":  # a node spanning two ranges of 4: only the stitching sees it
        with raw(url) as conn:
            conn.execute(
                sa.text("UPDATE ledger_tree SET hash = :h WHERE level = 3"), {"h": b"\1" * 32}
            )
    with Ledger.open(url) as led:
        alone = led.verify(batch=3, workers=1)
        pooled = led.verify(batch=3, workers=2, range_size=4)
    assert _outcome(pooled) == _outcome(alone)
    assert pooled.head_hash == alone.head_hash or tamper != "none"
    if tamper == "none":
        assert pooled.status == "valid" and pooled.records_checked == N
    elif tamper == "body":
        assert (pooled.status, pooled.first_bad_seq) == ("invalid", 6)
    else:
        assert (pooled.status, pooled.first_bad_seq) == ("invalid", 7)
        assert pooled.problem is not None and "level 3, index 0" in pooled.problem


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        # the usual hand edit with the sqlite3 shell: string functions make the body TEXT
        ("body = substr(body, 1, 20) || 'Z' || substr(body, 22)", "leaf_hash"),
        ("body = CAST(body AS TEXT)", None),  # same bytes, another storage class
        ("leaf_hash = hex(leaf_hash)", "leaf_hash"),
        ("chain_hash = 'x'", "chain"),
    ],
)
def test_sqlite_value_of_another_type_is_a_finding_not_a_crash(
    tmp_path: Path, edit: str, problem: str | None
) -> None:
    url, kind = _edited_sqlite_ledger(
        tmp_path,
        f"UPDATE ledger_entries SET {edit} WHERE seq = 4",
        "SELECT typeof(body) FROM ledger_entries WHERE seq = 4",
    )
    for workers in (1, 2):  # in process and through spawned workers
        with Ledger.open(url) as led:
            result = led.verify(workers=workers, range_size=4)
        if problem is None:  # the content did not change: nothing to report
            assert kind == "text" and result.ok, result
        else:
            assert_invalid(result, 4, problem)
