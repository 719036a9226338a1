"""Hot reload of the GeoIP database: ``GeoHandle`` holds the current ``GeoDatabase``.

When the file is replaced — renamed over (``mv new.mmdb db.mmdb``, what ``geoipupdate`` does) or
overwritten in place (``cp new.mmdb db.mmdb``) — the handle waits until the file has stopped
changing, opens the new file fully (a private snapshot, see ``GeoDatabase``), validates it
(``GeoDatabase.validate``: metadata, decodable records, location data, probe lookups) and only
then swaps it in under a lock. A file that fails keeps the old database in service, counts one
failure per distinct file version and exposes the error (``status()``, ``on_reload``).

The swapped-out database is not closed: a reader that fetched it just before the swap finishes
its lookup on it, and its memory map is released when the last reference goes. Readers never
see a half-loaded database: ``current`` is one attribute read.

Wake-ups come from watchdog events on the file's directory, with a poll every
``poll_interval`` seconds as a fallback (network file systems deliver no events). One worker
thread plus watchdog's observer, both joined by ``stop()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.observers import Observer

from sentinel.errors import GeoIPError, SentinelError
from sentinel.fswake import FileWake
from sentinel.geo.database import PROBES, VERIFY_RECORDS, GeoDatabase, GeoResult, IPAddress
from sentinel.records import GeoProvenance

log = logging.getLogger(__name__)

#: (device, inode, size, mtime in ns): a file version as the file system shows it
Signature = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """One reload attempt: ``ok`` (no error), ``swapped`` (a new database is now in service),
    ``error`` (why the new file was refused), the ``provenance`` in service afterwards and the
    attempt time ``at`` (UTC epoch seconds)."""

    ok: bool
    swapped: bool
    error: str | None
    provenance: GeoProvenance
    at: float


@dataclass(frozen=True, slots=True)
class GeoStatus:
    """For metrics and logs: the database in service, successful swaps, refused files, the last
    refusal's message, and times (UTC epoch seconds; ``None`` = never)."""

    provenance: GeoProvenance
    reloads: int
    reload_failures: int
    last_error: str | None
    last_attempt: float | None
    last_success: float | None


def _signature(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class GeoHandle:
    """The GeoIP database in service, reloaded when its file changes (module docstring).

    Create with ``GeoHandle.open(path)`` (raises ``GeoIPError`` when the first file is unusable:
    at start-up there is nothing to fall back to). ``settle`` and ``poll_interval`` are seconds;
    ``probes`` and ``verify_records`` go to ``GeoDatabase.validate``. ``on_reload`` is called
    on the worker thread after every attempt with a ``ReloadResult``; its exceptions are logged,
    never propagated.
    """

    def __init__(
        self,
        db: GeoDatabase,
        path: str | Path,
        *,
        snapshot_dir: str | Path | None = None,
        settle: float = 1.0,
        poll_interval: float = 60.0,
        probes: Iterable[str] = PROBES,
        verify_records: int = VERIFY_RECORDS,
        on_reload: Callable[[ReloadResult], None] | None = None,
    ) -> None:
        self.path = Path(path).absolute()
        self.snapshot_dir = snapshot_dir
        self.settle = settle
        self.poll_interval = poll_interval
        self.probes = tuple(probes)
        self.verify_records = verify_records
        self.on_reload = on_reload
        self._db = db
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()  # one attempt at a time (worker or a caller)
        self._loaded_sig = _signature(self.path)
        self._failed_sig: Signature | None = None
        self._reloads = 0
        self._failures = 0
        self._last_error: str | None = None
        self._last_attempt: float | None = None
        self._last_success: float | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Observer | None = None  # type: ignore[valid-type]

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        snapshot_dir: str | Path | None = None,
        settle: float = 1.0,
        poll_interval: float = 60.0,
        probes: Iterable[str] = PROBES,
        verify_records: int = VERIFY_RECORDS,
        on_reload: Callable[[ReloadResult], None] | None = None,
    ) -> GeoHandle:
        """Open and validate ``path``; the worker is not started (call ``start()``)."""
        probes = tuple(probes)
        db = GeoDatabase.open(path, snapshot_dir=snapshot_dir)
        try:
            db.validate(probes=probes, max_records=verify_records)
        except GeoIPError:
            db.close()
            raise
        return cls(
            db,
            path,
            snapshot_dir=snapshot_dir,
            settle=settle,
            poll_interval=poll_interval,
            probes=probes,
            verify_records=verify_records,
            on_reload=on_reload,
        )

    # -- readers -------------------------------------------------------------------------------

    @property
    def current(self) -> GeoDatabase:
        """The database in service. Take it once per decision so that the lookup and the
        provenance recorded with it come from the same file."""
        return self._db

    @property
    def provenance(self) -> GeoProvenance:
        return self._db.provenance

    def lookup(self, ip: str | IPAddress) -> GeoResult:
        """``current.lookup(ip)``."""
        return self._db.lookup(ip)

    def status(self) -> GeoStatus:
        """Counters and the last error, consistent with each other."""
        with self._lock:
            return GeoStatus(
                self._db.provenance,
                self._reloads,
                self._failures,
                self._last_error,
                self._last_attempt,
                self._last_success,
            )

    # -- reloading -----------------------------------------------------------------------------

    def check(self) -> ReloadResult | None:
        """Reload when the file is a version not yet loaded or refused; ``None`` when there is
        nothing new (or the file is missing, or it changed while being read: tried again on the
        next wake-up)."""
        with self._reload_lock:
            sig = _signature(self.path)
            if sig is None or sig == self._loaded_sig or sig == self._failed_sig:
                return None
            return self._reload(sig)

    def reload(self) -> ReloadResult | None:
        """Open, validate and swap in the file now, even a version already seen (an operator's
        "reload" command). Returns the attempt's result, or ``None`` when the file changed while
        it was being read."""
        with self._reload_lock:
            return self._reload(_signature(self.path))

    def _reload(self, before: Signature | None) -> ReloadResult | None:
        now = time.time()
        try:
            new = GeoDatabase.open(self.path, snapshot_dir=self.snapshot_dir)
        except GeoIPError as exc:
            if _signature(self.path) != before:
                return None
            return self._refused(before, now, exc)
        if _signature(self.path) != before:
            new.close()
            self._wake.set()
            return None
        try:
            new.validate(probes=self.probes, max_records=self.verify_records, now=now)
        except GeoIPError as exc:
            new.close()
            return self._refused(before, now, exc)
        with self._lock:
            old = self._db
            swapped = new.provenance.sha256 != old.provenance.sha256
            if swapped:
                self._db = new
                self._reloads += 1
            self._loaded_sig = before
            self._failed_sig = None
            self._last_error = None
            self._last_attempt = self._last_success = now
        if swapped:
            log.info(
                "GeoIP database reloaded: %s %s built %s, sha256 %s",
                self.path,
                new.provenance.database_type,
                new.provenance.build_epoch,
                new.provenance.sha256,
            )
        else:
            new.close()  # same bytes: keep the one in service
        return self._notify(ReloadResult(True, swapped, None, self._db.provenance, now))

    def _refused(self, sig: Signature | None, now: float, exc: SentinelError) -> ReloadResult:
        message = exc.diagnostics()
        with self._lock:
            self._failures += 1
            self._failed_sig = sig
            self._last_error = message
            self._last_attempt = now
        log.error("GeoIP database %s refused, keeping the previous one: %s", self.path, message)
        return self._notify(ReloadResult(False, False, message, self._db.provenance, now))

    def _notify(self, result: ReloadResult) -> ReloadResult:
        if self.on_reload is not None:
            try:
                self.on_reload(result)
            except Exception:  # a metrics/log hook must not stop reloading
                log.exception("GeoIP on_reload hook failed")
        return result

    # -- worker --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (and a watchdog observer on the file's directory)."""
        if self._thread is not None:
            raise RuntimeError("GeoHandle already started")
        self._stop.clear()
        observer = Observer()
        try:
            observer.schedule(FileWake(self.path.name, self._wake), str(self.path.parent))
            observer.start()
            self._observer = observer
        except OSError as exc:
            log.warning("%s: no file events (%s); polling every %ss", self.path, exc,
                        self.poll_interval)  # fmt: skip
        self._thread = threading.Thread(target=self._run, name=f"geoip-reload:{self.path.name}")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and join the worker and the observer. Safe to call twice; the database in
        service stays open (``close()`` closes it)."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        """``stop()``, then close the database in service."""
        self.stop()
        self._db.close()

    def __enter__(self) -> GeoHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not self._settled():
                continue
            try:
                self.check()
            except Exception:  # never let the worker die; the old database stays in service
                log.exception("GeoIP reload of %s failed unexpectedly", self.path)

    def _settled(self) -> bool:
        """Wait until the file's signature holds still for ``settle`` seconds."""
        sig = _signature(self.path)
        while not self._stop.wait(self.settle):
            now = _signature(self.path)
            if now == sig:
                return True
            sig = now
        return False
