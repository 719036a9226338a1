"""FileTailer on real files: partial lines, rotation, copytruncate, restart, bad lines."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from sentinel.audit.cursor import Cursor, JSONFileCursorStore, first_line_fingerprint
from sentinel.audit.parsers import PARSERS
from sentinel.audit.tailer import FileTailer, TailBatch
from sentinel.records import AuditEvent, Unparsed

ACCESS = "registry-logs/distribution-live/registry-access-combined.log"


class Sink:
    """Commits cursor and records together (as the ledger does), keeps what it got."""

    def __init__(self, store: JSONFileCursorStore) -> None:
        self.store = store
        self.records: list[AuditEvent | Unparsed] = []
        self.fail_next = 0
        self.got = threading.Event()

    def __call__(self, batch: TailBatch) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("ledger unavailable")
        self.records += batch.records
        self.store.commit({batch.cursor_key: batch.cursor_value})
        self.got.set()

    def lines(self) -> list[str]:
        """The raw_sha256 of each record, to compare against the lines written."""
        return [r.raw_sha256 for r in self.records]


@pytest.fixture
def access_lines(corpus: Path) -> list[bytes]:
    return (corpus / ACCESS).read_bytes().splitlines()


def make(tmp_path: Path, log: Path, **kw: object) -> tuple[FileTailer, Sink]:
    store = JSONFileCursorStore(tmp_path / "cursors.json")
    sink = Sink(store)
    tailer = FileTailer(
        log, "reg", PARSERS["distribution-access"], store, sink, use_watchdog=False, **kw
    )  # type: ignore[arg-type]
    return tailer, sink


def sha(lines: list[bytes]) -> list[str]:
    import hashlib

    return [hashlib.sha256(x).hexdigest() for x in lines]


def test_append_and_partial_line(tmp_path: Path, access_lines: list[bytes]) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(access_lines[:3]) + b"\n" + access_lines[3][:20])
    tailer, sink = make(tmp_path, log)
    assert tailer.poll_once() == 3
    assert sink.lines() == sha(access_lines[:3])
    assert tailer.poll_once() == 0  # the partial line waits
    with log.open("ab") as f:
        f.write(access_lines[3][20:] + b"\n" + access_lines[4] + b"\n")
    assert tailer.poll_once() == 2
    assert sink.lines() == sha(access_lines[:5])
    first = sink.records[0]
    assert isinstance(first, AuditEvent)
    st = log.stat()
    fp = first_line_fingerprint(access_lines[0])
    assert first.src_pos == f"{log}@{st.st_dev}:{st.st_ino}.0:{fp}:0"
    assert sink.records[3].src_pos.endswith(f":{sum(len(x) + 1 for x in access_lines[:3])}")
    tailer.close()


def test_rotation_by_rename_finishes_old_file(tmp_path: Path, access_lines: list[bytes]) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(access_lines[:5]) + b"\n")
    tailer, sink = make(tmp_path, log)
    tailer.poll_once()
    with log.open("ab") as f:  # written after our last read, before rotation
        f.write(b"\n".join(access_lines[5:8]) + b"\n" + access_lines[8])  # last one unterminated
    log.rename(tmp_path / "access.log.1")
    log.write_bytes(b"\n".join(access_lines[9:12]) + b"\n")
    tailer.poll_once()
    assert sink.lines() == sha(access_lines[:12])
    assert tailer.stats.rotations == 1
    tailer.poll_once()
    assert len(sink.records) == 12
    tailer.close()


def test_missing_path_keeps_old_file_then_switches(
    tmp_path: Path, access_lines: list[bytes]
) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(access_lines[0] + b"\n")
    tailer, sink = make(tmp_path, log)
    tailer.poll_once()
    log.rename(tmp_path / "old.log")
    with (tmp_path / "old.log").open("ab") as f:
        f.write(access_lines[1] + b"\n")
    tailer.poll_once()  # path missing: still reading the renamed file
    assert sink.lines() == sha(access_lines[:2])
    log.write_bytes(access_lines[2] + b"\n")
    tailer.poll_once()
    assert sink.lines() == sha(access_lines[:3])
    tailer.close()


def test_copytruncate(tmp_path: Path, access_lines: list[bytes]) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(access_lines[:10]) + b"\n")
    tailer, sink = make(tmp_path, log)
    tailer.poll_once()
    shutil.copy(log, tmp_path / "access.log.1")
    with log.open("r+b") as f:
        f.truncate(0)
    with log.open("ab") as f:
        f.write(b"\n".join(access_lines[10:13]) + b"\n")
    tailer.poll_once()
    assert sink.lines() == sha(access_lines[:13])
    assert tailer.stats.truncations == 1
    # same inode, same offsets as before the truncation: the generation tells them apart in
    # src_pos, the new content (first line) in the dedup key
    fp0, fp1 = (first_line_fingerprint(x) for x in (access_lines[0], access_lines[10]))
    assert sink.records[10].src_pos.endswith(f".1:{fp1}:0")
    assert sink.records[0].src_pos.endswith(f".0:{fp0}:0")
    assert sink.records[10].dedup_key != sink.records[0].dedup_key
    tailer.close()


def test_restart_from_cursor_no_loss_no_duplicate(
    tmp_path: Path, access_lines: list[bytes]
) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(access_lines[:20]) + b"\n")
    tailer, first = make(tmp_path, log)
    tailer.poll_once()
    assert first.lines() == sha(access_lines[:20])
    tailer.close()
    with log.open("ab") as f:
        f.write(b"\n".join(access_lines[20:30]) + b"\n")
    again, sink2 = make(tmp_path, log)
    again.poll_once()
    assert sink2.lines() == sha(access_lines[20:30])
    again.close()
    # rotated while we were down: the rest of the old file is read first, then the new one
    with log.open("ab") as f:
        f.write(b"\n".join(access_lines[30:35]) + b"\n")
    log.rename(tmp_path / "access.log.1")
    log.write_bytes(b"\n".join(access_lines[35:40]) + b"\n")
    third, sink3 = make(tmp_path, log)
    third.poll_once()
    assert sink3.lines() == sha(access_lines[30:40])
    third.close()
    saved = Cursor.loads(
        JSONFileCursorStore(tmp_path / "cursors.json").get_cursor(third.cursor_key) or ""
    )
    assert (
        saved is not None and saved.ino == log.stat().st_ino and saved.offset == log.stat().st_size
    )


def test_malformed_and_oversize_lines_are_kept_and_tailing_goes_on(
    tmp_path: Path, access_lines: list[bytes]
) -> None:
    log = tmp_path / "access.log"
    huge = b"x" * 5000
    log.write_bytes(
        access_lines[0]
        + b"\nnot an access line\n"
        + huge
        + b"\n\xff\xfe\x00binary\n"
        + access_lines[1]
        + b"\n"
    )
    tailer, sink = make(tmp_path, log, max_line=4096)
    assert tailer.poll_once() == 5
    kinds = [type(r).__name__ for r in sink.records]
    assert kinds == ["AuditEvent", "Unparsed", "Unparsed", "Unparsed", "AuditEvent"]
    over = sink.records[2]
    assert isinstance(over, Unparsed)
    assert over.raw == b"x" * 1024 and over.raw_len == 5000 and "longer than 4096" in over.reason
    assert (tailer.stats.unparsed, tailer.stats.events, tailer.stats.lines) == (3, 2, 5)
    tailer.close()


def test_oversize_line_still_being_written_waits(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"y" * 10_000)
    tailer, sink = make(tmp_path, log, max_line=4096)
    assert tailer.poll_once() == 0 and sink.records == []
    with log.open("ab") as f:
        f.write(b"y" * 10_000 + b"\n")
    assert tailer.poll_once() == 1
    (rec,) = sink.records
    assert isinstance(rec, Unparsed) and rec.raw_len == 20_000
    tailer.close()


def test_failing_sink_is_retried_without_loss(tmp_path: Path, access_lines: list[bytes]) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(access_lines[:4]) + b"\n")
    tailer, sink = make(tmp_path, log, batch_lines=2)
    sink.fail_next = 1
    tailer.poll_once()
    assert sink.records == [] and tailer.stats.sink_errors == 1
    tailer.poll_once()
    assert sink.lines() == sha(access_lines[:4])
    tailer.close()


def test_worker_thread_wakes_on_file_events(tmp_path: Path, access_lines: list[bytes]) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(access_lines[0] + b"\n")
    store = JSONFileCursorStore(tmp_path / "cursors.json")
    sink = Sink(store)
    tailer = FileTailer(log, "reg", PARSERS["distribution-access"], store, sink, poll_interval=60)
    tailer.start()
    try:
        assert sink.got.wait(20), "first pass did not run"
        sink.got.clear()
        with log.open("ab") as f:
            f.write(access_lines[1] + b"\n")
        # the poll interval is 60 s: only the inotify event can deliver this within the wait
        assert sink.got.wait(20), "tailer did not wake on the file event"
    finally:
        tailer.stop()
        tailer.stop()  # safe twice
    assert sink.lines() == sha(access_lines[:2])


def test_ledger_is_the_cursor_store(
    tmp_path: Path, access_lines: list[bytes], ledger_url: str
) -> None:
    """Records and cursor committed in one ledger transaction; a restart resumes from it."""
    from sentinel.audit.records import to_ledger_batch
    from sentinel.ledger import Ledger

    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(access_lines[:10]) + b"\n")

    def run_once() -> None:
        with Ledger.open(ledger_url) as led:

            def sink(batch: TailBatch) -> None:
                records, keys = to_ledger_batch(batch.records)
                led.append(records, dedup_keys=keys, cursors={batch.cursor_key: batch.cursor_value})

            tailer = FileTailer(
                log, "reg", PARSERS["distribution-access"], led, sink, use_watchdog=False
            )
            tailer.poll_once()
            tailer.close()

    run_once()
    with log.open("ab") as f:
        f.write(b"\n".join(access_lines[10:15]) + b"\n")
    run_once()
    with Ledger.open(ledger_url) as led:
        got = [r["data"]["raw_sha256"] for r in led.query(kind="audit_event")]
    assert got == sha(access_lines[:15])


def test_k8s_stage_held_until_stop_is_recorded_on_stop(tmp_path: Path, corpus: Path) -> None:
    import json

    from sentinel.audit.parsers import ParserOptions, build_parser

    line = (
        corpus / "registry-logs/kubernetes/k8s-audit-create-secret-falco-fixture.jsonl"
    ).read_bytes()
    ev = json.loads(line)
    received = {k: v for k, v in ev.items() if k not in ("responseStatus", "responseObject")}
    received["stage"] = "RequestReceived"
    log = tmp_path / "audit.log"
    log.write_bytes(json.dumps(received).encode() + b"\n")
    store = JSONFileCursorStore(tmp_path / "cursors.json")
    sink = Sink(store)
    parser = build_parser("k8s-audit", ParserOptions())
    tailer = FileTailer(log, "k8s", parser, store, sink, use_watchdog=False)
    assert tailer.poll_once() == 1 and sink.records == []  # held: its final stage may follow
    tailer.start()
    tailer.stop()
    (rec,) = sink.records  # the tailer stopped: recorded, outcome unknown, nothing lost
    assert isinstance(rec, AuditEvent)
    assert (rec.event_id, rec.outcome) == (ev["auditID"], "unknown")
