"""Tailing every file a glob matches (``path = "/var/log/registry/*.log"`` in ``[[audit.files]]``).

``GlobTailer`` keeps one ``FileTailer`` per matching path, each with its own cursor
(``"tail:<source_id>:<absolute path>"``, the key a single-file entry for that path would use,
so turning a path into a glob keeps its cursor) committed in the same transaction as its
records. One worker thread polls them all: every ``poll_interval`` seconds, and sooner on a
watchdog event in the glob's base directory (the longest leading part without ``*?[``).

* New files that start to match are picked up on the next pass and read from the start.
* Compressed files (``*.gz``) are never tailed as files of their own: they only finish a
  rotation (``FileTailer``). A glob that also matches rotated names (``*.log*``) makes each
  rotated file a new source of the same lines; the dedup keys (the file's first-line
  fingerprint, offset, hash: ``records.position_key``) recognise them whether the rotated file
  was renamed or copied (``copytruncate``), so the ledger stays free of duplicates, but prefer a
  glob that matches live files only (every rotation is read again).
* A path that no longer exists and whose open file yields nothing more is forgotten (its
  cursor stays committed; if the path comes back, its new tailer resumes from the cursor).
* A pass that fails (a bug, an unexpected error) is logged, counted in
  ``stats.failed_passes`` and handed to ``on_error``; the worker keeps polling. A bad glob
  (``glob_problem``) is refused by the constructor (``ValueError``; the config refuses it
  first), and a glob that matches nothing at ``start()`` is logged as a warning.
* At most ``max_files`` files are tailed at once; further matches are logged and counted in
  ``skipped_files`` (a size limit, like every input).

Globs follow ``pathlib.Path.glob`` (``**`` matches any depth of directories).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from sentinel.audit.cursor import CursorStore
from sentinel.audit.lines import DEFAULT_MAX_LINE
from sentinel.audit.parsers.interface import Parser
from sentinel.audit.tailer import GZIP_SUFFIX, FileTailer, TailBatch, TailStats, guarded_pass

log = logging.getLogger(__name__)

MAX_FILES = 1000
_MAGIC = frozenset("*?[")


def is_glob(path: str | Path) -> bool:
    """Whether ``path`` holds glob wildcards (``*``, ``?``, ``[``)."""
    return any(c in _MAGIC for c in str(path))


def glob_problem(pattern: str | Path) -> str | None:
    """What is wrong with the glob ``pattern`` (``pathlib.Path.glob`` syntax), or ``None``.

    Refused: ``**`` mixed with other characters in one path part (``**x``: ``Path.glob``
    raises ``ValueError`` on it), a ``[`` without its ``]`` (``fnmatch`` would read it as a
    literal ``[`` and silently match nothing), and a last part ``**`` (matches directories
    only, never a file). Checks the text only; never touches the file system.
    """
    parts = Path(pattern).parts
    for part in parts:
        if "**" in part and part != "**":
            return f"'**' must be a whole path part (as in 'logs/**/*.log'), not {part!r}"
        i, n = 0, len(part)
        while i < n:
            if part[i] == "[":
                j = i + 1
                if j < n and part[j] == "!":
                    j += 1
                if j < n and part[j] == "]":
                    j += 1
                while j < n and part[j] != "]":
                    j += 1
                if j >= n:
                    return f"'[' without a closing ']' in {part!r} (write '[[]' for a literal '[')"
                i = j
            i += 1
    if parts and parts[-1] == "**":
        return "a glob ending in '**' matches directories only; end it with a file pattern"
    return None


def glob_base(pattern: str) -> Path:
    """The deepest directory of ``pattern`` that holds no wildcard (what watchdog watches)."""
    base = Path(pattern).parent
    while is_glob(base):
        base = base.parent
    return base


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._event.set()  # any change below the base directory: look again (cheap)


class GlobTailer:
    """Tail every regular file matching ``pattern`` (an absolute glob) into ``on_records``.

    Arguments as ``FileTailer``'s, plus ``max_files``. ``poll_once()`` discovers new matches
    and polls every tailer once, returning the lines consumed; ``stats`` sums the tailers'
    counters; ``files`` lists the paths tailed now.
    """

    def __init__(
        self,
        pattern: str | Path,
        source_id: str,
        parser: Parser,
        cursor_store: CursorStore,
        on_records: Callable[[TailBatch], None],
        *,
        poll_interval: float = 1.0,
        max_line: int = DEFAULT_MAX_LINE,
        batch_lines: int = 1000,
        use_watchdog: bool = True,
        max_files: int = MAX_FILES,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.pattern = str(Path(pattern).absolute())
        problem = glob_problem(self.pattern)
        if problem is not None:
            raise ValueError(f"bad glob {self.pattern!r}: {problem}")
        self.on_error = on_error
        self.source_id = source_id
        self.parser = parser
        self.cursor_store = cursor_store
        self.on_records = on_records
        self.poll_interval = poll_interval
        self.max_line = max_line
        self.batch_lines = batch_lines
        self.use_watchdog = use_watchdog
        self.max_files = max_files
        self.skipped_files = 0
        self._tailers: dict[Path, FileTailer] = {}
        #: counters of retired tailers, plus this glob's own failed passes
        self._retired = TailStats()
        self._skipped: set[Path] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Observer | None = None  # type: ignore[valid-type]

    @property
    def files(self) -> list[Path]:
        """Paths tailed now, sorted."""
        return sorted(self._tailers)

    @property
    def stats(self) -> TailStats:
        """Counters summed over every tailer this glob has had."""
        total = TailStats()
        for t in [*self._tailers.values()]:
            for f in fields(TailStats):
                if f.name != "last_error":
                    setattr(total, f.name, getattr(total, f.name) + getattr(t.stats, f.name))
            total.last_error = t.stats.last_error or total.last_error
        total.last_error = self._retired.last_error or total.last_error
        for f in fields(TailStats):
            if f.name != "last_error":
                setattr(total, f.name, getattr(total, f.name) + getattr(self._retired, f.name))
        return total

    # -- worker ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (and a watchdog observer on the glob's base directory)."""
        if self._thread is not None:
            raise RuntimeError("tailer already started")
        self._stop.clear()
        base = glob_base(self.pattern)
        if not base.is_dir():
            log.warning("%s: no such directory (yet); %s matches nothing", base, self.pattern)
        elif not any(self._matching()):
            log.warning("%s matches no file (yet); polling for one", self.pattern)
        if self.use_watchdog:
            observer = Observer()
            try:
                recursive = is_glob(Path(self.pattern).parent)
                observer.schedule(_Wake(self._wake), str(base), recursive=recursive)
                observer.start()
                self._observer = observer
            except OSError as exc:
                log.warning(
                    "%s: no file events (%s); polling every %ss", base, exc, self.poll_interval
                )
        self._thread = threading.Thread(target=self._run, name=f"glob-tailer:{self.source_id}")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and join the worker and the observer; close every file. Safe to call twice."""
        self._stop.set()
        self._wake.set()
        for t in self._tailers.values():
            t.request_stop()  # a long backlog stops after the batch in flight
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("%s: tailer still busy after %.0f s; not closing", self.pattern, timeout)
                return
            self._thread = None
        self.close()

    def close(self) -> None:
        """Close every open file (cursors stay committed)."""
        for t in self._tailers.values():
            t.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            guarded_pass(self.poll_once, self._retired, self.pattern, self.on_error)
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    # -- one pass ----------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Pick up new matches, poll every tailer once; the number of lines consumed."""
        matches = self._discover()
        consumed = 0
        for path, tailer in list(self._tailers.items()):
            if self._stop.is_set():
                break
            n = guarded_pass(tailer.poll_once, tailer.stats, path, self.on_error)
            consumed += n
            if n == 0 and path not in matches and not path.exists():
                self._retire(path)
        return consumed

    def _matching(self) -> list[Path]:
        """Regular, uncompressed files matching the glob now, sorted."""
        base = glob_base(self.pattern)
        found = base.glob(str(Path(self.pattern).relative_to(base)))
        return sorted(p for p in found if not p.name.endswith(GZIP_SUFFIX) and p.is_file())

    def _discover(self) -> set[Path]:
        matches: set[Path] = set()
        for path in self._matching():
            matches.add(path)
            if path in self._tailers:
                continue
            if len(self._tailers) >= self.max_files:
                if path not in self._skipped:
                    self._skipped.add(path)
                    self.skipped_files += 1
                    log.warning(
                        "%s: not tailed: already tailing %d files (the limit)",
                        path,
                        self.max_files,
                    )
                continue
            log.info("%s: new file matching %s", path, self.pattern)
            self._tailers[path] = FileTailer(
                path,
                self.source_id,
                self.parser,
                self.cursor_store,
                self.on_records,
                poll_interval=self.poll_interval,
                max_line=self.max_line,
                batch_lines=self.batch_lines,
                use_watchdog=False,
                on_error=self.on_error,
            )
        return matches

    def _retire(self, path: Path) -> None:
        tailer = self._tailers.pop(path)
        tailer.close()
        for f in fields(TailStats):
            if f.name != "last_error":
                setattr(
                    self._retired,
                    f.name,
                    getattr(self._retired, f.name) + getattr(tailer.stats, f.name),
                )
        self._skipped.discard(path)
        log.info("%s: gone; no longer tailed", path)
