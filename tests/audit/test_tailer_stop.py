"""``FileTailer.stop()`` during a long backlog: it returns after the batch in flight, never
closes the file under a running worker, and a restart resumes from the committed cursor.

Found by tests/runtime/test_crash_safety.py: a daemon stopped (SIGTERM) with a backlog kept
draining past ``stop()``'s join timeout; ``stop()`` then closed the file under the worker
("ValueError: read of closed file") while the service went on to close the ledger.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from sentinel.audit.cursor import JSONFileCursorStore
from sentinel.audit.parsers import PARSERS
from sentinel.audit.tailer import FileTailer, TailBatch

ACCESS = "registry-logs/distribution-live/registry-access-combined.log"
BATCH = 10


class SlowSink:
    """Commits like the ledger; the second batch takes a while, so ``stop()`` lands in it."""

    def __init__(self, store: JSONFileCursorStore) -> None:
        self.store = store
        self.raw_sha256: list[str] = []
        self.calls = 0
        self.in_second = threading.Event()

    def __call__(self, batch: TailBatch) -> None:
        self.calls += 1
        if self.calls == 2:
            self.in_second.set()
            time.sleep(1.0)  # the test calls stop() meanwhile
        self.raw_sha256 += [r.raw_sha256 for r in batch.records]
        self.store.commit({batch.cursor_key: batch.cursor_value})


def test_stop_mid_backlog_then_resume(tmp_path: Path, corpus: Path) -> None:
    lines = (corpus / ACCESS).read_bytes().splitlines()
    backlog = (lines * 10)[: BATCH * 40]
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(backlog) + b"\n")
    expected = [hashlib.sha256(x).hexdigest() for x in backlog]

    store = JSONFileCursorStore(tmp_path / "cursors.json")
    sink = SlowSink(store)
    parser = PARSERS["distribution-access"]
    tailer = FileTailer(log, "reg", parser, store, sink, batch_lines=BATCH, use_watchdog=False)
    tailer.start()
    assert sink.in_second.wait(30)
    tailer.stop(timeout=30)
    assert tailer.stats.read_errors == 0 and tailer.stats.sink_errors == 0
    # stopped after the batch in flight, not after the whole backlog
    assert sink.raw_sha256 == expected[: 2 * BATCH]

    resumed = SlowSink(store)
    resumed.calls = 2  # no slow batch this time
    again = FileTailer(log, "reg", parser, store, resumed, batch_lines=BATCH, use_watchdog=False)
    assert again.poll_once() == len(backlog) - 2 * BATCH
    again.close()
    assert sink.raw_sha256 + resumed.raw_sha256 == expected
