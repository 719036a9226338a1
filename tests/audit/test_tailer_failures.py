"""A tailer pass that fails (a parser bug, an unexpected error) is counted, logged and retried:
the worker thread never dies, the health monitor reports the loss, and the report's coverage
shows the source with gaps, not complete. Bad globs are refused before any thread starts."""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sentinel.audit.cursor import JSONFileCursorStore
from sentinel.audit.globtailer import GlobTailer, glob_problem
from sentinel.audit.parsers import PARSERS
from sentinel.audit.parsers.interface import ParseResult
from sentinel.audit.tailer import FileTailer, TailBatch
from sentinel.ledger import Ledger
from sentinel.metrics import Metrics
from sentinel.records import AuditEvent, Unparsed
from sentinel.report.build import build_report
from sentinel.runtime.health import HealthMonitor
from sentinel.runtime.recorder import Recorder
from tests.waiting import wait_until

ACCESS = "registry-logs/distribution-live/registry-access-combined.log"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class BuggyParser:
    """The real distribution-access parser, with a bug on lines holding ``trigger`` while
    ``broken`` is set (parsers must never raise; this one does, as a buggy one would)."""

    def __init__(self, trigger: bytes) -> None:
        self.inner = PARSERS["distribution-access"]
        self.name = self.inner.name
        self.source_kind = self.inner.source_kind
        self.trigger = trigger
        self.broken = True

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        if self.broken and self.trigger in raw:
            raise KeyError("parser bug")
        return self.inner.parse(raw, source=source, src_pos=src_pos)


class Sink:
    def __init__(self, store: JSONFileCursorStore) -> None:
        self.store = store
        self.records: list[AuditEvent | Unparsed] = []
        self.lock = threading.Lock()

    def __call__(self, batch: TailBatch) -> None:
        with self.lock:
            self.records += batch.records
            self.store.commit({batch.cursor_key: batch.cursor_value})


@pytest.mark.parametrize("use_glob", [False, True])
def test_failing_pass_is_counted_and_the_worker_keeps_polling(
    tmp_path: Path, corpus: Path, use_glob: bool, caplog: pytest.LogCaptureFixture
) -> None:
    lines = (corpus / ACCESS).read_bytes().splitlines()[:6]
    log = tmp_path / "logs" / "access.log"
    log.parent.mkdir()
    log.write_bytes(b"\n".join(lines) + b"\n")
    store = JSONFileCursorStore(tmp_path / "cursors.json")
    sink = Sink(store)
    parser = BuggyParser(lines[2][:40])
    errors: list[BaseException] = []
    cls: Any = GlobTailer if use_glob else FileTailer
    path = tmp_path / "logs" / "*.log" if use_glob else log
    tailer = cls(path, "reg", parser, store, sink, poll_interval=0.05, on_error=errors.append)
    caplog.set_level(logging.ERROR)
    tailer.start()
    try:
        wait_until(lambda: tailer.stats.failed_passes >= 3)
        assert tailer._thread is not None and tailer._thread.is_alive()
        assert all(isinstance(e, KeyError) for e in errors) and len(errors) >= 3
        assert "KeyError" in (tailer.stats.last_error or "")
        assert "Traceback" in caplog.text  # the first failure with its traceback
        parser.broken = False  # the bug goes away (a fixed mapping, a reloaded parser)
        wait_until(lambda: len(sink.records) == len(lines))
    finally:
        tailer.stop()
    # nothing lost, nothing twice: the failed batch was retried from the committed cursor
    assert [r.raw_sha256 for r in sink.records] == [hashlib.sha256(x).hexdigest() for x in lines]


def test_failed_passes_make_the_coverage_show_gaps(
    tmp_path: Path, corpus: Path, ledger_url: str
) -> None:
    lines = (corpus / ACCESS).read_bytes().splitlines()[:3]
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    store = JSONFileCursorStore(tmp_path / "cursors.json")
    tailer = FileTailer(
        log, "reg", BuggyParser(b""), store, Sink(store), use_watchdog=False, poll_interval=0.05
    )
    ledger = Ledger.open(ledger_url)
    try:
        now = [T0]
        metrics = Metrics()
        monitor = HealthMonitor(
            Recorder(ledger, metrics), metrics, silence_after=3600, clock=lambda: now[0]
        )
        monitor.add_source(
            "file:reg", "audit", losses=lambda: {"failed_passes": tailer.stats.failed_passes}
        )
        tailer.start()
        wait_until(lambda: tailer.stats.failed_passes >= 2)
        tailer.stop()
        failed = tailer.stats.failed_passes
        now[0] = T0 + timedelta(seconds=60)
        monitor.close()
        (summary,) = [r["data"] for r in ledger.query("sensor_health")]
        assert summary["counts"]["failed_passes"] == failed
        assert (
            metrics.registry.get_sample_value(
                "sentinel_source_losses_total", {"source": "file:reg", "loss": "failed_passes"}
            )
            == failed
        )
        report = build_report(
            ledger.query(), start=T0, end=T0 + timedelta(hours=1), verification=None
        )
        (source,) = report["coverage"]["sources"]
        assert report["coverage"]["status"] == "gaps" and source["status"] == "gaps"
        assert any("failed with an error" in t for t in source["loss_text"])
    finally:
        ledger.close()


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("/var/log/**x/*.log", "'**' must be a whole path part"),
        ("/var/log/[*.log", "without a closing ']'"),
        ("/var/log/reg/**", "matches directories only"),
    ],
)
def test_bad_globs_are_refused(tmp_path: Path, pattern: str, problem: str) -> None:
    found = glob_problem(pattern)
    assert found is not None and problem in found
    store = JSONFileCursorStore(tmp_path / "cursors.json")
    with pytest.raises(ValueError, match="bad glob"):
        GlobTailer(pattern, "reg", PARSERS["distribution-access"], store, Sink(store))


@pytest.mark.parametrize(
    "pattern", ["/var/log/*.log", "/var/log/**/*.log", "/var/log/[]]x.log", "/l/[!a-c]?.log*"]
)
def test_good_globs_pass(pattern: str) -> None:
    assert glob_problem(pattern) is None


def test_a_glob_matching_nothing_warns_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = JSONFileCursorStore(tmp_path / "cursors.json")
    sink = Sink(store)
    tailer = GlobTailer(
        tmp_path / "*.log", "reg", PARSERS["distribution-access"], store, sink, poll_interval=0.05
    )
    caplog.set_level(logging.WARNING)
    tailer.start()
    try:
        assert "matches no file (yet)" in caplog.text
        (tmp_path / "late.log").write_bytes(b"not an access line\n")  # files may appear later
        wait_until(lambda: len(sink.records) == 1)
    finally:
        tailer.stop()
    assert isinstance(sink.records[0], Unparsed)
