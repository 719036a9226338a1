"""The ledger store: an append-only, hash-chained log in SQLite or PostgreSQL (SQLAlchemy Core).

One database may hold several independent logs, told apart by ``log_id``. Tables (schema
version ``SCHEMA_VERSION``, recorded in ``ledger_meta``):

``ledger_entries``
    ``(log_id, seq)`` primary key; ``recorded_at`` (RFC 3339 UTC, µs), ``kind``, ``body`` (the
    record's RFC 8785 canonical bytes, see ``canonical.record_body``), ``leaf_hash``,
    ``prev_hash``, ``chain_hash`` (32-byte SHA-256, see ``hashing``). ``UNIQUE (log_id,
    prev_hash)`` is the second guard against a forked chain.
``ledger_dedup``
    ``(log_id, key) → seq``: at-least-once deliveries are appended once. On SQLite this table
    and ``ledger_tree`` are ``WITHOUT ROWID`` (migration ``0003``): one B-tree per table.
``ledger_cursors``
    ``(log_id, key) → value``: a source's position, committed in the same transaction as the
    records it produced (so a crash never loses or repeats a record).
``ledger_tree`` (schema 2)
    ``(log_id, level, idx) → hash``: every complete perfect subtree of the RFC 9162 Merkle tree
    over the leaf hashes, level ≥ 1 (level 0 is ``ledger_entries.leaf_hash``), written in the
    append transaction, so a root or a proof reads O(log n) nodes and never the log. A
    version-1 database gets its nodes built once by the Alembic migration ``0002`` on open.
``ledger_checkpoints`` (schema 2)
    The signed checkpoints made by ``checkpoint`` (a copy; the anchor is the external
    checkpoint log, see ``checkpoint``).

The schema is versioned with Alembic (``sentinel/ledger/migrations``, version table
``ledger_alembic_version``), migrated by ``open`` under the schema lock.

Each stored record is ``{"v": 1, "log": log_id, "seq": seq, "kind": kind, "recorded_at": ts,
"data": {...}}``. Embedding ``log`` and ``seq`` binds every record to its position: a body
moved to another row or another log no longer matches the row, even if its hashes were
recomputed. ``recorded_at`` is the append time from the injected clock (one value per
``append`` call); it is not guaranteed monotonic if the wall clock steps back.

Serialization of appends (DESIGN.md "Ledger"): SQLite ``BEGIN IMMEDIATE`` (SQLAlchemy's
pysqlite recipe: the driver's own transaction handling is switched off with
``isolation_level = None`` and Sentinel emits ``BEGIN``), PostgreSQL
``pg_advisory_xact_lock(key(log_id))``; the head is read inside the lock. Within one process a
``threading.Lock`` serializes appends too.

SQLite runs in WAL mode with ``synchronous=FULL``: with ``NORMAL`` a power loss may roll back
the last committed transactions, and Sentinel acknowledges a webhook delivery (and advances a
tailer's cursor) only once its record is durable, so each commit is synced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from sentinel import ledgerscan
from sentinel.errors import LedgerError
from sentinel.ledger import merkle, schema
from sentinel.ledger.canonical import (
    MAX_SAFE_INT,
    RECORD_VERSION,
    RecordError,
    canonical_bytes,
)
from sentinel.ledger.checkpoint import (
    Anchor,
    Checkpoint,
    CheckpointError,
    ConsistencyError,
    LoggedCheckpoint,
    SignedCheckpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from sentinel.ledger.hashing import GENESIS, HASH_SIZE, chain_hash, leaf_hash
from sentinel.ledger.note import (
    InvalidSignatureError,
    NoteError,
    Signer,
    UnknownKeyError,
    Verifier,
    open_note,
)
from sentinel.ledger.urls import display_url
from sentinel.timefmt import format_ts, parse_ts, utcnow

SCHEMA_VERSION = schema.SCHEMA_VERSION
#: largest canonical ``data`` accepted per record, bytes
MAX_RECORD_BYTES = 1 << 20
#: most records per ``append`` call
MAX_APPEND_RECORDS = 10_000
#: longest dedup key / cursor key, and cursor value, characters
MAX_KEY_CHARS = 512
MAX_CURSOR_VALUE_CHARS = 4096
#: seconds a SQLite writer waits for the write lock before failing
SQLITE_BUSY_TIMEOUT_S = 60.0
#: SQLite page cache per connection, KiB (random-key index inserts: dedup keys, prev_hash)
SQLITE_CACHE_KIB = 32768
#: page size of a SQLite ledger created from now on, bytes (SQLite's default: 4096); it takes
#: effect only when the file is created: an existing ledger keeps its page size (converting
#: one: ``PRAGMA journal_mode = DELETE; PRAGMA page_size = 16384; VACUUM``, then WAL again).
#: A ~1.1 KB row is a quarter of a 4 KiB page, so a verify reads (``pread``) and decodes a page
#: per four rows; with 16 KiB pages a range verifies in about 10 % less CPU per record, and
#: appends were no slower (bench/README.md "Issue 3 figures").
SQLITE_PAGE_SIZE = 16384
#: WAL bytes written before a commit checkpoints them into the database file (SQLite's
#: default: 1000 pages). A bulk append dirties thousands of random index pages per
#: commit (``uq_ledger_entries_prev``, the dedup keys); checkpointing less often writes a page
#: changed by several commits once. Durability is the WAL's: every commit is still synced.
SQLITE_WAL_AUTOCHECKPOINT_BYTES = 10000 * 4096
DEFAULT_BATCH = 2000
#: rows per read in ``verify`` (about 1 KiB each)
VERIFY_BATCH = 8192
#: records per range ``verify`` hands to one worker
VERIFY_RANGE = 1 << 18
#: with ``progress``, ``verify`` cuts the log into at least this many ranges (not smaller
#: than ``VERIFY_PROGRESS_MIN`` records), so that a log of one default range reports as it goes
VERIFY_PROGRESS_STEPS = 20
VERIFY_PROGRESS_MIN = 8192
#: the largest value of a signed 64-bit integer (SQLite INTEGER, PostgreSQL bigint)
_INT64_MAX = (1 << 63) - 1
#: most worker processes ``verify`` starts by default
VERIFY_MAX_WORKERS = 4
#: PostgreSQL: first log size at which ``append`` runs ANALYZE (then at every doubling)
ANALYZE_MIN_ROWS = 2000

_log = logging.getLogger(__name__)
_LOG_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_KIND_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_IN_CHUNK = 500

metadata = sa.MetaData()

entries_table = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("log_id", sa.String(128), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
    sa.Column("recorded_at", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
    sa.Column("prev_hash", sa.LargeBinary, nullable=False),
    sa.Column("chain_hash", sa.LargeBinary, nullable=False),
    sa.PrimaryKeyConstraint("log_id", "seq", name="pk_ledger_entries"),
    sa.UniqueConstraint("log_id", "prev_hash", name="uq_ledger_entries_prev"),
    sa.Index("ix_ledger_entries_kind", "log_id", "kind", "seq"),
)

dedup_table = sa.Table(
    "ledger_dedup",
    metadata,
    sa.Column("log_id", sa.String(128), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("log_id", "key", name="pk_ledger_dedup"),
    sqlite_with_rowid=False,
)

cursors_table = sa.Table(
    "ledger_cursors",
    metadata,
    sa.Column("log_id", sa.String(128), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("log_id", "key", name="pk_ledger_cursors"),
)

meta_table = sa.Table(
    "ledger_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

tree_table = sa.Table(
    "ledger_tree",
    metadata,
    sa.Column("log_id", sa.String(128), nullable=False),
    sa.Column("level", sa.SmallInteger, nullable=False, autoincrement=False),
    sa.Column("idx", sa.BigInteger, nullable=False, autoincrement=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
    sa.PrimaryKeyConstraint("log_id", "level", "idx", name="pk_ledger_tree"),
    sqlite_with_rowid=False,
)

checkpoints_table = sa.Table(
    "ledger_checkpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("log_id", sa.String(128), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary, nullable=False),
    sa.Column("vkey", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Index("ix_ledger_checkpoints_log", "log_id", "size"),
)


class VerifyStatus(StrEnum):
    """Outcome of ``Ledger.verify`` (DESIGN.md "Ledger").

    ``VALID``: chain and tree check out and (with an anchor) the latest external checkpoint
    covers the whole log; ``VALID_UNPINNED``: they check out but records after the last
    checkpoint are not covered by one; ``UNVERIFIABLE``: a checkpoint is signed by no known
    key, or the key material is missing; ``INVALID``: tampering found.
    """

    VALID = "valid"
    VALID_UNPINNED = "valid-unpinned"
    UNVERIFIABLE = "unverifiable"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one ``append`` did: records written, duplicates skipped, seq range written."""

    appended: int
    duplicates: int
    first_seq: int | None
    last_seq: int | None
    #: indices (into the ``records`` passed to ``append``) of the records actually written
    accepted: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Verification outcome. ``size`` is the number of sequence numbers the log claims
    (max seq + 1); ``first_bad_seq`` and ``problem`` are set when ``status`` is invalid;
    ``head_hash`` is the last verified chain hash, lowercase hex."""

    status: VerifyStatus
    size: int
    first_bad_seq: int | None
    problem: str | None
    records_checked: int
    head_hash: str

    #: RFC 9162 root (hex) recomputed from the records, "" when not reached
    root: str = ""
    #: size of the latest external checkpoint seen (``None``: none, or no anchor)
    checkpoint_size: int | None = None
    #: checkpoints in the external log checked against the records
    checkpoints_checked: int = 0
    #: which range verifier produced the outcome: ``"c"`` (every range accepted by the
    #: compiled accelerator), ``"python"`` (the reference ``ledgerscan.scan_range`` only: not
    #: SQLite, accelerator not built or turned off) or ``"c+python"`` (the accelerator ran
    #: and declined some or all ranges, and the reference checked those)
    verifier: str = "python"

    @property
    def ok(self) -> bool:
        """True for ``valid`` and ``valid-unpinned``."""
        return self.status in (VerifyStatus.VALID, VerifyStatus.VALID_UNPINNED)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with the field names above."""
        return {
            "status": str(self.status),
            "size": self.size,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "records_checked": self.records_checked,
            "head_hash": self.head_hash,
            "root": self.root,
            "checkpoint_size": self.checkpoint_size,
            "checkpoints_checked": self.checkpoints_checked,
            "verifier": self.verifier,
        }


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 9162 inclusion proof of record ``seq`` in the tree of ``size`` records.

    ``leaf_hash`` = SHA-256(0x00 ‖ body); ``path`` leaf-side first; ``root`` the tree's root.
    Check with ``merkle.verify_inclusion(seq, size, leaf_hash, path, root)``.
    """

    seq: int
    size: int
    leaf_hash: bytes
    path: tuple[bytes, ...]
    root: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "size": self.size,
            "leaf_hash": self.leaf_hash.hex(),
            "path": [p.hex() for p in self.path],
            "root": self.root.hex(),
        }


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """RFC 9162 consistency proof that the tree of ``new`` records extends that of ``old``.

    Check with ``merkle.verify_consistency(old, new, old_root, new_root, path)``.
    """

    old: int
    new: int
    old_root: bytes
    new_root: bytes
    path: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "old_root": self.old_root.hex(),
            "new_root": self.new_root.hex(),
            "path": [p.hex() for p in self.path],
        }


class Head(NamedTuple):
    """Last record's ``seq`` and ``chain_hash``; ``(-1, GENESIS)`` for an empty log."""

    seq: int
    chain_hash: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored row. Hashes are raw 32-byte digests; ``body`` the canonical record bytes."""

    seq: int
    recorded_at: str
    kind: str
    body: bytes
    leaf_hash: bytes
    prev_hash: bytes
    chain_hash: bytes

    def record(self) -> dict[str, Any]:
        """The decoded record ``{"v", "log", "seq", "kind", "recorded_at", "data"}``.

        Raises ``LedgerError`` if the body is not a JSON object (a damaged row).
        """
        try:
            value = json.loads(self.body)
        except ValueError as exc:
            raise LedgerError(f"ledger record {self.seq} is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise LedgerError(f"ledger record {self.seq} is not a JSON object")
        return value


def _lock_key(log_id: str) -> int:
    digest = hashlib.sha256(b"sentinel.ledger\x00" + log_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _db_error(action: str, exc: Exception) -> LedgerError:
    orig = getattr(exc, "orig", None)
    detail = str(orig if orig is not None else exc).strip().splitlines()[0]
    return LedgerError(f"ledger: {action} failed: {detail}")


_SCHEMA_LOCK_KEY = _lock_key("\x00schema")

_ENTRY_INSERT_COLUMNS = (
    "log_id",
    "seq",
    "recorded_at",
    "kind",
    "body",
    "leaf_hash",
    "prev_hash",
    "chain_hash",
)

_ENTRY_COLUMNS = (
    entries_table.c.seq,
    entries_table.c.recorded_at,
    entries_table.c.kind,
    entries_table.c.body,
    entries_table.c.leaf_hash,
    entries_table.c.prev_hash,
    entries_table.c.chain_hash,
)


class Ledger:
    """A hash-chained, append-only log in one SQL database. Create with ``Ledger.open``.

    Thread-safe; safe across processes (the database lock). Close with ``close()`` or use it
    as a context manager.
    """

    def __init__(
        self,
        engine: sa.Engine,
        log_id: str,
        clock: Callable[[], datetime] = utcnow,
        anchor: Anchor | None = None,
    ) -> None:
        self._engine = engine
        self._log_id = log_id
        self._clock = clock
        self.anchor = anchor
        self._lock = threading.Lock()
        self._sqlite = engine.dialect.name == "sqlite"
        self._lock_key = _lock_key(log_id)
        self._log_json = canonical_bytes(log_id)
        self._analyze_at = ANALYZE_MIN_ROWS
        #: canonical bytes of the kinds seen (validated once)
        self._kinds: dict[str, bytes] = {}
        #: SQLite: the read-only URI verify workers open (``""`` for PostgreSQL)
        self._sqlite_uri = ""
        dbapi = engine.dialect.dbapi
        self._dbapi_errors: type[Exception] = dbapi.Error if dbapi is not None else LedgerError

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        log_id: str = "sentinel",
        clock: Callable[[], datetime] = utcnow,
        anchor: Anchor | None = None,
        read_only: bool = False,
    ) -> Ledger:
        """Open (creating or migrating the schema) the ledger at SQLAlchemy ``url``.

        ``sqlite:///PATH`` (file only; its directory must exist) or ``postgresql://…`` /
        ``postgresql+psycopg://…`` (psycopg 3). ``clock`` returns aware datetimes and stamps
        ``recorded_at``. ``anchor`` (external checkpoint log + trusted keys, see
        ``checkpoint.anchor_from_settings``) is used by ``verify`` and ``checkpoint`` when they
        are not given one. The schema is migrated to the current version with the Alembic
        migrations in ``sentinel/ledger/migrations`` (a version-1 database gets its Merkle
        tree built once). Raises ``LedgerError`` for an unsupported URL, an unreachable
        database, or a schema version this code does not know.

        ``read_only=True`` (``sentinel ledger verify``) creates, migrates and writes nothing:
        SQLite is opened with a ``mode=ro`` URI and ``PRAGMA query_only`` (and, when the
        file or its directory is not writable, ``immutable=1``: SQLite cannot take its WAL
        locks there, so the copy must not change while it is read — a WAL file with
        uncheckpointed records beside it is refused), PostgreSQL sessions with
        ``default_transaction_read_only``; a missing file, a database that is not a ledger,
        and a schema revision other than ``schema.HEAD`` (older: not migrated; newer) raise
        ``LedgerError``. Appending to a read-only ledger raises ``LedgerError`` from the
        database.
        """
        if not isinstance(log_id, str) or not _LOG_ID_RE.fullmatch(log_id):
            raise LedgerError(
                f"ledger: log id {log_id!r} must be 1-128 of A-Z a-z 0-9 . _ : / - "
                "and start with a letter or digit"
            )
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise LedgerError(f"ledger: not a database URL: {url!r}") from exc
        backend = parsed.get_backend_name()
        shown = display_url(parsed)
        sqlite_uri = ""
        if backend == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise LedgerError(f"ledger: {shown}: SQLite ledger needs a file path")
            path = Path(parsed.database)
            if path.expanduser().is_dir():
                raise LedgerError(f"ledger: {path}: is a directory, not a database file")
            sqlite_uri = _sqlite_ro_uri(path, read_only)
            if read_only:
                uri = sqlite_uri
                engine = sa.create_engine(
                    "sqlite://",
                    creator=lambda: sqlite3.connect(
                        uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False
                    ),
                )
            else:
                _create_private(path)
                engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            _install_sqlite_hooks(engine, read_only)
        elif backend == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            elif parsed.drivername != "postgresql+psycopg":
                raise LedgerError(f"ledger: {shown}: use the psycopg 3 driver (postgresql+psycopg)")
            args = {"options": "-c default_transaction_read_only=on"} if read_only else {}
            engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args=args)
        else:
            raise LedgerError(f"ledger: {shown}: unsupported database (sqlite or postgresql)")
        ledger = cls(engine, log_id, clock, anchor)
        ledger._sqlite_uri = sqlite_uri
        try:
            if read_only:
                ledger._check_schema(shown)
            else:
                ledger._create_schema()
            ledger._init_analyze_threshold()
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise _db_error(f"opening {shown}", exc) from exc
        except LedgerError:
            engine.dispose()
            raise
        return ledger

    def _create_schema(self) -> None:
        # fast path: already at the current revision (no lock, no Alembic start-up)
        with self._engine.connect() as conn:
            current = schema.current_revision(conn)
            if current == schema.HEAD:
                found = conn.execute(
                    sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).scalar_one_or_none()
                if found == str(SCHEMA_VERSION):
                    return
        # one lock for the whole database: ledgers with different log ids share the tables
        with self._write_tx(_SCHEMA_LOCK_KEY) as conn:
            schema.upgrade(conn)

    def _check_schema(self, shown: str) -> None:
        """Read-only open: the database must be a ledger at ``schema.HEAD`` (never migrated)."""
        with self._engine.connect() as conn:
            if not sa.inspect(conn).has_table("ledger_entries"):
                raise LedgerError(
                    f"ledger: {shown}: not a Sentinel ledger (no ledger_entries table)"
                )
            current = schema.current_revision(conn)
            found = conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one_or_none()
        if current in schema.READABLE and found == str(SCHEMA_VERSION):
            return
        if current is not None and current > schema.HEAD:
            why = "written by a newer Sentinel: verify it with that version"
        else:
            why = (
                "an older schema: opened read-only, it is not migrated — let this Sentinel "
                "open a copy for writing (`sentinel run` or `ledger checkpoint --sign` "
                "migrate it), then read it"
            )
        raise LedgerError(
            f"ledger: {shown}: schema revision {current or 'none'} (version {found}), this "
            f"Sentinel reads {schema.HEAD} (version {SCHEMA_VERSION}): {why}"
        )

    def _init_analyze_threshold(self) -> None:
        """PostgreSQL: next size at which ``append`` refreshes the planner statistics.

        With statistics from a near-empty table (autovacuum off, or lagging behind a fast
        ingest) PostgreSQL filtered the dedup lookup over every key of the log instead of
        probing the index with the batch's keys: 2 s per 500-record batch at 77k keys.
        ``ANALYZE`` at each doubling of the log keeps every lookup an index probe for O(log n)
        cost in total.
        """
        if self._sqlite:
            return
        with self._engine.connect() as conn:
            tuples = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE relname = 'ledger_dedup'")
            ).scalar_one_or_none()
        self._analyze_at = max(ANALYZE_MIN_ROWS, 2 * int(tuples or 0))

    def _maybe_analyze(self, size: int) -> None:
        if self._sqlite or size < self._analyze_at:
            return
        self._analyze_at = 2 * size
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.text("ANALYZE ledger_entries, ledger_dedup, ledger_tree"))
        except sa.exc.SQLAlchemyError as exc:  # the records are committed; only speed suffers
            _log.warning("ledger: ANALYZE failed: %s", exc)

    @property
    def log_id(self) -> str:
        return self._log_id

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return str(self._engine.dialect.name)

    def close(self) -> None:
        """Release every database connection. Safe to call twice."""
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _write_tx(self, lock_key: int | None = None) -> Iterator[sa.Connection]:
        """A write transaction holding the log's lock (see module docstring).

        SQLite's ``BEGIN IMMEDIATE`` locks the whole database; on PostgreSQL ``lock_key``
        (default: this log's key) names the advisory lock taken.
        """
        with self._engine.connect() as conn:
            if self._sqlite:
                conn.execution_options(sentinel_begin="IMMEDIATE")
            with conn.begin():
                if not self._sqlite:
                    key = self._lock_key if lock_key is None else lock_key
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
                yield conn

    # -- appending -------------------------------------------------------------------------

    def append(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        dedup_keys: Sequence[str | None] | None = None,
        cursors: Mapping[str, str] | None = None,
    ) -> AppendResult:
        """Append ``records`` (each ``{"kind": str, "data": {...}}``) in one transaction.

        ``dedup_keys[i]`` (optional, ≤ 512 chars) skips record ``i`` when the key is already
        in the log or earlier in this batch; skipped records are counted in ``duplicates``.
        ``cursors`` (key → value) are upserted in the same transaction. ``kind`` matches
        ``[a-z][a-z0-9_.-]{0,63}``; ``data`` obeys ``canonical`` rules and is at most
        ``MAX_RECORD_BYTES`` once canonical. At most ``MAX_APPEND_RECORDS`` records per call.

        Raises ``RecordError`` (before touching the database) for a bad record, key or
        cursor, and ``LedgerError`` when the database fails; nothing is written then.
        """
        n = len(records)
        if n > MAX_APPEND_RECORDS:
            raise RecordError("$", f"{n} records in one append (at most {MAX_APPEND_RECORDS})")
        keys: Sequence[str | None] = [None] * n if dedup_keys is None else dedup_keys
        if len(keys) != n:
            raise RecordError("$", f"{len(keys)} dedup keys for {n} records")
        prepared = [self._prepare(i, rec, keys[i]) for i, rec in enumerate(records)]
        cursor_rows = self._prepare_cursors(cursors or {})
        if not prepared and not cursor_rows:
            return AppendResult(0, 0, None, None)
        recorded_at = format_ts(self._clock())
        rec_at_json = canonical_bytes(recorded_at)
        try:
            with self._lock:
                with self._write_tx() as conn:
                    result = self._append_locked(
                        conn, prepared, cursor_rows, recorded_at, rec_at_json
                    )
                if result.last_seq is not None:
                    self._maybe_analyze(result.last_seq + 1)
                return result
        except sa.exc.IntegrityError as exc:
            raise _db_error("append (another writer forked the chain?)", exc) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise _db_error("append", exc) from exc
        except self._dbapi_errors as exc:  # raised by the DB-API statements of _append_rows
            action = "append"
            if isinstance(exc, self._engine.dialect.dbapi.IntegrityError):  # type: ignore[union-attr]
                action = "append (another writer forked the chain?)"
            raise _db_error(action, exc) from exc

    def _prepare(
        self, index: int, rec: Mapping[str, Any], key: str | None
    ) -> tuple[str, bytes, bytes, str | None]:
        if type(rec) is not dict and not isinstance(rec, Mapping):  # dict: skip the ABC check
            raise RecordError(f"$[{index}]", "record is not a mapping {kind, data}")
        if len(rec) != 2 or "kind" not in rec or "data" not in rec:
            extra = set(rec) - {"kind", "data"}
            if extra:
                raise RecordError(f"$[{index}]", f"unexpected field(s) {sorted(map(str, extra))}")
        kind = rec.get("kind")
        kind_json = self._kinds.get(kind) if type(kind) is str else None
        if kind_json is None:
            if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
                raise RecordError(
                    f"$[{index}].kind", f"kind {kind!r} must match [a-z][a-z0-9_.-]{{0,63}}"
                )
            kind_json = canonical_bytes(kind)
            if type(kind) is str and len(self._kinds) < 256:
                self._kinds[kind] = kind_json
        data = rec.get("data")
        if type(data) is not dict and not isinstance(data, Mapping):
            raise RecordError(f"$[{index}].data", "data must be an object")
        data_json = canonical_bytes(data, path=f"$[{index}].data", depth=1)
        if len(data_json) > MAX_RECORD_BYTES:
            raise RecordError(
                f"$[{index}].data",
                f"{len(data_json)} bytes canonical (at most {MAX_RECORD_BYTES})",
            )
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS):
            raise RecordError(f"dedup_keys[{index}]", f"must be 1-{MAX_KEY_CHARS} characters")
        assert isinstance(kind, str)
        return kind, kind_json, data_json, key

    @staticmethod
    def _prepare_cursors(cursors: Mapping[str, str]) -> list[tuple[str, str]]:
        rows = []
        for key, value in cursors.items():
            if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
                raise RecordError(f"cursors[{key!r}]", f"key must be 1-{MAX_KEY_CHARS} characters")
            if not isinstance(value, str) or len(value) > MAX_CURSOR_VALUE_CHARS:
                raise RecordError(
                    f"cursors[{key!r}]", f"value must be a string ≤ {MAX_CURSOR_VALUE_CHARS}"
                )
            rows.append((key, value))
        return rows

    def _append_locked(
        self,
        conn: sa.Connection,
        prepared: list[tuple[str, bytes, bytes, str | None]],
        cursor_rows: list[tuple[str, str]],
        recorded_at: str,
        rec_at_json: bytes,
    ) -> AppendResult:
        """The body of ``append`` under the lock: plain DB-API statements on ``conn``'s
        connection, inside its transaction (SQLAlchemy's per-row parameter processing cost
        more than the hashing)."""
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        cur = dbapi.cursor()
        try:
            return self._append_rows(conn, cur, prepared, cursor_rows, recorded_at, rec_at_json)
        finally:
            cur.close()

    def _append_rows(
        self,
        conn: sa.Connection,
        cur: Any,
        prepared: list[tuple[str, bytes, bytes, str | None]],
        cursor_rows: list[tuple[str, str]],
        recorded_at: str,
        rec_at_json: bytes,
    ) -> AppendResult:
        log_id = self._log_id
        ph = "?" if self._sqlite else "%s"
        cur.execute(
            f"SELECT seq, chain_hash FROM ledger_entries WHERE log_id = {ph} "  # noqa: S608
            "ORDER BY seq DESC LIMIT 1",
            (log_id,),
        )
        found = cur.fetchone()
        head = Head(-1, GENESIS) if found is None else Head(int(found[0]), bytes(found[1]))
        batch_keys = [k for _, _, _, k in prepared if k is not None]
        present: set[str] = set()
        for start in range(0, len(batch_keys), _IN_CHUNK):
            chunk = batch_keys[start : start + _IN_CHUNK]
            if self._sqlite:
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    f"SELECT key FROM ledger_dedup WHERE log_id = ? AND key IN ({marks})",  # noqa: S608
                    (log_id, *chunk),
                )
            else:  # one array parameter: one statement shape for psycopg to prepare
                cur.execute(
                    "SELECT key FROM ledger_dedup WHERE log_id = %s AND key = ANY(%s)",
                    (log_id, chunk),
                )
            present.update(str(k) for (k,) in cur.fetchall())
        seq = head.seq + 1
        prev = head.chain_hash
        sha256 = hashlib.sha256
        log_json = self._log_json
        version_tail = b',"v":%d}' % RECORD_VERSION
        rows: list[tuple[str, int, str, str, bytes, bytes, bytes, bytes]] = []
        dedup_rows: list[tuple[str, str, int]] = []
        duplicates = 0
        accepted: list[int] = []
        for index, (kind, kind_json, data_json, key) in enumerate(prepared):
            if key is not None:
                if key in present:
                    duplicates += 1
                    continue
                present.add(key)
                dedup_rows.append((log_id, key, seq))
            if seq > MAX_SAFE_INT:
                raise LedgerError("ledger: sequence numbers exhausted")
            # record_body(), inlined: this loop is the ingest hot path
            body = b"".join(
                (
                    b'{"data":',
                    data_json,
                    b',"kind":',
                    kind_json,
                    b',"log":',
                    log_json,
                    b',"recorded_at":',
                    rec_at_json,
                    b',"seq":%d' % seq,
                    version_tail,
                )
            )
            leaf = sha256(b"\x00" + body).digest()
            chained = sha256(b"\x02" + prev + leaf).digest()
            rows.append((log_id, seq, recorded_at, kind, body, leaf, prev, chained))
            prev = chained
            seq += 1
            accepted.append(index)
        if rows:
            self._insert(cur, "ledger_entries", _ENTRY_INSERT_COLUMNS, rows)
            nodes = self._new_nodes(conn, head.seq + 1, [r[5] for r in rows])
            if nodes:
                self._insert(cur, "ledger_tree", ("log_id", "level", "idx", "hash"), nodes)
        if dedup_rows:
            self._insert(cur, "ledger_dedup", ("log_id", "key", "seq"), dedup_rows)
        if cursor_rows:
            self._upsert_cursors(conn, cursor_rows, recorded_at)
        if not rows:
            return AppendResult(0, duplicates, None, None)
        return AppendResult(len(rows), duplicates, rows[0][1], rows[-1][1], tuple(accepted))

    def _insert(
        self, cur: Any, table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Bulk insert through the DB-API: ``executemany`` (SQLite) or ``COPY`` (PostgreSQL)."""
        names = ", ".join(columns)
        if self._sqlite:
            marks = ", ".join("?" * len(columns))
            cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608
            return
        with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _new_nodes(
        self, conn: sa.Connection, size: int, leaves: list[bytes]
    ) -> list[tuple[str, int, int, bytes]]:
        """Tree nodes (level ≥ 1) completed by appending ``leaves`` to a log of ``size``:
        ``(log_id, level, idx, hash)`` rows."""
        keys = merkle.frontier(size)
        found = self._fetch_nodes(conn, keys)
        stack = [(level, found[(level, idx)]) for level, idx in keys]
        nodes: list[tuple[str, int, int, bytes]] = []
        sha256 = hashlib.sha256
        log_id = self._log_id
        count = size
        for leaf in leaves:
            stack.append((0, leaf))
            count += 1
            while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
                level, right = stack.pop()
                node = sha256(b"\x01" + stack.pop()[1] + right).digest()
                stack.append((level + 1, node))
                nodes.append((log_id, level + 1, (count >> (level + 1)) - 1, node))
        return nodes

    def _fetch_nodes(
        self, conn: sa.Connection, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Perfect-subtree hashes by ``(level, index)``; level 0 from ``leaf_hash``.

        Raises ``LedgerError`` when a node is missing (a damaged or truncated tree).
        """
        out: dict[tuple[int, int], bytes] = {}
        leaves = [idx for level, idx in keys if level == 0]
        inner = [(level, idx) for level, idx in keys if level > 0]
        if leaves:
            e = entries_table
            for seq, value in conn.execute(
                sa.select(e.c.seq, e.c.leaf_hash).where(
                    e.c.log_id == self._log_id, e.c.seq.in_(leaves)
                )
            ):
                out[(0, int(seq))] = bytes(value)
        t = tree_table
        for start in range(0, len(inner), 64):
            # one primary-key probe per node, whatever the planner statistics say
            probes = [
                sa.select(t.c.level, t.c.idx, t.c.hash).where(
                    t.c.log_id == self._log_id, t.c.level == lv, t.c.idx == ix
                )
                for lv, ix in inner[start : start + 64]
            ]
            query = probes[0] if len(probes) == 1 else sa.union_all(*probes)
            for level, idx, value in conn.execute(query).all():
                out[(int(level), int(idx))] = bytes(value)
        missing = [k for k in keys if k not in out]
        if missing:
            level, idx = missing[0]
            raise LedgerError(
                f"ledger {self._log_id!r}: Merkle tree node (level {level}, index {idx}) is "
                "missing (tree damaged or log truncated)"
            )
        return out

    # -- Merkle tree -----------------------------------------------------------------------

    def _size_in(self, conn: sa.Connection, size: int | None) -> int:
        current = self._head(conn).seq + 1
        if size is None:
            return current
        if not 0 <= size <= current:
            raise ValueError(f"tree size {size} is not in 0..{current}")
        return size

    @contextmanager
    def _read(self, action: str) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise _db_error(action, exc) from exc

    def root(self, size: int | None = None) -> bytes:
        """RFC 9162 root (32 bytes) of the first ``size`` records (default: all).

        O(log n) node reads from the stored subtree hashes. Raises ``ValueError`` for a size
        beyond the log, ``LedgerError`` for a missing node or database failure.
        """
        with self._read("computing a root") as conn:
            n = self._size_in(conn, size)
            nodes = self._fetch_nodes(conn, merkle.needed_for_root(n))
        return merkle.root(n, lambda lv, ix: nodes[(lv, ix)])

    def inclusion_proof(self, seq: int, size: int | None = None) -> InclusionProof:
        """Inclusion proof of record ``seq`` in the tree of ``size`` records (default: all).

        Raises ``ValueError`` unless ``0 <= seq < size <= log size``; ``LedgerError`` as
        ``root``.
        """
        with self._read("building an inclusion proof") as conn:
            n = self._size_in(conn, size)
            if not 0 <= seq < n:
                raise ValueError(f"record {seq} is not in a tree of size {n}")
            keys = [*merkle.needed_for_inclusion(seq, n), *merkle.needed_for_root(n), (0, seq)]
            nodes = self._fetch_nodes(conn, keys)

        def get(level: int, index: int) -> bytes:
            return nodes[(level, index)]

        path = merkle.inclusion_path(seq, n, get)
        return InclusionProof(seq, n, nodes[(0, seq)], tuple(path), merkle.root(n, get))

    def consistency_proof(self, old: int, new: int | None = None) -> ConsistencyProof:
        """Proof that the tree of ``new`` records (default: all) extends that of ``old``.

        ``old == new`` gives an empty path. Raises ``ValueError`` unless
        ``0 < old <= new <= log size``; ``LedgerError`` as ``root``.
        """
        with self._read("building a consistency proof") as conn:
            n = self._size_in(conn, new)
            if not 0 < old <= n:
                raise ValueError(f"no consistency proof from size {old} to size {n}")
            keys = [
                *merkle.needed_for_consistency(old, n),
                *merkle.needed_for_root(old),
                *merkle.needed_for_root(n),
            ]
            nodes = self._fetch_nodes(conn, keys)

        def get(level: int, index: int) -> bytes:
            return nodes[(level, index)]

        path = merkle.consistency_path(old, n, get)
        return ConsistencyProof(old, n, merkle.root(old, get), merkle.root(n, get), tuple(path))

    # -- checkpoints -----------------------------------------------------------------------

    def checkpoint(
        self,
        signer: Signer,
        *,
        anchor: Anchor | None = None,
        extensions: Sequence[str] = (),
    ) -> SignedCheckpoint:
        """Sign a checkpoint of the whole log now; store it and append it to the external log.

        Under the external log's lock: the last checkpoint there must verify under a trusted
        key (``anchor.verifiers`` or ``signer``) and the ledger must extend it — an RFC 9162
        consistency proof from the stored tree, checked with ``merkle.verify_consistency``.
        When the ledger has not grown and the key is unchanged, the last checkpoint is
        returned as is (nothing written). The origin is ``anchor.origin`` (the signer's name
        should be the same). Raises ``ConsistencyError`` (refused, loudly: the ledger was
        truncated, rolled back or rewritten since the last checkpoint), ``CheckpointError``
        (no anchor, unreadable log, unverifiable last checkpoint), ``LedgerError``.
        """
        anchor = anchor or self.anchor
        if anchor is None:
            raise CheckpointError(f"ledger {self._log_id!r}: no external checkpoint log configured")
        trusted = (*anchor.verifiers, signer.verifier)
        with anchor.log.locked():
            last = anchor.log.latest()
            with self._read("reading the tree") as conn:
                size = self._size_in(conn, None)
                keys = merkle.needed_for_root(size)
                if last is not None and 0 < last.size <= size:
                    keys += merkle.needed_for_consistency(last.size, size)
                nodes = self._fetch_nodes(conn, keys)

            def get(level: int, index: int) -> bytes:
                return nodes[(level, index)]

            root = merkle.root(size, get)
            if last is not None:
                self._check_extends(anchor.log.path, last, trusted, size, root, get)
                if last.size == size and last.vkey == signer.vkey:
                    return SignedCheckpoint(
                        open_checkpoint(last.note, trusted), last.note, last.vkey, last.created_at
                    )
            body = Checkpoint(anchor.origin, size, root, tuple(extensions))
            signed = sign_checkpoint(body, signer, format_ts(self._clock()))
            anchor.log.append(signed)
        try:
            with self._write_tx() as conn:
                conn.execute(
                    checkpoints_table.insert().values(
                        log_id=self._log_id,
                        size=size,
                        root=root,
                        vkey=signed.vkey,
                        note=signed.note,
                        created_at=signed.created_at,
                    )
                )
        except sa.exc.SQLAlchemyError as exc:  # the external copy is the anchor; say so
            raise _db_error("storing the checkpoint (it is in the external log)", exc) from exc
        _log.info("ledger %s: signed checkpoint at size %d", self._log_id, size)
        return signed

    @staticmethod
    def _check_extends(
        path: Path,
        last: LoggedCheckpoint,
        trusted: Sequence[Verifier],
        size: int,
        root: bytes,
        get: merkle.NodeGetter,
    ) -> None:
        where = f"line {last.line} of {path}"
        try:
            cp = open_checkpoint(last.note, trusted)
        except UnknownKeyError as exc:
            raise CheckpointError(
                f"refusing to sign: the last external checkpoint ({where}) is signed by an "
                f"unknown key ({exc}); add its vkey to the key history"
            ) from exc
        except NoteError as exc:
            raise ConsistencyError(
                f"refusing to sign: the last external checkpoint ({where}) is bad: {exc}"
            ) from exc
        if (cp.size, cp.root) != (last.size, last.root):
            raise ConsistencyError(
                f"refusing to sign: external checkpoint {where} differs from its signed note"
            )
        if cp.size > size:
            raise ConsistencyError(
                f"refusing to sign: the ledger has {size} records but the last external "
                f"checkpoint covers {cp.size} (truncated or rolled back)"
            )
        if cp.size == 0:
            return
        try:
            merkle.verify_consistency(
                cp.size, size, cp.root, root, merkle.consistency_path(cp.size, size, get)
            )
        except merkle.ProofError as exc:
            raise ConsistencyError(
                f"refusing to sign: the ledger does not extend the last external checkpoint "
                f"(size {cp.size}): {exc} (rewritten or rolled back)"
            ) from exc

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The last checkpoint stored in the database (unverified copy), or ``None``."""
        c = checkpoints_table
        with self._read("reading checkpoints") as conn:
            found = conn.execute(
                sa.select(c.c.note, c.c.vkey, c.c.created_at)
                .where(c.c.log_id == self._log_id)
                .order_by(c.c.id.desc())
                .limit(1)
            ).first()
        if found is None:
            return None
        note, vkey, created = str(found[0]), str(found[1]), str(found[2])
        text = open_note(note, [Verifier.from_vkey(vkey)]).text
        return SignedCheckpoint(parse_checkpoint(text), note, vkey, created)

    def _upsert_cursors(
        self, conn: sa.Connection, cursor_rows: list[tuple[str, str]], now: str
    ) -> None:
        values = [
            {"log_id": self._log_id, "key": k, "value": v, "updated_at": now}
            for k, v in cursor_rows
        ]
        stmt: Any
        if self._sqlite:
            stmt = sqlite_dialect.insert(cursors_table)
        else:
            stmt = pg_dialect.insert(cursors_table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[cursors_table.c.log_id, cursors_table.c.key],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        conn.execute(stmt, values)

    # -- reading ---------------------------------------------------------------------------

    def _head(self, conn: sa.Connection) -> Head:
        row = conn.execute(
            sa.select(entries_table.c.seq, entries_table.c.chain_hash)
            .where(entries_table.c.log_id == self._log_id)
            .order_by(entries_table.c.seq.desc())
            .limit(1)
        ).first()
        if row is None:
            return Head(-1, GENESIS)
        return Head(self._seq_of(row[0]), bytes(row[1]))

    def _node_beyond(self, reader: _RawReader, size: int) -> str | None:
        """The problem of a stored Merkle node that no tree of ``size`` records has, if any:
        a level below 1 or at least ``size.bit_length()`` (wider than the log), or a
        negative index, or one whose leaves ``idx·2^level … (idx+1)·2^level − 1`` do not all
        lie below ``size`` (``idx >= size >> level``). Records deleted from the tail with
        their tree left behind show so, or a node added. One statement of primary-key
        range probes, two per level (about 40 for a million records); the lowest level is
        named first. On SQLite a TEXT or BLOB level or index sorts above every number, so
        it is found too (https://sqlite.org/datatype3.html#sort_order)."""
        ph = reader.ph
        top = size.bit_length()
        probe = (
            "SELECT * FROM (SELECT level, idx FROM ledger_tree WHERE log_id = {ph} AND {cond} "
            "ORDER BY level, idx LIMIT 1) AS p{n}"
        )
        conds: list[tuple[str, tuple[Any, ...]]] = [(f"level < {ph}", (1,))]
        for level in range(1, top):
            conds.append((f"level = {ph} AND idx < {ph}", (level, 0)))
            conds.append((f"level = {ph} AND idx >= {ph}", (level, size >> level)))
        conds.append((f"level >= {ph}", (max(top, 1),)))
        params: list[Any] = []
        parts = []
        for n, (cond, values) in enumerate(conds):
            parts.append(probe.format(ph=ph, cond=cond, n=n))
            params += [self._log_id, *values]
        rows = reader.fetch(" UNION ALL ".join(parts), tuple(params))
        if not rows:
            return None
        level, idx = rows[0]
        if type(level) is int and type(idx) is int and level >= 1 and idx >= 0:
            return (
                f"stored Merkle node (level {level}, index {idx}) over records "
                f"{idx << level}..{((idx + 1) << level) - 1} is beyond the log's size "
                f"({size} records): records deleted from the tail, or a node added"
            )
        return (
            f"stored Merkle node (level {level!r}, index {idx!r}) cannot exist in an "
            "RFC 9162 tree: a node added"
        )

    def _seq_of(self, value: object) -> int:
        """A stored ``seq``; ``LedgerError`` if it is not an integer (SQLite keeps a TEXT, BLOB
        or REAL value in any column, and sorts TEXT and BLOB after every number)."""
        if type(value) is not int:
            raise LedgerError(
                f"ledger: log {self._log_id!r} has a record with a non-integer sequence number "
                f"({value!r}): the database was modified; `sentinel ledger verify` names the "
                "first bad record"
            )
        return value

    def _verify_size(self, reader: _RawReader) -> tuple[int, object | None]:
        """``(size, stray)`` for ``verify``: size from the highest *numeric* seq (a REAL is
        floored; the scan names it), and on SQLite the lowest seq stored as TEXT or BLOB
        (``stray``, ``None`` when there is none). SQLite sorts those after every number
        (https://sqlite.org/datatype3.html#sort_order), so ``_head`` would take one for the
        head; both are one index probe on the ``(log_id, seq)`` key. PostgreSQL's ``bigint``
        cannot hold one."""
        ph = reader.ph
        top = f" AND seq <= {_INT64_MAX}" if ph == "?" else ""
        found = reader.fetch(
            f"SELECT seq FROM ledger_entries WHERE log_id = {ph}{top} "  # noqa: S608
            "ORDER BY seq DESC LIMIT 1",
            (self._log_id,),
        )
        size = max(0, math.floor(found[0][0]) + 1) if found else 0
        stray: object | None = None
        if ph == "?":
            above = reader.fetch(
                f"SELECT seq FROM ledger_entries WHERE log_id = ? AND seq > {_INT64_MAX} "  # noqa: S608
                "ORDER BY seq LIMIT 1",
                (self._log_id,),
            )
            stray = above[0][0] if above else None
        return size, stray

    def head(self) -> Head:
        """``(seq, chain_hash)`` of the last record; ``(-1, GENESIS)`` when empty."""
        try:
            with self._engine.connect() as conn:
                return self._head(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise _db_error("reading the head", exc) from exc

    def size(self) -> int:
        """Number of sequence numbers used (last seq + 1; 0 when empty)."""
        return self.head().seq + 1

    def get_cursor(self, key: str) -> str | None:
        """The value last committed for cursor ``key``, or ``None``."""
        try:
            with self._engine.connect() as conn:
                value = conn.execute(
                    sa.select(cursors_table.c.value).where(
                        cursors_table.c.log_id == self._log_id, cursors_table.c.key == key
                    )
                ).scalar_one_or_none()
        except sa.exc.SQLAlchemyError as exc:
            raise _db_error("reading a cursor", exc) from exc
        return None if value is None else str(value)

    def iter_entries(
        self,
        start_seq: int | None = 0,
        end_seq: int | None = None,
        *,
        kind: str | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> Iterator[Entry]:
        """Stored rows with ``start_seq <= seq < end_seq``, in seq order, ``batch`` at a time.

        Memory is bounded by ``batch`` rows; each batch is a short read transaction (keyset
        pagination), so a long export never holds a snapshot open. ``start_seq=None`` means no
        lower bound (even negative, forged seqs). Raises ``LedgerError`` on database failure.
        """
        if batch < 1:
            raise ValueError("batch must be ≥ 1")
        t = entries_table
        lower = start_seq
        inclusive = True
        while True:
            conds = [t.c.log_id == self._log_id]
            if lower is not None:
                conds.append(t.c.seq >= lower if inclusive else t.c.seq > lower)
            if end_seq is not None:
                conds.append(t.c.seq < end_seq)
            if kind is not None:
                conds.append(t.c.kind == kind)
            query = sa.select(*_ENTRY_COLUMNS).where(*conds).order_by(t.c.seq).limit(batch)
            try:
                with self._engine.connect() as conn:
                    rows = conn.execute(query).all()
            except sa.exc.SQLAlchemyError as exc:
                raise _db_error("reading entries", exc) from exc
            for row in rows:
                yield Entry(
                    self._seq_of(row[0]),
                    str(row[1]),
                    str(row[2]),
                    bytes(row[3]),
                    bytes(row[4]),
                    bytes(row[5]),
                    bytes(row[6]),
                )
            if len(rows) < batch:
                return
            lower, inclusive = self._seq_of(rows[-1][0]), False

    def query(
        self,
        kind: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        *,
        by: str = "event",
        batch: int = DEFAULT_BATCH,
    ) -> Iterator[dict[str, Any]]:
        """Decoded records of ``kind`` (all kinds if ``None``) with ``since <= t < until``.

        ``by="event"``: ``t`` is the record's ``data.ts`` (event time) when it is a string,
        else ``recorded_at``; ``by="recorded"``: ``t`` is always ``recorded_at``. Bounds are
        aware datetimes or RFC 3339 strings. Streams in seq order, constant memory. A record
        whose ``data.ts`` is not RFC 3339 falls back to ``recorded_at``. Raises ``ValueError``
        for a bad bound or ``by``, ``LedgerError`` for a damaged row or database failure.
        """
        for _entry, record in self._window(kind, since, until, by, batch):
            yield record

    def query_entries(
        self,
        kind: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        *,
        by: str = "event",
        batch: int = DEFAULT_BATCH,
    ) -> Iterator[Entry]:
        """Like ``query`` but yields the stored ``Entry`` (canonical bytes for export)."""
        for entry, _record in self._window(kind, since, until, by, batch):
            yield entry

    def _window(
        self,
        kind: str | None,
        since: datetime | str | None,
        until: datetime | str | None,
        by: str,
        batch: int,
    ) -> Iterator[tuple[Entry, dict[str, Any]]]:
        if by not in ("event", "recorded"):
            raise ValueError("by must be 'event' or 'recorded'")
        lo = _as_dt(since)
        hi = _as_dt(until)
        for entry in self.iter_entries(kind=kind, batch=batch):
            record = entry.record()
            if lo is not None or hi is not None:
                when = _record_time(record, by)
                if (lo is not None and when < lo) or (hi is not None and when >= hi):
                    continue
            yield entry, record

    def count_by_kind(self) -> dict[str, int]:
        """Number of stored rows per ``kind`` (unverified column values)."""
        t = entries_table
        query = (
            sa.select(t.c.kind, sa.func.count())
            .where(t.c.log_id == self._log_id)
            .group_by(t.c.kind)
            .order_by(t.c.kind)
        )
        try:
            with self._engine.connect() as conn:
                return {str(k): int(n) for k, n in conn.execute(query).all()}
        except sa.exc.SQLAlchemyError as exc:
            raise _db_error("counting entries", exc) from exc

    def has_records(self) -> bool:
        """Whether this log has any stored row (whatever its seq holds: unlike ``head``,
        never raises for a non-integer seq). Raises ``LedgerError`` on database failure."""
        query = sa.select(entries_table.c.log_id).where(entries_table.c.log_id == self._log_id)
        try:
            with self._engine.connect() as conn:
                return conn.execute(query.limit(1)).first() is not None
        except sa.exc.SQLAlchemyError as exc:
            raise _db_error("reading the head", exc) from exc

    def log_ids(self) -> list[str]:
        """The log ids with at least one stored row in the database, sorted (every log, not
        only this one; ``ledger`` commands name them when a log id finds nothing)."""
        query = sa.select(entries_table.c.log_id).distinct().order_by(entries_table.c.log_id)
        try:
            with self._engine.connect() as conn:
                return [str(v) for v in conn.execute(query).scalars()]
        except sa.exc.SQLAlchemyError as exc:
            raise _db_error("listing the log ids", exc) from exc

    # -- verification ----------------------------------------------------------------------

    def verify(
        self,
        *,
        batch: int = VERIFY_BATCH,
        anchor: Anchor | None = None,
        workers: int | None = None,
        range_size: int = VERIFY_RANGE,
        progress: Callable[[int, int], None] | None = None,
        accelerated: bool = True,
    ) -> VerifyResult:
        """Recompute and check the whole log, streaming in constant memory.

        Checks, in seq order from 0 up to the head seen at the start: contiguous seqs (a gap
        is a deletion or renumbering), ``leaf_hash`` = SHA-256(0x00 ‖ body), the body's own
        ``v``/``log``/``seq``/``kind``/``recorded_at`` against the row (catches moved or
        swapped bodies; a byte comparison of the body's canonical tail, no JSON decoding),
        ``prev_hash`` = previous chain hash (``GENESIS`` for seq 0), ``chain_hash``, and every
        stored Merkle node against the tree recomputed from the leaves. Beyond the size: no
        stored node a tree of that size cannot have (``_node_beyond``: a tail deleted with
        its tree left behind, or a node added) and, on SQLite, no seq stored as TEXT or BLOB
        (``_verify_size``); either is ``invalid`` at ``first_bad_seq = size`` when everything
        below it checks out.

        The log is cut into ranges of ``range_size`` records (rounded down to a multiple of
        the read batch, ``batch`` rounded down to a power of two). Each range is checked on
        its own (``sentinel.ledgerscan``: rows, chain from the stored chain value before it,
        the Merkle nodes inside it), by up to ``workers`` processes (default: one per CPU,
        at most ``VERIFY_MAX_WORKERS``; 1 checks in this process; a log of one range is
        always checked here). Workers are started with multiprocessing's ``spawn`` method; if
        they cannot start (a script without an ``if __name__ == "__main__"`` guard, as
        multiprocessing requires), a warning is logged and the log is verified in this
        process. This process stitches the ranges in order: each range must
        start from the chain value the previous one ended with, the Merkle nodes spanning
        two ranges and the checkpoint roots are computed from the ranges' subtree hashes.
        Memory: one read batch per worker, O(log n) hashes per range.

        With an ``anchor`` (default: the one given to ``open``), every checkpoint in the
        external log must verify under a trusted key and its root must equal the root
        recomputed from the records at its size; a database smaller than the latest
        checkpoint is truncated or rolled back. Statuses (``VerifyStatus``): ``invalid`` with
        ``first_bad_seq`` (for a checkpoint root mismatch: the size of the last checkpoint
        that still matched, i.e. the first record that may differ; ``None`` for a forged
        checkpoint signature), ``unverifiable`` (a checkpoint by an unknown key, or no key),
        ``valid-unpinned`` (records after the latest checkpoint), ``valid``. Without any
        anchor the database alone is checked and the result is ``valid`` or ``invalid``
        (truncation and rollback are then out of sight). The outcome does not depend on
        ``batch``, ``workers``, ``range_size`` or ``accelerated``.

        On a SQLite file each range goes first to the compiled accelerator
        (``sentinel._ledgerscan``, see ``sentinel.ledgerscan``) when it is built, unless
        ``accelerated`` is false or ``SENTINEL_VERIFIER=python`` is set; it only accepts
        clean ranges and declines anything else to the reference implementation, which
        then names the problem. ``VerifyResult.verifier`` says which ran.

        ``progress(done, total)`` (records) is called once at the start and after each range
        is joined, in order; it must not raise. With it, ranges are cut to at most
        1/``VERIFY_PROGRESS_STEPS`` of the log (rounded up to the read batch, not below
        ``VERIFY_PROGRESS_MIN`` records; whether workers start still depends on
        ``range_size``): about every 5 % of a log of 160,000 records or more, instead of
        once per 262,144-record range (the accelerator checks a range in one call). A range
        costs a query or two more: 112,000 records on SQLite took 0.22 CPU s in ranges of
        262,144 or of 8,192 (accelerator; 1.00 vs 1.02 s the reference alone).

        Raises ``LedgerError`` when the database cannot be read, ``ValueError`` for a
        ``range_size`` or ``workers`` below 1 or a ``SENTINEL_VERIFIER`` other than ``auto``
        or ``python`` (``ledgerscan.verifier_setting``).
        """
        if range_size < 1 or (workers is not None and workers < 1):
            raise ValueError("range_size and workers must be at least 1")
        ledgerscan.verifier_setting()  # refuse an unknown SENTINEL_VERIFIER before any work
        anchor = anchor if anchor is not None else self.anchor
        block = 1 << (max(1, batch).bit_length() - 1)
        span = max(block, range_size // block * block)
        if workers is None:
            workers = min(os.cpu_count() or 1, VERIFY_MAX_WORKERS)
        with _RawReader(self) as reader:
            size, stray = self._verify_size(reader)
            beyond = self._node_beyond(reader, size)
            cps = _CheckpointCursor(anchor, size) if anchor is not None else None
            pooled = workers > 1 and size > span  # decided on the ranges asked for
            if progress is not None:
                want = max(VERIFY_PROGRESS_MIN, -(-size // VERIFY_PROGRESS_STEPS))
                span = min(span, max(block, -(-want // block) * block))
            if pooled:
                count = min(workers, -(-size // span))
                pool = ProcessPoolExecutor(count, mp_context=get_context("spawn"))
                try:
                    return _Stitcher(
                        self,
                        reader,
                        size,
                        block,
                        span,
                        cps,
                        pool,
                        count,
                        progress,
                        accelerated,
                        stray,
                        beyond,
                    ).run()
                except BrokenProcessPool as exc:  # e.g. a script without a __main__ guard
                    _log.warning(
                        "ledger verify: worker processes failed (%s); verifying in this process",
                        exc,
                    )
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
                cps = _CheckpointCursor(anchor, size) if anchor is not None else None
            return _Stitcher(
                self, reader, size, block, span, cps, None, 1, progress, accelerated, stray, beyond
            ).run()

    def _slow_check(
        self, seq: int, rec_at: str, kind: str, body: bytes, leaf: bytes, expected: int
    ) -> tuple[int, str]:
        """Name the problem of a row that failed the fast checks."""
        if type(seq) is not int:  # SQLite keeps e.g. a REAL 4.5 in an INTEGER column
            return expected, (
                f"a record with a non-integer sequence number ({seq!r}) is stored where "
                f"record {expected} should be"
            )
        entry = Entry(seq, str(rec_at), str(kind), body, leaf, b"", b"")
        # prev b"-" never links: the chain is not this check's (the fast path saw it right)
        found = self._check_entry(entry, expected, b"-")
        if found is not None and "prev_hash" not in found[1]:
            return found
        return int(seq), "body is not in canonical form"

    def _check_entry(self, e: Entry, expected: int, prev: bytes) -> tuple[int, str] | None:
        if e.seq != expected:
            if e.seq > expected:
                return expected, f"record {expected} is missing (next stored record is {e.seq})"
            return e.seq, f"unexpected record {e.seq} before {expected}"
        if len(e.leaf_hash) != HASH_SIZE or leaf_hash(e.body) != e.leaf_hash:
            return e.seq, "body does not match its leaf_hash (record modified)"
        try:
            rec = json.loads(e.body)
        except ValueError:
            return e.seq, "body is not valid JSON"
        if not isinstance(rec, dict):
            return e.seq, "body is not a JSON object"
        if rec.get("v") != RECORD_VERSION:
            return e.seq, f"unknown record version {rec.get('v')!r}"
        if rec.get("log") != self._log_id:
            return e.seq, f"body belongs to log {rec.get('log')!r}"
        if rec.get("seq") != e.seq:
            return e.seq, f"body is record {rec.get('seq')!r}, stored at {e.seq} (moved)"
        if rec.get("kind") != e.kind or rec.get("recorded_at") != e.recorded_at:
            return e.seq, "kind/recorded_at columns differ from the body"
        if e.prev_hash != prev:
            return e.seq, "prev_hash does not link to the previous record"
        if chain_hash(prev, e.leaf_hash) != e.chain_hash:
            return e.seq, "chain_hash is wrong"
        return None


class _Stitcher:
    """The parent half of ``verify``: hands ranges to ``ledgerscan.scan_range`` (in this
    process or a pool) and joins their results in seq order (see ``Ledger.verify``)."""

    def __init__(
        self,
        ledger: Ledger,
        reader: _RawReader,
        size: int,
        block: int,
        span: int,
        cps: _CheckpointCursor | None,
        pool: ProcessPoolExecutor | None,
        workers: int = 1,
        progress: Callable[[int, int], None] | None = None,
        accelerated: bool = True,
        stray: object | None = None,
        beyond: str | None = None,
    ) -> None:
        self.ledger = ledger
        #: the lowest TEXT/BLOB seq stored (SQLite), ``None`` if none (``Ledger._verify_size``)
        self.stray = stray
        #: a stored Merkle node beyond the log's size (``Ledger._node_beyond``)
        self.beyond = beyond
        self.reader = reader
        self.size = size
        self.block = block
        self.span = span
        self.cps = cps
        self.pool = pool
        self.workers = workers
        self.progress = progress
        self.accelerated = accelerated and ledgerscan.use_accelerator()
        self.verifiers: set[str] = set()
        self.stack: list[ledgerscan.Piece] = []
        self.chain = GENESIS
        self.count = 0
        self.next_stop = -1

    def result(
        self, status: VerifyStatus, bad: int | None, problem: str | None, checked: int | None = None
    ) -> VerifyResult:
        cps = self.cps
        if status == VerifyStatus.INVALID and self.stray is not None:
            problem = f"{problem}; {self._stray_problem()}"
        checked = self.count if checked is None else checked
        return VerifyResult(
            status,
            self.size,
            bad,
            problem,
            max(0, checked),  # a forged row at seq -1: nothing was checked before it
            self.chain.hex(),
            ledgerscan.fold(self.stack).hex() if self.count == self.size else "",
            cps.latest_size if cps is not None else None,
            cps.checked if cps is not None else 0,
            "+".join(sorted(self.verifiers)) or "python",
        )

    def run(self) -> VerifyResult:
        cps = self.cps
        if cps is not None:
            self.next_stop = cps.next_size()
            while self.next_stop == 0:
                problem = cps.check_root(merkle.EMPTY_ROOT)
                if problem is not None:
                    return self.result(VerifyStatus.INVALID, cps.matched, problem)
                self.next_stop = cps.next_size()
        if self.progress is not None:
            self.progress(0, self.size)
        results = self._results()
        try:
            for lines, found in results:
                outcome = self._stitch(found, lines)
                if outcome is not None:
                    return outcome
                if self.progress is not None:
                    self.progress(self.count, self.size)
        finally:
            results.close()
        outcome = self.result(*cps.finish(self.count)) if cps is not None else None
        if outcome is not None and outcome.status == VerifyStatus.INVALID:
            return outcome
        if self.stray is not None:  # every numbered record checks out: the stray is extra
            problem, self.stray = self._stray_problem(), None
            return self.result(VerifyStatus.INVALID, self.size, problem, self.size)
        if self.beyond is not None:  # every record and node within the size checks out
            return self.result(VerifyStatus.INVALID, self.size, self.beyond, self.size)
        return outcome or self.result(VerifyStatus.VALID, None, None)

    def _stray_problem(self) -> str:
        return (
            f"a record with a non-integer sequence number ({self.stray!r}) is stored "
            "(SQLite sorts it after every number)"
        )

    def _tasks(self) -> Iterator[tuple[int, int, list[tuple[int, LoggedCheckpoint]]]]:
        """``(lo, hi, checkpoints with lo < size <= hi)`` per range, read from the external
        log just before the range is handed out."""
        cps = self.cps
        for lo in range(0, self.size, self.span):
            hi = min(lo + self.span, self.size)
            stops: list[tuple[int, LoggedCheckpoint]] = []
            while cps is not None and lo < self.next_stop <= hi:
                assert cps.current is not None
                stops.append((self.next_stop, cps.current))
                self.next_stop = cps.next_size()
            yield lo, hi, stops

    def _results(
        self,
    ) -> Generator[tuple[list[tuple[int, LoggedCheckpoint]], ledgerscan.RangeResult], None, None]:
        ledger = self.ledger
        reader = self.reader
        url = ledger._engine.url
        if self.pool is None:
            fast = self.accelerated and ledger.backend == "sqlite"
            for lo, hi, stops in self._tasks():
                sizes = [s for s, _ in stops]
                found = None
                if fast:
                    found = ledgerscan.scan_sqlite_file(
                        ledger._sqlite_uri, ledger.log_id, lo, hi, self.block, sizes
                    )
                if found is None:
                    found = ledgerscan.scan_range(
                        reader.fetch, reader.ph, ledger.log_id, lo, hi, self.size, self.block, sizes
                    )
                    if fast and ledgerscan.accelerator_built():  # it ran and declined
                        found.verifier = "c+python"
                yield stops, found
            return
        if ledger.backend == "sqlite":
            dsn = ledger._sqlite_uri
        else:
            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        window = 2 * self.workers
        pending: deque[tuple[list[tuple[int, LoggedCheckpoint]], Future[Any]]] = deque()
        error = ledger._dbapi_errors
        try:
            tasks = self._tasks()
            while True:
                for lo, hi, stops in tasks:
                    future = self.pool.submit(
                        ledgerscan.scan_range_in_process,
                        ledger.backend,
                        dsn,
                        ledger.log_id,
                        lo,
                        hi,
                        self.size,
                        self.block,
                        [s for s, _ in stops],
                        self.accelerated,
                    )
                    pending.append((stops, future))
                    if len(pending) >= window:
                        break
                if not pending:
                    return
                stops, future = pending.popleft()
                try:
                    found = future.result()
                except error as exc:
                    raise _db_error("reading entries (verify worker)", exc) from exc
                yield stops, found
        finally:
            for _, future in pending:
                future.cancel()

    def _stitch(
        self, found: ledgerscan.RangeResult, lines: list[tuple[int, LoggedCheckpoint]]
    ) -> VerifyResult | None:
        """Join one range; a ``VerifyResult`` when it ends the verification (invalid)."""
        cps = self.cps
        self.verifiers.update(found.verifier.split("+"))
        events: list[tuple[float, int, Any]] = []  # (seq order key, tie-break, what)
        if found.lo > 0 and found.start_prev != self.chain:
            problem = "prev_hash does not link to the previous record"
            events.append((found.lo, 0, (found.lo, problem)))
        for (size_at, pieces), (_, line) in zip(found.stops, lines, strict=False):
            stack = list(self.stack)
            for piece in pieces:
                ledgerscan.push(stack, piece)
            # a checkpoint of size s is checked once record s - 1 is
            events.append((size_at - 0.5, 1, (size_at, line, ledgerscan.fold(stack))))
        made: list[ledgerscan.Piece] = []
        for piece in found.pieces:
            ledgerscan.push(self.stack, piece, made)
        node_bad = self._check_spanning(made)
        if node_bad is not None:
            events.append((node_bad[0], 0, node_bad))
        for seq, problem in found.problems:
            if not problem and found.row is not None:
                r = found.row
                seq, problem = self.ledger._slow_check(
                    r.seq, r.recorded_at, r.kind, r.body, r.leaf, r.expected
                )
            events.append((seq, 0, (seq, problem)))
        self.count = found.lo + found.verified
        self.chain = found.end_chain
        for _key, _tie, what in sorted(events, key=lambda e: (e[0], e[1])):
            if len(what) == 3:
                size_at, line, root = what
                assert cps is not None
                mismatch = cps.check_root(root, line)
                if mismatch is not None:
                    return self.result(VerifyStatus.INVALID, cps.matched, mismatch, size_at)
            else:
                return self.result(VerifyStatus.INVALID, what[0], what[1], what[0])
        return None

    def _check_spanning(self, made: list[ledgerscan.Piece]) -> tuple[int, str] | None:
        """Stored nodes spanning two ranges (made while stitching) against the computed ones."""
        if not made:
            return None
        ph = self.reader.ph
        computed = {(level, first >> level): node for level, first, node in made}
        probe = (
            f"SELECT level, idx, {ledgerscan._blob('hash', ph)} FROM ledger_tree "  # noqa: S608
            f"WHERE log_id = {ph} AND level = {ph} "
            f"AND idx = {ph}"
        )
        keys = list(computed)
        params: list[Any] = []
        for level, idx in keys:
            params += [self.ledger.log_id, level, idx]
        rows = self.reader.fetch(" UNION ALL ".join([probe] * len(keys)), tuple(params))
        stored = {(int(lv), int(ix)): bytes(h) for lv, ix, h in rows}
        return ledgerscan.check_nodes(stored, computed)


class _RawReader:
    """Plain DB-API reads for ``verify`` (SQLAlchemy's row processing cost more than the
    hashing). One pooled connection; on PostgreSQL each read ends its transaction, so a long
    verification never holds a snapshot. Raises ``LedgerError`` on a database error."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._sqlite = ledger.backend == "sqlite"
        self.ph = "?" if self._sqlite else "%s"
        self._conn: sa.Connection | None = None
        self._dbapi: Any = None

    def __enter__(self) -> _RawReader:
        try:
            self._conn = self._ledger._engine.connect()
            self._dbapi = self._conn.connection.dbapi_connection
        except sa.exc.SQLAlchemyError as exc:
            raise _db_error("reading entries", exc) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()

    def fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        dbapi = self._dbapi
        error = self._ledger._engine.dialect.dbapi.Error  # type: ignore[union-attr]
        try:
            cur = dbapi.cursor() if self._sqlite else dbapi.cursor(binary=True)
            try:
                cur.execute(sql, params)
                rows: list[Any] = cur.fetchall()
            finally:
                cur.close()
            if not self._sqlite:
                dbapi.rollback()
        except error as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LedgerError(f"ledger: reading entries failed: {detail}") from exc
        return rows


class _CheckpointCursor:
    """Walks the external checkpoint log alongside ``verify`` (constant memory)."""

    def __init__(self, anchor: Anchor, size: int) -> None:
        self.anchor = anchor
        self.size = size
        self._iter: Iterator[LoggedCheckpoint] | None = None
        self.current: LoggedCheckpoint | None = None
        self.latest_size: int | None = None
        self.matched = 0  # size of the last checkpoint whose root matched
        self.checked = 0
        self.unverifiable: str | None = None
        self.invalid: tuple[int | None, str] | None = None
        self._last_size = -1

    def next_size(self) -> int:
        """Size of the next trusted checkpoint, or -1 when there is none (or a problem)."""
        if self.invalid is not None:
            return -1
        if self._iter is None:
            self._iter = iter(self.anchor.log)
        while True:
            try:
                line = next(self._iter)
            except StopIteration:
                return -1
            except CheckpointError as exc:
                self.unverifiable = str(exc)
                return -1
            where = f"checkpoint at line {line.line} of {self.anchor.log.path}"
            if line.size < self._last_size:
                self.invalid = (None, f"{where}: size {line.size} after {self._last_size}")
                return -1
            self._last_size = line.size
            self.latest_size = line.size
            try:
                cp = open_checkpoint(line.note, self.anchor.verifiers)
            except UnknownKeyError as exc:
                detail = "; ".join(self.anchor.problems) or str(exc)
                named = line.note.split("\n", 1)[0]  # unsigned here: a hint only
                if named != self.anchor.origin:
                    detail += f"; the note names origin {named!r}, not {self.anchor.origin!r}"
                self.unverifiable = f"{where}: no trusted key ({detail})"
                continue
            except InvalidSignatureError as exc:
                self.invalid = (None, f"{where}: forged or altered: {exc}")
                return -1
            except NoteError as exc:
                self.invalid = (None, f"{where}: malformed: {exc}")
                return -1
            if (cp.origin, cp.size, cp.root) != (line.origin, line.size, line.root):
                self.invalid = (None, f"{where}: does not match its signed note")
                return -1
            if cp.origin != self.anchor.origin:
                # signed by a trusted key for another origin: the expected origin (an
                # option or setting) is wrong, or this is another log's checkpoint; not
                # tampering with a note, but nothing pinned by it either
                self.unverifiable = (
                    f"{where}: signed for origin {cp.origin!r}, not the expected origin "
                    f"{self.anchor.origin!r} (--origin or [ledger] origin)"
                )
                continue
            self.current = line
            if line.size > self.size:
                return -1  # finish() reports the truncation
            return line.size

    def check_root(self, root: bytes, line: LoggedCheckpoint | None = None) -> str | None:
        """Compare ``root`` with checkpoint ``line`` (default: the last one read)."""
        line = line if line is not None else self.current
        assert line is not None
        self.checked += 1
        if root != line.root:
            return (
                f"records differ from the signed checkpoint of size {line.size} (line "
                f"{line.line} of {self.anchor.log.path}): rewritten or rolled back; the "
                f"checkpoint of size {self.matched} still matched"
            )
        self.matched = line.size
        return None

    def finish(self, count: int) -> tuple[VerifyStatus, int | None, str | None]:
        while self.invalid is None and self.next_size() != -1:  # pragma: no cover - defensive
            pass
        if self.invalid is not None:
            return VerifyStatus.INVALID, *self.invalid
        if self.current is not None and self.current.size > count:
            return (
                VerifyStatus.INVALID,
                count,
                f"the database holds {count} records but the external checkpoint log signed "
                f"{self.current.size} (line {self.current.line}): tail truncated or rolled back",
            )
        if self.unverifiable is not None:
            return VerifyStatus.UNVERIFIABLE, None, self.unverifiable
        if not self.anchor.verifiers and self.latest_size is not None:
            return VerifyStatus.UNVERIFIABLE, None, "no trusted checkpoint key"
        if count == 0:
            return VerifyStatus.VALID, None, None
        if self.current is None:
            return VerifyStatus.VALID_UNPINNED, None, "no signed checkpoint covers the log yet"
        if self.current.size < count:
            return (
                VerifyStatus.VALID_UNPINNED,
                None,
                f"records {self.current.size}..{count - 1} are after the last checkpoint",
            )
        return VerifyStatus.VALID, None, None


def _as_dt(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("naive datetime bound: attach a zone")
        return value
    return parse_ts(value)


def _record_time(record: Mapping[str, Any], by: str) -> datetime:
    if by == "event":
        data = record.get("data")
        ts = data.get("ts") if isinstance(data, Mapping) else None
        if isinstance(ts, str):
            try:
                return parse_ts(ts)
            except ValueError:
                pass
    return parse_ts(str(record.get("recorded_at")))


def _create_private(path: Path) -> None:
    """Create a missing SQLite ledger file with mode 0600 (owner only) rather than 0644.

    SQLite gives the ``-wal`` and ``-shm`` files it creates later the database file's
    permissions, so the whole ledger stays private. An existing file is left as it is; a
    directory that does not exist is left for SQLite to report.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except (FileExistsError, FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise LedgerError(f"ledger: {path}: cannot create: {exc.strerror or exc}") from exc
    os.close(fd)


def _sqlite_ro_uri(path: Path, read_only: bool) -> str:
    """A ``file:`` URI opening ``path`` read-only (``mode=ro``); ``immutable=1`` as well when
    the file or its directory is not writable (SQLite cannot create the WAL index there).

    With ``read_only`` a missing file, or a non-empty ``-wal`` file beside an unwritable
    one (its records could not be read), raise ``LedgerError``. https://sqlite.org/uri.html
    """
    absolute = path.expanduser().absolute()
    uri = f"file:{quote(str(absolute))}?mode=ro"
    if not read_only:
        return uri
    if not absolute.is_file():
        raise LedgerError(f"ledger: {absolute}: no such database file")
    if os.access(absolute, os.W_OK) and os.access(absolute.parent, os.W_OK):
        return uri
    wal = absolute.with_name(absolute.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise LedgerError(
            f"ledger: {absolute}: read-only, with a write-ahead log ({wal.name}) that cannot be "
            "read without write access: copy it with `sqlite3 DB '.backup COPY'` and verify "
            "the copy"
        )
    return uri + "&immutable=1"


def _install_sqlite_hooks(engine: sa.Engine, read_only: bool = False) -> None:
    """SQLAlchemy's pysqlite recipe: Sentinel emits BEGIN itself (IMMEDIATE for writes).

    ``read_only``: ``PRAGMA query_only`` and no journal-mode or synchronous settings (which
    would write).
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if read_only:
                cur.execute("PRAGMA query_only = 1")
            else:
                # before journal_mode: switching a new, empty file to WAL writes its header
                cur.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = FULL")
            cur.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            page = cur.execute("PRAGMA page_size").fetchone()[0]
            pages = max(1, SQLITE_WAL_AUTOCHECKPOINT_BYTES // int(page))
            cur.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        finally:
            cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("sentinel_begin", "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE"):
            raise LedgerError(f"ledger: bad SQLite BEGIN mode {mode!r}")
        conn.exec_driver_sql(f"BEGIN {mode}")
