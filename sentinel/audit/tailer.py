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
* rotation to .gz (logrotate ``compress``, with or without ``delaycompress``): while running,
  the renamed file is still open and is finished through its descriptor even after gzip has
  unlinked it. At start, when the cursor's inode is gone, the directory's ``<name>*.gz``
  files are searched for one whose *uncompressed* head hash matches the cursor and which is
  at least ``offset`` bytes long uncompressed; it is read with ``gzip`` from the same
  uncompressed offset (records keep the original file's ``src_pos``, so dedup keys match).
  Then the rotated siblings written after it (``<name>.1``, ``<name>-20261129.gz``…, newer
  modification time, plain or gzip) are read whole, oldest first — the files logrotate made
  while Sentinel was down — and only then the new file. A damaged .gz is read up to the
  damage, counted in ``read_errors`` and left.

``src_pos`` is ``"<path>@<dev>:<ino>.<gen>:<fingerprint>:<byte offset>"``; the fingerprint
(``cursor.first_line_fingerprint``, SHA-256 of the file's first line, at most 1 KiB) is the
file's content identity and, with the offset, what dedup keys use (``records.position_key``):
a copy of the file (copytruncate's ``app.log.1`` matched by a glob, a restored backup), its
``.gz``, the same file ingested by hand, or a generation of the inode rewritten with the same
bytes give the same keys. Records are only made of complete lines (or the last line of a
finished file), so the first line is complete — or at least 1 KiB long — when the first record
is made and the fingerprint never changes under a file's records.

Wake-ups: watchdog file events on the directory, and a poll every ``poll_interval`` seconds as
fallback. ``start()``/``stop()`` run one worker thread (plus watchdog's observer), both joined
on ``stop()``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from watchdog.observers import Observer

from sentinel.audit.cursor import (
    HEAD_BYTES,
    Cursor,
    CursorStore,
    first_line_fingerprint,
    head_of,
)
from sentinel.audit.lines import (
    CHUNK,
    DEFAULT_MAX_LINE,
    GZIP_ERRORS,
    KEEP,
    GzipStream,
    Line,
    Oversize,
    iter_lines,
)
from sentinel.audit.parsers.interface import Parser, flush_parser
from sentinel.fswake import FileWake
from sentinel.records import AuditEvent, Unparsed, sha256_hex

log = logging.getLogger(__name__)

#: what a compressed rotated file is called (only gzip is read)
GZIP_SUFFIX = ".gz"
#: at most this many rotated siblings are examined when finishing a rotation (bounds the work)
MAX_SIBLINGS = 64
_GZIP_ERRORS = GZIP_ERRORS
_GzipStream = GzipStream


def _gzip_open(path: Path) -> BinaryIO:
    """``path`` as a decompressing, seekable (forward) binary stream; the caller closes it."""
    return cast("BinaryIO", _GzipStream(path))


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
    #: worker passes that failed with an unexpected exception (logged; the worker keeps polling)
    failed_passes: int = 0
    last_error: str | None = field(default=None)


def guarded_pass(
    poll: Callable[[], int],
    stats: TailStats,
    what: object,
    on_error: Callable[[BaseException], None] | None = None,
) -> int:
    """Run one worker pass ``poll()``; an exception is counted in ``stats.failed_passes``,
    kept in ``stats.last_error``, logged (with its traceback the first time) and passed to
    ``on_error``, and 0 is returned: a worker thread never dies of one bad pass."""
    try:
        return poll()
    except Exception as exc:
        stats.failed_passes += 1
        stats.last_error = f"{type(exc).__name__}: {exc}"
        if stats.failed_passes == 1:
            log.exception("%s: tailer pass failed (counted; it keeps polling)", what)
        else:
            log.error(
                "%s: tailer pass failed again (%d so far): %s",
                what,
                stats.failed_passes,
                stats.last_error,
            )
        if on_error is not None:
            try:
                on_error(exc)
            except Exception:
                log.exception("%s: error callback failed", what)
        return 0


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
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.path = Path(path).absolute()
        self.on_error = on_error
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
        #: ``first_line_fingerprint`` of the open file (``None``: not known yet)
        self._fp: str | None = None
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

    def request_stop(self) -> None:
        """Make a running ``poll_once`` return after the batch in flight (``stop`` does it too)."""
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        """Close the open file (the cursor stays committed in the store)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._fp = None

    def _run(self) -> None:
        while not self._stop.is_set():
            guarded_pass(self.poll_once, self.stats, self.path, self.on_error)
            self._wake.wait(self.poll_interval)
            self._wake.clear()
        guarded_pass(self._flush_held, self.stats, self.path, self.on_error)

    def _flush_held(self) -> int:
        held = flush_parser(self.parser, self.source_id)  # k8s: stages with no final stage
        if held and self._cur is not None:
            self._deliver(held, self._cur.offset, 0)
        return 0

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
        """First pass: position from the committed cursor (finishing a rotated file, plain or
        gzip, and the rotated siblings written after it)."""
        text = self.cursor_store.get_cursor(self.cursor_key)
        saved = Cursor.loads(text) if text else None
        consumed = 0
        if saved is not None and not self._path_holds(saved):
            # the cursor's file was rotated (renamed, compressed, copied) — or the path's inode
            # was freed and reused by the new file, which then must not take over its place
            found = self._open_rotated(saved)
            if found is not None:
                n = self._drain(final=True)
                self.close()
                if n < 0:
                    return 0
                consumed += n
                self.stats.rotations += 1
                for sibling in self._newer_siblings(found, saved):
                    self._open_whole(sibling)
                    n = self._drain(final=True)
                    self.close()
                    if n < 0:
                        return consumed
                    consumed += n
                if not self._path_holds(saved, inode_only=True):
                    saved = None  # else keep it: the reused inode gets the next generation
        if not self._open_path(saved):
            return consumed
        self._started = True
        return consumed

    def _path_holds(self, saved: Cursor, *, inode_only: bool = False) -> bool:
        """Whether ``path`` is still the cursor's file: same inode and (unless
        ``inode_only``) the same head, at least ``offset`` bytes long."""
        try:
            with self.path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                if (st.st_dev, st.st_ino) != (saved.dev, saved.ino):
                    return False
                if inode_only:
                    return True
                sha, n = head_of(fh.fileno(), saved.head_len)
        except FileNotFoundError:
            return False
        return sha == saved.head_sha256 and n == saved.head_len and st.st_size >= saved.offset

    def _siblings(self) -> list[tuple[Path, os.stat_result]]:
        """Regular files in the path's directory named ``<name>.…`` or ``<name>-…`` (rotated
        copies), newest first, at most ``MAX_SIBLINGS``."""
        name = self.path.name
        out: list[tuple[Path, os.stat_result]] = []
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return out
        for entry in entries:
            if not entry.name.startswith((name + ".", name + "-")):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    out.append((Path(entry.path), entry.stat(follow_symlinks=False)))
            except OSError:
                continue
        out.sort(key=lambda item: item[1].st_mtime_ns, reverse=True)
        return out[:MAX_SIBLINGS]

    def _open_rotated(self, saved: Cursor) -> tuple[Path, os.stat_result] | None:
        """Open the cursor's file under its rotated name (same inode), or its gzip copy (same
        uncompressed head, at least ``offset`` bytes); ``self._cur`` is ``saved``."""
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            entries = []
        for entry in entries:  # any name: the file may have been renamed to anything
            try:
                st = entry.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) != (saved.dev, saved.ino) or not entry.is_file():
                    continue
                if Path(entry.path) == self.path:
                    continue  # the path's inode reused by a new file
                if self._open_file(Path(entry.path), saved):
                    return Path(entry.path), st
            except OSError:
                continue
        siblings = self._siblings()
        if saved.head_len == 0:
            return None  # nothing was read from it: nothing to finish, nothing to match
        for path, st in siblings:  # a copy: compressed, or copied by copytruncate
            if path.name.endswith(GZIP_SUFFIX):
                if self._open_gzip(path, saved):
                    return path, st
            elif self._open_copy(path, saved):
                return path, st
        return None

    def _open_copy(self, path: Path, saved: Cursor) -> bool:
        """Open the plain file ``path`` if it starts with the cursor's head and holds at least
        ``saved.offset`` bytes (the cursor's lines, copied by copytruncate)."""
        fh = path.open("rb")
        st = os.fstat(fh.fileno())
        sha, n = head_of(fh.fileno(), saved.head_len)
        if sha != saved.head_sha256 or n != saved.head_len or st.st_size < saved.offset:
            fh.close()
            return False
        log.info("%s: finishing the rotated file from its copy %s", self.path, path)
        self._fh, self._cur = fh, saved
        return True

    def _open_gzip(self, path: Path, saved: Cursor) -> bool:
        """Open ``path`` as gzip if its uncompressed head matches ``saved`` and it holds at
        least ``saved.offset`` uncompressed bytes."""
        fh = _gzip_open(path)
        try:
            head = fh.read(HEAD_BYTES)
            known = head[: saved.head_len]
            if len(known) != saved.head_len or sha256_hex(known) != saved.head_sha256:
                fh.close()
                return False
            fh.seek(saved.offset)
            if fh.tell() != saved.offset:
                fh.close()
                return False
        except (*_GZIP_ERRORS, OSError) as exc:
            log.warning("%s: unreadable gzip file while finishing a rotation: %s", path, exc)
            fh.close()
            return False
        log.info("%s: finishing the rotated file from %s", self.path, path)
        self._fh, self._cur = fh, saved
        self._fp = first_line_fingerprint(head)  # read now: seeking back in gzip is slow
        return True

    def _newer_siblings(self, found: tuple[Path, os.stat_result], saved: Cursor) -> list[Path]:
        """Rotated siblings modified after ``found`` (unread: the cursor was on ``found``),
        oldest first. A sibling that starts like ``found`` or like an earlier sibling is a copy
        of it (gzip still compressing, copytruncate's copy) and is left out."""
        path, st = found
        newer = [
            p
            for p, s in self._siblings()
            if p != path
            and (s.st_dev, s.st_ino) != (st.st_dev, st.st_ino)
            and s.st_mtime_ns > st.st_mtime_ns
        ]
        newer.reverse()
        out: list[Path] = []
        heads: set[str] = set()
        for p in newer:
            head = self._head_bytes(p)
            if head is None or (
                saved.head_len and sha256_hex(head[: saved.head_len]) == saved.head_sha256
            ):
                continue
            digest = sha256_hex(head)
            if digest not in heads:
                heads.add(digest)
                out.append(p)
        return out

    @staticmethod
    def _head_bytes(path: Path) -> bytes | None:
        """The first ``HEAD_BYTES`` of ``path`` (uncompressed for ``*.gz``); ``None`` if
        unreadable."""
        try:
            if path.name.endswith(GZIP_SUFFIX):
                stream = _GzipStream(path)
                try:
                    return stream.read(HEAD_BYTES)
                finally:
                    stream.close()
            with path.open("rb") as fh:
                return fh.read(HEAD_BYTES)
        except (*_GZIP_ERRORS, OSError):
            return None

    def _open_whole(self, path: Path) -> None:
        """Open a rotated sibling to read it from the start (gzip when named ``*.gz``)."""
        fh: BinaryIO = path.open("rb")
        st = os.fstat(fh.fileno())
        if path.name.endswith(GZIP_SUFFIX):
            fh.close()
            fh = _gzip_open(path)
        head = fh.read(HEAD_BYTES)
        fh.seek(0)
        log.info("%s: reading %s, rotated while Sentinel was not running", self.path, path)
        self._fh = fh
        self._cur = Cursor(st.st_dev, st.st_ino, sha256_hex(head), len(head), 0, 0)

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
            if path != self.path:  # inode reused by another file: not the one to finish
                fh.close()
                return False
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
            self._fp = None  # new content: the next line at offset 0 gives it
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
        damaged = False
        for line in self._lines(fh, self._cur.offset):
            if line is None:
                damaged = True
                break
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
        if final and not damaged:
            tail = self._read_rest(fh, end)
            if tail is not None:
                pending += self._parse(tail)
                count += 1
                end = tail.end
        if count or end != self._cur.offset:
            if not self._deliver(pending, end, count):
                return -1
            done += count
        return done

    def _lines(self, fh: BinaryIO, offset: int) -> Iterator[Line | None]:
        """``iter_lines``, ending with ``None`` when a gzip file turns out damaged (counted)."""
        try:
            yield from iter_lines(fh, offset, max_line=self.max_line)
        except _GZIP_ERRORS as exc:
            self.stats.read_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: damaged gzip file, read up to the damage: %s", self.path, exc)
            yield None

    def _read_rest(self, fh: BinaryIO, start: int) -> Line | None:
        """The bytes after the last newline of a finished file, as one line (``None`` if
        none). Reads to end of file (works for gzip streams too); memory O(``max_line``)."""
        fh.seek(start)
        kept = b""
        digest = hashlib.sha256()
        length = 0
        try:
            while data := fh.read(CHUNK):
                digest.update(data)
                if len(kept) <= self.max_line:
                    kept += data[: self.max_line + 1 - len(kept)]
                length += len(data)
        except _GZIP_ERRORS as exc:
            self.stats.read_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: damaged gzip file, read up to the damage: %s", self.path, exc)
        if not length:
            return None
        body: bytes | Oversize = kept
        if length > self.max_line:
            body = Oversize(kept[:KEEP], digest.hexdigest(), length)
        return Line(start, body, start + length)

    def _fingerprint(self, line: Line) -> str:
        """The open file's content fingerprint; ``line`` is the line about to be parsed (a
        complete line, so when it is not the first one the first line is complete too)."""
        if line.start == 0:
            first = line.data.head if isinstance(line.data, Oversize) else line.data
            self._fp = first_line_fingerprint(first)
        elif self._fp is None:
            assert self._fh is not None
            fh = self._fh
            if isinstance(fh, _GzipStream):  # only when not set on opening: rewinds
                back = fh.tell()
                fh.seek(0)
                head = fh.read(HEAD_BYTES)
                fh.seek(back)
            else:
                head = os.pread(fh.fileno(), HEAD_BYTES, 0)
            self._fp = first_line_fingerprint(head)
        return self._fp

    def _parse(self, line: Line) -> list[AuditEvent | Unparsed]:
        assert self._cur is not None
        pos = f"{self._cur.file_id(str(self.path), self._fingerprint(line))}:{line.start}"
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
