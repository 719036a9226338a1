"""Ledger store on both backends: round trip, dedup, cursors, query, bad input, open errors."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from sentinel.errors import LedgerError
from sentinel.ledger import (
    GENESIS,
    Ledger,
    RecordError,
    VerifyStatus,
    canonical_bytes,
    chain_hash,
    leaf_hash,
    store,
)
from sentinel.ledger.store import Entry
from tests.ledger.helpers import T0, FixedClock, audit_record, raw


def test_round_trip(ledger_url: str) -> None:
    clock = FixedClock()
    records = [audit_record(i) for i in range(10)] + [
        {"kind": "egress_violation", "data": {"remote_ip": "198.51.100.7", "bytes_out": 2**40}}
    ]
    with Ledger.open(ledger_url, clock=clock) as led:
        assert led.size() == 0
        assert led.head() == (-1, GENESIS)
        res = led.append(records)
        assert (res.appended, res.duplicates, res.first_seq, res.last_seq) == (11, 0, 0, 10)
        entries = list(led.iter_entries(batch=3))
        assert [e.seq for e in entries] == list(range(11))
        prev = GENESIS
        for e, rec in zip(entries, records, strict=True):
            whole = {
                "v": 1,
                "log": "sentinel",
                "seq": e.seq,
                "kind": rec["kind"],
                "recorded_at": "2026-03-01T12:00:00.123456Z",
                "data": rec["data"],
            }
            assert e.body == canonical_bytes(whole)
            assert e.record() == whole
            assert e.kind == rec["kind"]
            assert e.leaf_hash == leaf_hash(e.body)
            assert e.prev_hash == prev
            assert e.chain_hash == chain_hash(prev, e.leaf_hash)
            prev = e.chain_hash
        assert led.head() == (10, prev)
        assert led.size() == 11
        assert [e.seq for e in led.iter_entries(4, 7, batch=2)] == [4, 5, 6]
        assert [e.seq for e in led.iter_entries(kind="egress_violation")] == [10]
        # a second append continues the chain
        res2 = led.append([audit_record(99)])
        assert (res2.first_seq, res2.last_seq) == (11, 11)
        result = led.verify(batch=4)
        assert result.status == VerifyStatus.VALID == "valid"
        assert (result.size, result.records_checked, result.first_bad_seq) == (12, 12, None)
        assert result.head_hash == led.head().chain_hash.hex()
    # reopening sees the same log
    with Ledger.open(ledger_url) as led:
        assert led.size() == 12
        assert led.verify().ok


def test_empty_ledger_verifies(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as led:
        result = led.verify()
    assert result.status == "valid"
    assert (result.size, result.records_checked, result.head_hash) == (0, 0, GENESIS.hex())


def test_dedup_within_across_batches_and_reopen(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as led:
        res = led.append(
            [audit_record(i) for i in range(5)], dedup_keys=["a", "b", "a", None, None]
        )
        assert (res.appended, res.duplicates, res.first_seq, res.last_seq) == (4, 1, 0, 3)
        res = led.append([audit_record(5), audit_record(6)], dedup_keys=["b", "c"])
        assert (res.appended, res.duplicates, res.first_seq, res.last_seq) == (1, 1, 4, 4)
        # entries without keys are never deduplicated
        res = led.append([audit_record(7)], dedup_keys=[None])
        assert res.appended == 1
    with Ledger.open(ledger_url) as led:
        res = led.append([audit_record(8), audit_record(9)], dedup_keys=["a", "c"])
        assert (res.appended, res.duplicates, res.first_seq, res.last_seq) == (0, 2, None, None)
        assert led.size() == 6
        assert led.verify().ok
        data = [e.record()["data"]["request_id"] for e in led.iter_entries()]
        assert data == ["req-0", "req-1", "req-3", "req-4", "req-6", "req-7"]


def test_cursor_commits_with_records(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as led:
        assert led.get_cursor("app.log") is None
        led.append([audit_record(0)], cursors={"app.log": "ino=5:off=512"})
        assert led.get_cursor("app.log") == "ino=5:off=512"
        led.append([audit_record(1)], cursors={"app.log": "ino=5:off=1024", "web": "d-7"})
        assert led.get_cursor("app.log") == "ino=5:off=1024"
        assert led.get_cursor("web") == "d-7"
        # a batch made only of duplicates still moves the cursor
        res = led.append([audit_record(1)], dedup_keys=["k"], cursors={"web": "d-8"})
        res = led.append([audit_record(1)], dedup_keys=["k"], cursors={"web": "d-9"})
        assert (res.appended, res.duplicates) == (0, 1)
        assert led.get_cursor("web") == "d-9"
        assert led.size() == 3
    # cursors belong to a log id
    with Ledger.open(ledger_url, log_id="other") as other:
        assert other.get_cursor("app.log") is None


def _install_failing_trigger(url: str) -> None:
    with raw(url) as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER boom BEFORE INSERT ON ledger_cursors WHEN NEW.key = 'boom' "
                "BEGIN SELECT RAISE(ABORT, 'boom cursor'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.key = 'boom' THEN RAISE EXCEPTION 'boom cursor'; END IF; "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER boom BEFORE INSERT ON ledger_cursors "
                "FOR EACH ROW EXECUTE FUNCTION boom()"
            )


def test_failed_append_writes_nothing(ledger_url: str) -> None:
    """Records, dedup keys and cursors are one transaction: a failure leaves none of them."""
    with Ledger.open(ledger_url) as led:
        led.append([audit_record(0)], cursors={"f": "1"})
        _install_failing_trigger(ledger_url)
        with pytest.raises(LedgerError, match="boom cursor"):
            led.append(
                [audit_record(1), audit_record(2)],
                dedup_keys=["x", "y"],
                cursors={"f": "3", "boom": "1"},
            )
        assert led.size() == 1
        assert led.get_cursor("f") == "1"
        res = led.append([audit_record(1)], dedup_keys=["x"], cursors={"f": "2"})
        assert (res.appended, res.first_seq) == (1, 1)
        assert led.verify().ok


def test_query_by_event_time_and_recorded_time(ledger_url: str) -> None:
    clock = FixedClock()
    with Ledger.open(ledger_url, clock=clock) as led:
        led.append([audit_record(i, ts=f"2026-03-0{i + 1}T00:00:00.000000Z") for i in range(5)])
        clock.advance(3600)
        led.append(
            [
                {"kind": "egress_violation", "data": {"ts": "2026-03-02T05:00:00.000000Z"}},
                {"kind": "scan_finding", "data": {"severity": "high"}},  # no ts: recorded_at
            ]
        )
        got = list(led.query("audit_event", "2026-03-02T00:00:00Z", "2026-03-04T00:00:00Z"))
        assert [r["data"]["ts"][:10] for r in got] == ["2026-03-02", "2026-03-03"]
        assert all(r["kind"] == "audit_event" for r in got)
        egress = list(led.query("egress_violation", T0.replace(day=2, hour=0), T0.replace(day=3)))
        assert [r["seq"] for r in egress] == [5]
        assert [r["seq"] for r in led.query(since="2026-03-01T12:30:00Z", by="recorded")] == [5, 6]
        assert len(list(led.query())) == 7
        assert [
            r["seq"] for r in led.query("scan_finding", until="2026-03-01T13:00:00.123457Z")
        ] == [6]
        with pytest.raises(ValueError):
            list(led.query(by="nonsense"))


@pytest.mark.parametrize(
    ("records", "kwargs", "path"),
    [
        ([{"kind": "audit_event", "data": {"bytes": 1.5}}], {}, "$[0].data.bytes"),
        ([audit_record(0), {"kind": "Bad Kind", "data": {}}], {}, "$[1].kind"),
        ([{"kind": "audit_event"}], {}, "$[0].data"),
        ([{"kind": "audit_event", "data": [1]}], {}, "$[0].data"),
        ([{"kind": "audit_event", "data": {}, "seq": 4}], {}, "$[0]"),
        ([audit_record(0)], {"dedup_keys": ["a", "b"]}, "$"),
        ([audit_record(0)], {"dedup_keys": [""]}, "dedup_keys[0]"),
        ([audit_record(0)], {"cursors": {"f": 7}}, "cursors['f']"),
        ([{"kind": "audit_event", "data": {"blob": "x" * (1 << 20)}}], {}, "$[0].data"),
    ],
)
def test_bad_records_rejected_before_writing(
    ledger_url: str, records: list[dict[str, object]], kwargs: dict[str, object], path: str
) -> None:
    with Ledger.open(ledger_url) as led:
        with pytest.raises(RecordError) as info:
            led.append(records, **kwargs)  # type: ignore[arg-type]
        assert info.value.path == path
        assert led.size() == 0


def test_independent_logs_in_one_database(ledger_url: str) -> None:
    with Ledger.open(ledger_url, log_id="a") as a, Ledger.open(ledger_url, log_id="b") as b:
        a.append([audit_record(i) for i in range(3)], dedup_keys=["k1", "k2", "k3"])
        res = b.append([audit_record(i) for i in range(2)], dedup_keys=["k1", "k2"])
        assert (res.appended, res.first_seq) == (2, 0)
        assert (a.size(), b.size()) == (3, 2)
        assert a.verify().ok and b.verify().ok
        assert json.loads(next(b.iter_entries()).body)["log"] == "b"


def test_threads_share_one_ledger(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as led:
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(20):
                    led.append([audit_record(t * 100 + i)])
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert led.size() == 80
        assert led.verify().ok


def test_open_errors(tmp_path: Path) -> None:
    for url, match in [
        ("mysql://u@localhost/x", "unsupported database"),
        ("sqlite://", "needs a file"),
        ("sqlite:///:memory:", "needs a file"),
        (f"sqlite:///{tmp_path}/missing/dir/l.db", "unable to open"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/none", "opening"),
        ("postgresql+psycopg2://postgres@127.0.0.1/none", "psycopg 3"),
        ("::not a url::", "not a database URL"),
    ]:
        with pytest.raises(LedgerError, match=match):
            Ledger.open(url)
    with pytest.raises(LedgerError, match="log id"):
        Ledger.open(f"sqlite:///{tmp_path}/l.db", log_id="bad id")


def test_schema_version_mismatch(ledger_url: str) -> None:
    Ledger.open(ledger_url).close()
    with raw(ledger_url) as conn:
        conn.execute(sa.text("UPDATE ledger_meta SET value = '99' WHERE key = 'schema_version'"))
    with pytest.raises(LedgerError, match="schema version 99"):
        Ledger.open(ledger_url)


def test_entry_record_rejects_damaged_body() -> None:
    entry = Entry(0, "t", "k", b"[1]", b"", b"", b"")
    with pytest.raises(LedgerError, match="not a JSON object"):
        entry.record()
    with pytest.raises(LedgerError, match="not valid JSON"):
        Entry(0, "t", "k", b"{", b"", b"", b"").record()


def test_postgres_statistics_refreshed_as_the_log_grows(pg_url: str) -> None:
    """Without fresh statistics PostgreSQL scanned every dedup key per append (see store)."""
    from sentinel.ledger.store import ANALYZE_MIN_ROWS

    with Ledger.open(pg_url) as led:
        for start in range(0, ANALYZE_MIN_ROWS + 500, 500):
            led.append(
                [audit_record(i) for i in range(start, start + 500)],
                dedup_keys=[f"k{i}" for i in range(start, start + 500)],
            )
        with raw(pg_url) as conn:
            tuples = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE relname = 'ledger_dedup'")
            ).scalar_one()
        assert tuples >= ANALYZE_MIN_ROWS
        assert led.verify().ok
    with Ledger.open(pg_url) as again:  # a new process starts from the stored statistics
        assert again._analyze_at >= 2 * ANALYZE_MIN_ROWS


def test_new_sqlite_ledger_is_private_whatever_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    path = tmp_path / "ledger.db"
    old = os.umask(0o022)  # a login shell's umask: without care the file would be 0644
    try:
        with Ledger.open(f"sqlite:///{path}") as led:
            led.append([audit_record(i) for i in range(3)])
            files = sorted(tmp_path.glob("ledger.db*"))  # the database, its -wal and -shm
            assert path in files and len(files) >= 2
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    finally:
        os.umask(old)
    assert set(modes.values()) == {0o600}, modes
    # an existing file keeps the permissions its owner gave it
    path.chmod(0o640)
    with Ledger.open(f"sqlite:///{path}") as led:
        assert led.size() == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def _pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


def test_new_sqlite_ledger_uses_large_pages(tmp_path: Path) -> None:
    """A ledger created now has SQLITE_PAGE_SIZE pages (rows ~1.1 KB: fewer page reads per
    verified record) and its connections checkpoint the WAL after the same number of bytes."""
    path = tmp_path / "new.db"
    with Ledger.open(f"sqlite:///{path}", clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(50)])
        with led._engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        result = led.verify(workers=1)
    assert store.SQLITE_PAGE_SIZE == 16384
    assert _pragma(path, "page_size") == store.SQLITE_PAGE_SIZE
    assert pages == store.SQLITE_WAL_AUTOCHECKPOINT_BYTES // store.SQLITE_PAGE_SIZE
    assert result.ok and result.verifier == "c"


def test_existing_sqlite_ledger_keeps_its_page_size(tmp_path: Path) -> None:
    """A ledger created with SQLite's default 4 KiB pages keeps them (the page size of a file
    changes only by VACUUM), appends and verifies as before."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("PRAGMA journal_mode = WAL")  # writes the header: the page size is fixed now
    conn.close()
    with Ledger.open(f"sqlite:///{path}", clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(30)])
    with Ledger.open(f"sqlite:///{path}", clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(30, 60)])
        with led._engine.connect() as conn2:
            pages = conn2.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        fast = led.verify(workers=1, batch=8, range_size=16)
        reference = led.verify(workers=1, batch=8, range_size=16, accelerated=False)
    assert _pragma(path, "page_size") == 4096
    assert pages == store.SQLITE_WAL_AUTOCHECKPOINT_BYTES // 4096
    assert fast.ok and reference.ok and fast.records_checked == 60
    assert (fast.verifier, fast.root) == ("c", reference.root)
