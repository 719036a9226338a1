"""Tailing a registry log file: complete lines only, a persisted cursor, rotation-safe.

``FileTailer`` reads complete lines (``lines.iter_lines``: a partial last line waits, a line
over ``max_line`` becomes ``Unparsed`` keeping its first KiB), hands the raw bytes to a
``Parser`` and passes each batch of records to ``on_records`` *together with* the cursor that
follows it, so the caller commits both in one transaction (``Ledger.append(records,
dedup_keys=…, cursors={batch.cursor_key: batch.cursor_value})``). Only after ``on_records``
returns does the tailer move on; if it raises, the same lines are read again next poll
(at-least-once; the dedup keys make the retry idempotent).

Cursor and rotation (as fail2ban ``FileContainer``; ``cursor.Cursor``):

* start: the committed cursor is used when device, inode and head hash match and the file is
  at least ``offset`` long. If the path now holds another inode, the directory is searched for
  the old inode (``app.log`` renamed to ``app.log.1``) and its remaining lines are read first.
  Without a cursor the whole file is read.
* rename rotation (the path's inode changed): the old file is read to its end — a final line
  without newline is taken as complete, since the file is finished — then the new file is
  read from offset 0.
* copytruncate (file shorter than the offset) or a rewritten head: read again from 0 with a
  new generation (``Cursor.gen``); lines written between the last read and the truncation are
  lost — a limit of copytruncate itself.
* the path missing: keep reading the open (renamed) file until a new one appears.

``src_pos`` is ``"<path>@<dev>:<ino>.<gen>:<byte offset>"``. Wake-ups: watchdog file events on
the directory, and a poll every ``poll_interval`` seconds as fallback. ``start()``/``stop()``
run one worker thread (plus watchdog's observer), both joined on ``stop()``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from watchdog.observers import Observer

from sentinel.audit.cursor import HEAD_BYTES, Cursor, CursorStore, head_of
from sentinel.audit.lines import DEFAULT_MAX_LINE, Line, Oversize, iter_lines
from sentinel.audit.parsers.interface import Parser
from sentinel.fswake import FileWake
from sentinel.records import AuditEvent, Unparsed, sha256_hex

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TailBatch:
    """Records from consecutive lines, and the cursor to commit with them (JSON string)."""

    records: list[AuditEvent | Unparsed]
    cursor_key: str
    cursor_value: str
    lines: int


@dataclass(slots=True)
class TailStats:
    """Counters since the tailer was created."""

    lines: int = 0
    events: int = 0
    unparsed: int = 0
    rotations: int = 0
    truncations: int = 0
    sink_errors: int = 0
    read_errors: int = 0
    last_error: str | None = field(default=None)


class FileTailer:
    """Tail one file into ``on_records`` batches (see the module docstring).

    ``cursor_key`` defaults to ``"tail:<source_id>:<absolute path>"``. ``poll_interval`` is in
    seconds, ``max_line`` and ``batch_lines`` in bytes and lines. ``poll_once()`` does one
    synchronous pass (used by tests and by ``start()``'s worker).
    """

    def __init__(
        self,
        path: Path | str,
        source_id: str,
        parser: Parser,
        cursor_store: CursorStore,
        on_records: Callable[[TailBatch], None],
        *,
        cursor_key: str | None = None,
        poll_interval: float = 1.0,
        max_line: int = DEFAULT_MAX_LINE,
        batch_lines: int = 1000,
        use_watchdog: bool = True,
    ) -> None:
        self.path = Path(path).absolute()
        self.source_id = source_id
        self.parser = parser
        self.cursor_store = cursor_store
        self.on_records = on_records
        self.cursor_key = cursor_key or f"tail:{source_id}:{self.path}"
        self.poll_interval = poll_interval
        self.max_line = max_line
        self.batch_lines = batch_lines
        self.use_watchdog = use_watchdog
        self.stats = TailStats()
        self._fh: BinaryIO | None = None
        self._cur: Cursor | None = None
        self._started = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Observer | None = None  # type: ignore[valid-type]

    # -- worker ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (and a watchdog observer on the file's directory)."""
        if self._thread is not None:
            raise RuntimeError("tailer already started")
        self._stop.clear()
        if self.use_watchdog:
            observer = Observer()
            try:
                observer.schedule(FileWake(self.path.name, self._wake), str(self.path.parent))
                observer.start()
                self._observer = observer
            except OSError as exc:
                log.warning(
                    "%s: no file events (%s); polling every %ss", self.path, exc, self.poll_interval
                )
        self._thread = threading.Thread(target=self._run, name=f"tailer:{self.source_id}")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and join the worker and the observer; close the file. Safe to call twice."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # never close the file under a running worker
                log.error(
                    "%s: tailer still busy after %.0f s; not closing its file", self.path, timeout
                )
                return
            self._thread = None
        self.close()

    def close(self) -> None:
        """Close the open file (the cursor stays committed in the store)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    # -- one pass ----------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Read whatever complete lines are available; return how many lines were consumed.

        Never raises for I/O problems or a failing sink: they are counted in ``stats`` and
        logged, and the same lines are retried on the next call.
        """
        try:
            return self._poll()
        except OSError as exc:
            self.stats.read_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: read error: %s", self.path, exc)
            self.close()
            self._started = False
            return 0

    def _poll(self) -> int:
        consumed = 0
        if not self._started:
            consumed += self._resume()
            if not self._started:
                return consumed
        assert self._fh is not None and self._cur is not None
        self._check_same_content()
        n = self._drain(final=False)
        if n < 0:
            return consumed
        consumed += n
        if self._stop.is_set():
            return consumed
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return consumed  # renamed away; keep the old file until a new one appears
        if (st.st_dev, st.st_ino) != (self._cur.dev, self._cur.ino):
            n = self._drain(final=True)
            if n < 0:
                return consumed
            consumed += n
            self.stats.rotations += 1
            log.info("%s: rotated; switching to the new file", self.path)
            self.close()
            if self._open_path(None):
                n = self._drain(final=False)
                consumed += max(n, 0)
        return consumed

    def _resume(self) -> int:
        """First pass: position from the committed cursor (finishing a rotated file)."""
        text = self.cursor_store.get_cursor(self.cursor_key)
        saved = Cursor.loads(text) if text else None
        consumed = 0
        if saved is not None:
            old = self._find_inode(saved)
            if old is not None and self._open_file(old, saved):
                n = self._drain(final=True)
                if n < 0:
                    return 0
                consumed += n
                self.close()
                self.stats.rotations += 1
                saved = None
        if not self._open_path(saved):
            return consumed
        self._started = True
        return consumed

    def _find_inode(self, saved: Cursor) -> Path | None:
        """A file other than ``path`` in the same directory with the cursor's inode."""
        try:
            st = self.path.stat()
            if (st.st_dev, st.st_ino) == (saved.dev, saved.ino):
                return None
        except FileNotFoundError:
            pass
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return None
        for entry in entries:
            try:
                est = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (est.st_dev, est.st_ino) == (saved.dev, saved.ino) and entry.is_file():
                return Path(entry.path)
        return None

    def _open_path(self, saved: Cursor | None) -> bool:
        try:
            return self._open_file(self.path, saved)
        except FileNotFoundError:
            return False

    def _open_file(self, path: Path, saved: Cursor | None) -> bool:
        """Open ``path``; keep ``saved``'s offset when it describes this very file."""
        fh = path.open("rb")
        st = os.fstat(fh.fileno())
        if saved is not None and (st.st_dev, st.st_ino) == (saved.dev, saved.ino):
            sha, n = head_of(fh.fileno(), saved.head_len)
            if sha == saved.head_sha256 and n == saved.head_len and st.st_size >= saved.offset:
                self._fh, self._cur = fh, saved
                return True
            gen = saved.gen + 1
        else:
            gen = 0
            if path != self.path:  # a rotated file that no longer matches: nothing to finish
                fh.close()
                return False
        sha, n = head_of(fh.fileno())
        self._fh = fh
        self._cur = Cursor(st.st_dev, st.st_ino, sha, n, 0, gen)
        return True

    def _check_same_content(self) -> None:
        """Detect copytruncate / rewrite of the open file and restart it at offset 0."""
        assert self._fh is not None and self._cur is not None
        fd = self._fh.fileno()
        size = os.fstat(fd).st_size
        cur = self._cur
        sha, n = head_of(fd, cur.head_len)
        if size < cur.offset or sha != cur.head_sha256 or n != cur.head_len:
            self.stats.truncations += 1
            log.info("%s: truncated or rewritten; reading again from the start", self.path)
            sha, n = head_of(fd)
            self._cur = Cursor(cur.dev, cur.ino, sha, n, 0, cur.gen + 1)
        elif cur.head_len < HEAD_BYTES and size > cur.head_len:
            sha, n = head_of(fd)
            self._cur = Cursor(cur.dev, cur.ino, sha, n, cur.offset, cur.gen)

    def _drain(self, *, final: bool) -> int:
        """Read, parse and deliver complete lines; with ``final`` also a trailing partial line.

        Returns the number of lines delivered, or -1 when the sink failed (nothing advanced
        past the last successful batch).
        """
        assert self._fh is not None and self._cur is not None
        fh = self._fh
        done = 0
        pending: list[AuditEvent | Unparsed] = []
        count = 0
        end = self._cur.offset
        for line in iter_lines(fh, self._cur.offset, max_line=self.max_line):
            pending += self._parse(line)
            count += 1
            end = line.end
            if count >= self.batch_lines:
                if not self._deliver(pending, end, count):
                    return -1
                done += count
                pending, count = [], 0
                if self._stop.is_set():  # stopping: the committed cursor resumes here later
                    return done
        if final:
            size = os.fstat(fh.fileno()).st_size
            if size > end:
                fh.seek(end)
                rest = fh.read(min(size - end, self.max_line + 1))
                data: bytes | Oversize = rest
                if len(rest) > self.max_line:
                    data = Oversize(rest[:1024], sha256_hex(rest), size - end)
                pending += self._parse(Line(end, data, size))
                count += 1
                end = size
        if count or end != self._cur.offset:
            if not self._deliver(pending, end, count):
                return -1
            done += count
        return done

    def _parse(self, line: Line) -> list[AuditEvent | Unparsed]:
        assert self._cur is not None
        pos = f"{self._cur.file_id(str(self.path))}:{line.start}"
        if isinstance(line.data, Oversize):
            over = line.data
            return [
                Unparsed(
                    source=self.source_id,
                    reason=f"line longer than {self.max_line} bytes ({over.length})",
                    raw=over.head,
                    src_pos=pos,
                    raw_sha256=over.sha256,
                    raw_len=over.length,
                )
            ]
        return self.parser.parse(line.data, source=self.source_id, src_pos=pos)

    def _deliver(self, records: list[AuditEvent | Unparsed], end: int, lines: int) -> bool:
        assert self._cur is not None
        cur = self._cur
        new = Cursor(cur.dev, cur.ino, cur.head_sha256, cur.head_len, end, cur.gen)
        batch = TailBatch(records, self.cursor_key, new.dumps(), lines)
        try:
            self.on_records(batch)
        except Exception as exc:  # the sink is the caller's code; report and retry later
            self.stats.sink_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("%s: delivering %d records failed; will retry", self.path, len(records))
            return False
        self._cur = new
        self.stats.lines += lines
        for r in records:
            if isinstance(r, AuditEvent):
                self.stats.events += 1
            else:
                self.stats.unparsed += 1
        return True
