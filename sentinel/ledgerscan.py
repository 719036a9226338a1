"""Verifying one range of ledger rows: leaf hashes, chain and the Merkle nodes inside it.

The worker half of ``Ledger.verify`` (sentinel/ledger/store.py, DESIGN.md "Ledger"). It sits
outside the ``sentinel.ledger`` package on purpose: verification hands ranges to processes
started with ``spawn``, and importing this module costs only hashlib, orjson and the database
driver, not SQLAlchemy, Alembic and cryptography (about 0.4 s per process here).

``scan_range`` reads rows ``lo <= seq < hi`` of one log in keyset pages of ``block`` rows
(a power of two; ``lo`` a multiple of it) and checks, row by row and in constant memory:

* contiguous sequence numbers (the first range has no lower bound, so a forged negative seq
  is seen);
* ``leaf_hash = SHA-256(0x00 ‖ body)`` and the body's canonical tail (``kind``, ``log``,
  ``recorded_at``, ``seq``, ``v``) against the row's columns, a byte comparison;
* ``prev_hash`` = the previous chain value (for ``lo > 0`` the stored ``chain_hash`` of row
  ``lo − 1``, which the caller checks against the previous range's recomputed chain) and
  ``chain_hash = SHA-256(0x02 ‖ prev ‖ leaf)``;
* every stored Merkle node (RFC 9162, ``ledger_tree``) whose leaves all lie in the verified
  part of ``[lo, hi)``, against the nodes recomputed from the leaves.

It returns the aligned perfect subtrees covering the verified rows (``pieces``) and, for each
requested checkpoint size inside the range, those covering ``[lo, size)``, so the caller
can stitch ranges together: nodes spanning two ranges and checkpoint roots are the caller's.

``scan_range`` is the reference implementation. For SQLite files an optional compiled
accelerator, ``sentinel._ledgerscan`` (``_ledgerscan.c``, built at install time when a C
compiler and the SQLite and OpenSSL headers are there), re-does the same checks in C and only
*accepts*: on any anomaly at all it declines (``None``) and the reference re-runs the range
and names the problem, so every diagnosis lives here. It reads rows in table (rowid) order
while that is seq order (a ledger only ``append`` wrote), rows of other logs skipped, and
otherwise through the ``(log_id, seq)`` index like the reference; a range read in table order
is confirmed by counting the rows the reference's query would find. ``scan_sqlite_file``
calls it; ``RangeResult.verifier`` says which implementation produced a result. Setting
``SENTINEL_VERIFIER=python`` in the environment (or ``Ledger.verify(accelerated=False)``)
forces the reference, e.g. for an auditor who wants to cross-check the two; ``auto`` (or
unset) is the default, and any other value is refused (``verifier_setting``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

try:
    from sentinel import _ledgerscan as _accel
except ImportError:  # installed without a C compiler or headers: the reference only
    _accel = None  # type: ignore[assignment]

#: ``prev`` of record 0 (``sentinel.ledger.hashing.GENESIS``)
GENESIS = bytes(32)
#: record version written in every body (``sentinel.ledger.canonical.RECORD_VERSION``)
RECORD_VERSION = 1

#: environment variable: ``python`` forces the reference implementation (see the docstring)
VERIFIER_ENV = "SENTINEL_VERIFIER"
#: the values ``VERIFIER_ENV`` accepts (any case; unset or empty means ``auto``)
VERIFIER_SETTINGS = ("auto", "python")

#: (level, first leaf, hash) of an aligned perfect subtree: it covers leaves
#: ``first .. first + 2**level - 1`` and ``first`` is a multiple of ``2**level``
Piece = tuple[int, int, bytes]
#: runs one SQL statement with positional parameters, returns all rows
Fetch = Callable[[str, tuple[Any, ...]], list[Any]]


@dataclass(slots=True)
class RowProblem:
    """A row that failed the fast checks: the caller names the problem (``Ledger._slow_check``)."""

    seq: int
    recorded_at: str
    kind: str
    body: bytes
    leaf: bytes
    expected: int


@dataclass(slots=True)
class RangeResult:
    """What ``scan_range`` found in ``[lo, hi)``.

    ``verified``: rows checked from ``lo`` on (contiguous); ``start_prev``: the chain value
    the range started from; ``end_chain``: the chain value after the verified rows;
    ``pieces``: aligned perfect subtrees covering ``[lo, lo + verified)``, left to right;
    ``stops``: ``(size, pieces of [lo, size))`` per checkpoint size reached; ``problems``:
    ``(seq, problem)`` found (at most a node problem and a row problem, both at or after
    every stop listed); ``row``: a row the caller must examine (its problem is then
    ``problems``' last entry with an empty text).
    """

    lo: int
    hi: int
    verified: int = 0
    start_prev: bytes = GENESIS
    end_chain: bytes = GENESIS
    pieces: list[Piece] = field(default_factory=list)
    stops: list[tuple[int, list[Piece]]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)
    row: RowProblem | None = None
    #: which implementation produced this result: ``"c"`` (the accelerator accepted the
    #: range), ``"python"`` (``scan_range`` alone) or ``"c+python"`` (the accelerator ran and
    #: declined, ``scan_range`` checked the range)
    verifier: str = "python"


def accelerator_built() -> bool:
    """True when the compiled accelerator ``sentinel._ledgerscan`` could be imported."""
    return _accel is not None


def verifier_setting() -> str:
    """``SENTINEL_VERIFIER`` from the environment: ``"auto"`` (unset or empty too: the
    accelerator first when built, the reference for the ranges it declines) or ``"python"``
    (the reference alone). Raises ``ValueError`` naming the accepted values for anything
    else: a typo (``py``) must not silently run the accelerator."""
    given = os.environ.get(VERIFIER_ENV, "")
    value = given.strip().lower() or "auto"
    if value not in VERIFIER_SETTINGS:
        raise ValueError(
            f"{VERIFIER_ENV}={given!r} is not a verifier setting: use 'auto' (the default: "
            "the compiled accelerator when built, the reference for what it declines) or "
            "'python' (the reference alone)"
        )
    return value


def use_accelerator(accelerated: bool = True) -> bool:
    """Whether SQLite ranges go to the accelerator first: it is built, ``accelerated`` is
    true and ``SENTINEL_VERIFIER`` is not ``python``. ``ValueError`` from
    ``verifier_setting``."""
    forced = verifier_setting() == "python"
    return accelerated and _accel is not None and not forced


def scan_sqlite_file(
    uri: str, log_id: str, lo: int, hi: int, block: int, stops: Sequence[int] = ()
) -> RangeResult | None:
    """``scan_range`` of the SQLite database ``uri`` (a ``file:`` URI as ``Ledger`` makes,
    https://sqlite.org/uri.html, or a plain path; opened read-only) through the accelerator, or
    ``None`` when it is not built or declines (any anomaly, database errors included: the
    caller then runs ``scan_range``, which reports it). A result is only ever a clean one:
    every row up to ``hi`` verified, no problems, ``verifier == "c"``. Arguments as for
    ``scan_range``; the accelerator opens its own read-only connection (one short read
    transaction per block)."""
    if _accel is None:
        return None
    found = _accel.scan_sqlite(
        uri, log_id, orjson.dumps(log_id), RECORD_VERSION, lo, hi, block, list(stops)
    )
    if found is None:
        return None
    verified, start_prev, end_chain, pieces, reached = found
    return RangeResult(lo, hi, verified, start_prev, end_chain, pieces, reached, verifier="c")


def push(stack: list[Piece], piece: Piece, made: list[Piece] | None = None) -> None:
    """Append an aligned perfect subtree to ``stack``, merging siblings (RFC 9162 §2.1.1).

    Two top entries merge when they are of one level and the left one is a left child
    (its first leaf a multiple of twice its width). ``made`` collects merged nodes.
    """
    sha256 = hashlib.sha256
    stack.append(piece)
    while len(stack) > 1:
        level, _start, right = stack[-1]
        left_level, left_start, left = stack[-2]
        if left_level != level or left_start & ((2 << level) - 1):
            return
        del stack[-2:]
        node = (level + 1, left_start, sha256(b"\x01" + left + right).digest())
        stack.append(node)
        if made is not None:
            made.append(node)


def fold(pieces: Sequence[Piece]) -> bytes:
    """RFC 9162 root of the tree whose maximal perfect subtrees are ``pieces`` (left to right,
    as a stack built from leaf 0 by ``push`` holds them). Empty: SHA-256 of nothing."""
    if not pieces:
        return hashlib.sha256(b"").digest()
    node = pieces[-1][2]
    for _level, _start, left in reversed(pieces[:-1]):
        node = hashlib.sha256(b"\x01" + left + node).digest()
    return node


def _tail_prefix(kind: str, recorded_at: str, log_json: bytes) -> bytes:
    """Canonical bytes a body has between ``data`` and its ``seq`` value (RFC 8785: a string's
    canonical form is orjson's, see ``sentinel.ledger.canonical._fast_dumps``)."""
    try:
        kind_json = orjson.dumps(str(kind))
        rec_json = orjson.dumps(str(recorded_at))
    except orjson.JSONEncodeError:
        return b"\xff"  # matches no canonical body: the caller names the problem
    return b"".join(
        (b',"kind":', kind_json, b',"log":', log_json, b',"recorded_at":', rec_json, b',"seq":')
    )


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Merkle levels of an aligned block: ``levels[L][j]`` = node over leaves ``j·2^L…``."""
    sha256 = hashlib.sha256
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append(
            [
                sha256(b"\x01" + a + b).digest()
                for a, b in zip(below[0::2], below[1::2], strict=False)
            ]
        )
    return levels


def _block_pieces(levels: list[list[bytes]], start: int, m: int) -> list[Piece]:
    """Aligned perfect subtrees of the first ``m`` leaves of the block starting at ``start``."""
    out: list[Piece] = []
    offset = 0
    for level in range(m.bit_length() - 1, -1, -1):
        if m >> level & 1:
            out.append((level, start + offset, levels[level][offset >> level]))
            offset += 1 << level
    return out


def _blob(column: str, ph: str) -> str:
    """``column`` read as bytes. SQLite (placeholder ``?``) keeps any value in any column: a
    body edited by hand with string functions (``substr(body, …) || 'x'``) comes back as TEXT;
    ``CAST(… AS BLOB)`` gives its UTF-8 bytes, which then fail the hash check like any other
    modification instead of crashing the verifier. PostgreSQL's ``bytea`` needs no cast."""
    return f"CAST({column} AS BLOB)" if ph == "?" else column


def scan_range(
    fetch: Fetch,
    ph: str,
    log_id: str,
    lo: int,
    hi: int,
    size: int,
    block: int,
    stops: Sequence[int] = (),
) -> RangeResult:
    """Check rows ``lo <= seq < hi`` of log ``log_id`` (see the module docstring).

    ``fetch``/``ph``: the statement runner and its placeholder (``?`` or ``%s``); ``size``:
    the log size being verified (rows at or beyond it are not read); ``block``: rows per read,
    a power of two dividing ``lo``; ``stops``: checkpoint sizes in ``(lo, hi]``, ascending.
    Database errors propagate from ``fetch``.
    """
    sha256 = hashlib.sha256
    log_json = orjson.dumps(log_id)
    version_tail = b',"v":%d}' % RECORD_VERSION
    data_head = b'{"data":{'
    out = RangeResult(lo, hi)
    if lo > 0:
        found = fetch(
            f"SELECT {_blob('chain_hash', ph)} FROM ledger_entries "  # noqa: S608
            f"WHERE log_id = {ph} AND seq = {ph}",
            (log_id, lo - 1),
        )
        out.start_prev = bytes(found[0][0]) if found else b""
    prev = out.start_prev
    columns = "seq, recorded_at, kind, " + ", ".join(
        _blob(c, ph) for c in ("body", "leaf_hash", "prev_hash", "chain_hash")
    )
    lower = "" if lo == 0 else f" AND seq >= {ph}"
    first_sql = (
        f"SELECT {columns} FROM ledger_entries WHERE log_id = {ph}{lower} AND seq < {ph} "  # noqa: S608
        f"ORDER BY seq LIMIT {ph}"
    )
    next_sql = (
        f"SELECT {columns} FROM ledger_entries WHERE log_id = {ph} AND seq > {ph} "  # noqa: S608
        f"AND seq < {ph} ORDER BY seq LIMIT {ph}"
    )
    stack: list[Piece] = []
    prefix_cache: dict[tuple[str, str], bytes] = {}
    prefix = b""
    last_kind: object = None
    last_rec_at: object = None
    count = lo
    stop_at = 0
    last: int | None = None
    while True:
        if last is None:
            params: tuple[Any, ...] = (log_id, hi, block) if lo == 0 else (log_id, lo, hi, block)
            rows = fetch(first_sql, params)
        else:
            rows = fetch(next_sql, (log_id, last, hi, block))
        if not rows:
            break
        start = count
        leaves: list[bytes] = []
        add = leaves.append
        bad: tuple[int, str] | None = None
        for seq, rec_at, kind, body, leaf, prev_hash, chained in rows:
            if seq != count or sha256(b"\x00" + body).digest() != leaf:
                out.row = RowProblem(seq, rec_at, kind, bytes(body), bytes(leaf), count)
                bad = (seq, "")
                break
            if kind != last_kind or rec_at != last_rec_at:  # one append call: one pair
                cached = prefix_cache.get((kind, rec_at))
                if cached is None:
                    cached = _tail_prefix(kind, rec_at, log_json)
                    if len(prefix_cache) > 256:
                        prefix_cache.clear()
                    prefix_cache[(kind, rec_at)] = cached
                prefix = cached
                last_kind, last_rec_at = kind, rec_at
            if not (
                body.startswith(data_head)
                and body.endswith(b"%s%d%s" % (prefix, seq, version_tail))
            ):
                out.row = RowProblem(seq, rec_at, kind, bytes(body), bytes(leaf), count)
                bad = (seq, "")
                break
            if prev_hash != prev:
                bad = (seq, "prev_hash does not link to the previous record")
                break
            chain = sha256(b"\x02" + prev + leaf).digest()
            if chained != chain:
                bad = (seq, "chain_hash is wrong")
                break
            prev = chain
            count += 1
            add(leaf)
        levels = _levels(leaves)
        before = list(stack)
        made: list[Piece] = []
        for piece in _block_pieces(levels, start, count - start):
            push(stack, piece, made)
        tree_bad = _compare_tree(fetch, ph, log_id, lo, start, count, levels, made)
        while stop_at < len(stops) and stops[stop_at] <= count:
            size_at = stops[stop_at]
            out.stops.append((size_at, before + _block_pieces(levels, start, size_at - start)))
            stop_at += 1
        if tree_bad is not None:
            out.problems.append(tree_bad)
        if bad is not None:
            out.problems.append(bad)
        if out.problems:
            break
        if len(rows) < block:
            break
        last = int(rows[-1][0])
    out.verified = count - lo
    out.end_chain = prev
    out.pieces = stack
    if not out.problems and count < hi:
        after = fetch(
            f"SELECT seq FROM ledger_entries WHERE log_id = {ph} AND seq >= {ph} "  # noqa: S608
            f"AND seq < {ph} ORDER BY seq LIMIT 1",
            (log_id, hi, size),
        )
        nxt = f" (next stored record is {after[0][0]})" if after else ""
        out.problems.append((count, f"record {count} is missing{nxt}"))
    return out


def _compare_tree(
    fetch: Fetch,
    ph: str,
    log_id: str,
    lo: int,
    start: int,
    count: int,
    levels: list[list[bytes]],
    made: list[Piece],
) -> tuple[int, str] | None:
    """Stored nodes over leaves in ``[lo, count)`` completed by leaves ``start..count-1``
    must equal the recomputed ones (``levels`` inside the block, ``made`` merged above it).

    Returns ``(seq completing the first bad node, problem)`` or ``None``.
    """
    if count <= start:
        return None
    parts: list[str] = []
    params: list[Any] = []
    expected: list[bytes] = []  # the computed nodes in the order the query returns them
    above = {(level, first >> level): node for level, first, node in made}
    for level in range(1, count.bit_length() + 1):
        first = max(-(-(start + 1) // (1 << level)) - 1, -(-lo >> level))
        last = (count >> level) - 1
        if first <= last:  # one primary-key range scan per level (an OR scans the table)
            parts.append(
                f"SELECT * FROM (SELECT level, idx, {_blob('hash', ph)} FROM ledger_tree "  # noqa: S608
                f"WHERE log_id = {ph} AND level = {ph} AND idx BETWEEN {ph} AND {ph} "
                "ORDER BY idx) AS l" + str(level)
            )
            params += [log_id, level, first, last]
            if level < len(levels):
                base = start >> level
                expected += levels[level][first - base : last - base + 1]
            else:
                expected += [above.get((level, i), b"") for i in range(first, last + 1)]
    if not parts:
        return None
    rows = fetch(" UNION ALL ".join(parts), tuple(params))
    if len(rows) == len(expected) and all(
        h == e for (_lv, _ix, h), e in zip(rows, expected, strict=True)
    ):
        return None  # the common case: no dictionaries of every node
    stored = {(int(lv), int(ix)): bytes(h) for lv, ix, h in rows}
    computed = dict(above)
    for level in range(1, len(levels)):
        base = start >> level
        for j, node in enumerate(levels[level]):
            computed[(level, base + j)] = node
    return check_nodes(stored, computed)


def check_nodes(
    stored: dict[tuple[int, int], bytes], computed: dict[tuple[int, int], bytes]
) -> tuple[int, str] | None:
    """The first (by completing seq) node where ``stored`` and ``computed`` differ, if any:
    ``(seq completing it, problem)``; a node only in one of them is missing or extra."""
    if stored == computed:
        return None
    wrong = [k for k in computed.keys() | stored.keys() if stored.get(k) != computed.get(k)]
    level, idx = min(wrong, key=lambda k: ((k[1] + 1) << k[0], k[0]))
    done = ((idx + 1) << level) - 1
    state = "missing" if (level, idx) not in stored else "wrong"
    return done, (
        f"stored Merkle node (level {level}, index {idx}) over records "
        f"{idx << level}..{done} is {state}"
    )


def scan_range_in_process(
    backend: str,
    dsn: str,
    log_id: str,
    lo: int,
    hi: int,
    size: int,
    block: int,
    stops: list[int],
    accelerated: bool = True,
) -> RangeResult:
    """``scan_range`` over a connection of its own (the entry point of a worker process).

    ``backend`` is ``"sqlite"`` (``dsn``: a read-only ``file:`` URI, https://sqlite.org/uri.html)
    or ``"postgresql"`` (``dsn``: a libpq connection URI). Each read is its own short
    transaction. SQLite ranges go to the accelerator first (``scan_sqlite_file``) when
    ``use_accelerator``.
    """
    if backend == "sqlite":
        import sqlite3

        tried = use_accelerator(accelerated)
        if tried:
            found = scan_sqlite_file(dsn, log_id, lo, hi, block, stops)
            if found is not None:
                return found

        conn = sqlite3.connect(dsn, isolation_level=None, timeout=60.0, uri=True)
        conn.execute("PRAGMA query_only = 1")

        def fetch(sql: str, params: tuple[Any, ...]) -> list[Any]:
            rows: list[Any] = conn.execute(sql, params).fetchall()
            return rows

        try:
            result = scan_range(fetch, "?", log_id, lo, hi, size, block, stops)
        finally:
            conn.close()
        if tried and _accel is not None:  # the accelerator ran and declined
            result.verifier = "c+python"
        return result
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as pg:

        def pg_fetch(sql: str, params: tuple[Any, ...]) -> list[Any]:
            with pg.cursor(binary=True) as cur:
                cur.execute(sql, params)
                return cur.fetchall()

        return scan_range(pg_fetch, "%s", log_id, lo, hi, size, block, stops)
