"""The compiled verify accelerator (``sentinel/_ledgerscan.c``) against the reference.

``sentinel.ledgerscan.scan_range`` is the specification. The accelerator may only *accept*:
on a clean range it must return exactly the reference's ``RangeResult``; on anything else it
must decline (``None``), and ``Ledger.verify`` must then reach the same outcome as the
reference alone. The tamper suites (test_tamper.py, test_tamper_anchored.py) run every
tamper kind both ways too; here: random valid ledgers cut at random sizes, blocks and
checkpoint stops, random single-row and single-node tampering, the RFC 8785 string escaping,
and the fallbacks.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel import ledgerscan
from sentinel.ledger import Ledger, VerifyResult, chain_hash, leaf_hash
from sentinel.ledger.canonical import canonical_bytes
from tests.ledger.helpers import FixedClock, audit_record, raw, rebuild_tree

N = 70
REPO = Path(__file__).resolve().parents[2]


def test_accelerator_is_built() -> None:
    # `make test` (and so CI) installs gcc and the SQLite/OpenSSL headers first
    # (.ci/install-deps.sh) and its `accelerator` step rebuilds with
    # SENTINEL_REQUIRE_ACCELERATOR=1, so the module must be there: without this test a build
    # that silently fell back to pure Python would leave every differential test below
    # comparing the reference with itself. (A git worktree running on a venv installed from
    # another checkout builds it in place with `python hatch_build.py`.)
    module = importlib.import_module("sentinel._ledgerscan")
    assert Path(module.__file__ or "").parent == Path(ledgerscan.__file__).parent
    assert ledgerscan.accelerator_built()


# -- RFC 8785 strings: the C escaping is orjson's, and invalid UTF-8 is declined -------------


@settings(max_examples=300)
@given(st.text())
def test_json_string_is_orjsons(text: str) -> None:
    from sentinel import _ledgerscan

    assert _ledgerscan.json_string(text.encode()) == orjson.dumps(text)


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_json_string_declines_what_python_cannot_decode(data: bytes) -> None:
    from sentinel import _ledgerscan

    try:
        text = data.decode()
    except UnicodeDecodeError:
        assert _ledgerscan.json_string(data) is None
    else:
        assert _ledgerscan.json_string(data) == orjson.dumps(text)


def test_json_string_every_short_sequence() -> None:
    """Every 1-2 byte string, and every lead byte with every second byte in 3 and 4 byte
    forms (the boundaries of Unicode table 3-7: overlongs, surrogates, > U+10FFFF)."""
    from sentinel import _ledgerscan

    cases = [bytes([a]) for a in range(256)] + [
        bytes([a, b]) for a in range(256) for b in range(256)
    ]
    cases += [bytes([a, b, 0x80]) for a in range(0xE0, 0xF0) for b in range(256)]
    cases += [bytes([a, b, 0x80, 0xBF]) for a in range(0xF0, 0x100) for b in range(256)]
    for data in cases:
        try:
            expected: bytes | None = orjson.dumps(data.decode())
        except UnicodeDecodeError:
            expected = None
        assert _ledgerscan.json_string(data) == expected, data


# -- a valid ledger with awkward kinds and timestamps ----------------------------------------

ODD_TEXT = ["audit_event", 'q"uote\\back', "tab\there\n\x00\x1f\x7f", "é€😀\u2028", "", "x" * 300]


def _reseal(path: Path, log_id: str, kinds: dict[int, tuple[str, str]]) -> None:
    """Give records ``seq`` the (kind, recorded_at) in ``kinds`` and recompute every body,
    hash and Merkle node from there: a ledger valid in every respect (what ``append`` would
    refuse to write, kinds outside its pattern, is still a clean ledger to the verifier)."""
    conn = sqlite3.connect(path, isolation_level=None)
    leaves = []
    try:
        conn.execute("BEGIN")
        rows = conn.execute(
            "SELECT seq, body FROM ledger_entries WHERE log_id = ? ORDER BY seq", (log_id,)
        ).fetchall()
        prev = bytes(32)
        for seq, body in rows:
            record = json.loads(body)
            record["kind"], record["recorded_at"] = kinds.get(
                seq, (record["kind"], record["recorded_at"])
            )
            body = canonical_bytes(record)
            leaf = leaf_hash(body)
            chained = chain_hash(prev, leaf)
            conn.execute(
                "UPDATE ledger_entries SET kind = ?, recorded_at = ?, body = ?, leaf_hash = ?, "
                "prev_hash = ?, chain_hash = ? WHERE log_id = ? AND seq = ?",
                (record["kind"], record["recorded_at"], body, leaf, prev, chained, log_id, seq),
            )
            prev = chained
            leaves.append(leaf)
        conn.execute("COMMIT")
    finally:
        conn.close()
    with raw(f"sqlite:///{path}") as sa_conn:
        rebuild_tree(sa_conn, leaves, log_id)


@pytest.fixture(scope="module")
def valid_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("accel") / "ledger.db"
    clock = FixedClock()
    with (
        Ledger.open(f"sqlite:///{path}", clock=clock) as led,
        Ledger.open(f"sqlite:///{path}", log_id="other", clock=clock) as other,
    ):
        start = 0
        for size in (1, 2, 5, 8, 13, 17, 24):  # one recorded_at per append call
            led.append([audit_record(i) for i in range(start, start + size)])
            other.append([audit_record(i) for i in range(2)])
            clock.advance(1.5)
            start += size
        assert start == N
    odd = {seq: (ODD_TEXT[seq % 6], ODD_TEXT[(seq // 6) % 6] + "Z") for seq in range(20, 40)}
    _reseal(path, "sentinel", odd)
    with Ledger.open(f"sqlite:///{path}") as led:
        assert led.verify(workers=1, accelerated=False).ok
    return path


def _fetch(path: Path) -> tuple[sqlite3.Connection, ledgerscan.Fetch]:
    conn = sqlite3.connect(path, isolation_level=None)

    def fetch(sql: str, params: tuple[Any, ...]) -> list[Any]:
        return conn.execute(sql, params).fetchall()

    return conn, fetch


def _fields(r: ledgerscan.RangeResult) -> tuple[object, ...]:
    return (r.lo, r.hi, r.verified, r.start_prev, r.end_chain, r.pieces, r.stops, r.problems)


def _ranges(data: st.DataObject, size: int) -> tuple[int, int, list[tuple[int, int, list[int]]]]:
    block = 1 << data.draw(st.integers(0, 5), label="log2 block")
    span = block * data.draw(st.integers(1, 4), label="blocks per range")
    out = []
    for lo in range(0, size, span):
        hi = min(lo + span, size)
        stops = sorted(data.draw(st.sets(st.integers(lo + 1, hi), max_size=3), label="stops"))
        out.append((lo, hi, stops))
    return block, span, out


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_accelerator_equals_reference_on_valid_ledgers(valid_db: Path, data: st.DataObject) -> None:
    size = data.draw(st.integers(1, N), label="size")
    block, _span, ranges = _ranges(data, size)
    conn, fetch = _fetch(valid_db)
    try:
        for lo, hi, stops in ranges:
            ref = ledgerscan.scan_range(fetch, "?", "sentinel", lo, hi, size, block, stops)
            fast = ledgerscan.scan_sqlite_file(str(valid_db), "sentinel", lo, hi, block, stops)
            assert not ref.problems and ref.verifier == "python"
            assert fast is not None, (lo, hi, block, stops)
            assert fast.verifier == "c"
            assert _fields(fast) == _fields(ref)
    finally:
        conn.close()


# -- random single-row and single-node tampering -----------------------------------------------

ROW_EDITS = {
    "body byte": None,  # a byte xor-ed (drawn below)
    "body as text": "body = CAST(body AS TEXT)",  # same bytes: the reference accepts it
    "leaf_hash byte": None,
    "prev_hash byte": None,
    "chain_hash byte": None,
    "leaf_hash as hex text": "leaf_hash = hex(leaf_hash)",
    "chain_hash short": "chain_hash = substr(chain_hash, 1, 31)",
    "kind": "kind = kind || 'x'",
    "kind as blob": "kind = CAST(kind AS BLOB)",
    "recorded_at as number": "recorded_at = 5",
    "seq real": "seq = seq + 0.5",
    "seq moved": "seq = seq + 1000",
    "delete": None,
}
NODE_EDITS = {
    "node byte": "hash = zeroblob(32)",
    "node as text": "hash = CAST(hash AS TEXT)",
    "node deleted": None,
    "node idx moved": "idx = idx + 100000",
    "node short": "hash = substr(hash, 1, 16)",
}


def _tamper(path: Path, data: st.DataObject) -> str:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if data.draw(st.booleans(), label="row?"):
            seq = data.draw(st.integers(0, N - 1), label="seq")
            edit = data.draw(st.sampled_from(sorted(ROW_EDITS)), label="edit")
            where = f"WHERE log_id = 'sentinel' AND seq = {seq}"
            if edit == "delete":
                conn.execute(f"DELETE FROM ledger_entries {where}")
            elif edit.endswith(" byte"):
                column = edit.removesuffix(" byte")
                (value,) = conn.execute(f"SELECT {column} FROM ledger_entries {where}").fetchone()
                bad = bytearray(value)
                pos = data.draw(st.integers(0, len(bad) - 1), label="pos")
                bad[pos] ^= data.draw(st.integers(1, 255), label="xor")
                conn.execute(f"UPDATE ledger_entries SET {column} = ? {where}", (bytes(bad),))
            else:
                conn.execute(f"UPDATE ledger_entries SET {ROW_EDITS[edit]} {where}")
            return f"row {seq}: {edit}"
        nodes = conn.execute(
            "SELECT level, idx FROM ledger_tree WHERE log_id = 'sentinel' ORDER BY level, idx"
        ).fetchall()
        level, idx = data.draw(st.sampled_from(nodes), label="node")
        edit = data.draw(st.sampled_from(sorted(NODE_EDITS)), label="edit")
        where = f"WHERE log_id = 'sentinel' AND level = {level} AND idx = {idx}"
        if edit == "node deleted":
            conn.execute(f"DELETE FROM ledger_tree {where}")
        else:
            conn.execute(f"UPDATE ledger_tree SET {NODE_EDITS[edit]} {where}")
        return f"node ({level}, {idx}): {edit}"
    finally:
        conn.close()


def _outcome(r: VerifyResult) -> tuple[object, ...]:
    return (r.status, r.first_bad_seq, r.problem, r.records_checked, r.root, r.head_hash)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_accelerator_never_accepts_what_the_reference_rejects(
    valid_db: Path, tmp_path: Path, data: st.DataObject
) -> None:
    path = tmp_path / f"tampered-{data.draw(st.integers(0, 10**9), label='file')}.db"
    with sqlite3.connect(valid_db) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    what = _tamper(path, data)
    block, span, ranges = _ranges(data, N)
    conn, fetch = _fetch(path)
    try:
        for lo, hi, stops in ranges:
            ref = ledgerscan.scan_range(fetch, "?", "sentinel", lo, hi, N, block, stops)
            fast = ledgerscan.scan_sqlite_file(str(path), "sentinel", lo, hi, block, stops)
            if fast is not None:  # accepted: then exactly the reference's clean result
                assert not ref.problems and ref.row is None, (what, lo, hi)
                assert _fields(fast) == _fields(ref), (what, lo, hi)
    finally:
        conn.close()
    with Ledger.open(f"sqlite:///{path}") as led:
        kw: dict[str, Any] = {"batch": block, "range_size": span, "workers": 1}
        fast_result = led.verify(**kw)
        reference = led.verify(**kw, accelerated=False)
    assert _outcome(fast_result) == _outcome(reference), what
    assert reference.verifier == "python"
    assert fast_result.verifier in ("c", "python", "c+python")


# -- which implementation ran, and the fallbacks -----------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url, clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(12)])
    return url


def test_verifier_reports_c_python_and_mixed(small: str) -> None:
    with Ledger.open(small) as led:
        fast = led.verify(workers=1, range_size=4, batch=4)
        ref = led.verify(workers=1, range_size=4, batch=4, accelerated=False)
        assert (fast.verifier, ref.verifier) == ("c", "python")
        assert fast.to_json()["verifier"] == "c"
        assert _outcome(fast) == _outcome(ref) and fast.ok
    with raw(small) as conn:  # the last range is declined: the reference names the problem
        conn.exec_driver_sql("UPDATE ledger_entries SET kind = 'x' WHERE seq = 9")
    with Ledger.open(small) as led:
        mixed = led.verify(workers=1, range_size=4, batch=4)
    assert mixed.verifier == "c+python"
    assert (mixed.status, mixed.first_bad_seq) == ("invalid", 9)


@pytest.mark.parametrize("workers", [1, 2])
def test_verifier_says_c_ran_when_it_declined_every_range(small: str, workers: int) -> None:
    """The only range (or every range) declined: the accelerator was still tried, so not
    ``python`` (which means the reference alone)."""
    with raw(small) as conn:
        conn.exec_driver_sql("UPDATE ledger_entries SET kind = 'x' WHERE seq IN (1, 5, 9)")
    with Ledger.open(small) as led:
        one = led.verify(workers=1)  # one range
        ranged = led.verify(workers=workers, range_size=4, batch=4)  # three, all declined
        alone = led.verify(workers=workers, range_size=4, batch=4, accelerated=False)
    assert (one.verifier, ranged.verifier, alone.verifier) == ("c+python", "c+python", "python")
    assert one.first_bad_seq == ranged.first_bad_seq == alone.first_bad_seq == 1


def test_environment_forces_the_reference_in_workers_too(
    small: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Ledger.open(small) as led:
        assert led.verify(workers=2, range_size=4, batch=4).verifier == "c"
        monkeypatch.setenv(ledgerscan.VERIFIER_ENV, "python")
        forced = led.verify(workers=2, range_size=4, batch=4)
        alone = led.verify(workers=1)
    assert (forced.verifier, alone.verifier) == ("python", "python")
    assert forced.ok and alone.ok


@pytest.mark.parametrize("value", ["py", "c", "reference", "python3"])
def test_unknown_verifier_setting_is_refused(
    ledger_url: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo must not silently run the accelerator (it did: anything but ``python``)."""
    with Ledger.open(ledger_url, clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(3)])
        monkeypatch.setenv(ledgerscan.VERIFIER_ENV, value)
        with pytest.raises(ValueError, match=r"'auto'.*'python'") as caught:
            led.verify(workers=1)
        assert repr(value) in str(caught.value)
        for ok, verifier in (("", "c"), (" AUTO ", "c"), ("Python", "python")):
            monkeypatch.setenv(ledgerscan.VERIFIER_ENV, ok)
            result = led.verify(workers=1)
            assert result.ok
            assert result.verifier == (verifier if led.backend == "sqlite" else "python")


def test_unknown_verifier_setting_is_exit_2_in_the_cli(
    small: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from sentinel.cli.main import cli

    monkeypatch.setenv(ledgerscan.VERIFIER_ENV, "py")
    res = CliRunner().invoke(
        cli, ["ledger", "verify", "--ledger", small.removeprefix("sqlite:///")]
    )
    assert res.exit_code == 2, res.output
    assert "SENTINEL_VERIFIER='py' is not a verifier setting" in res.stderr
    assert "'auto'" in res.stderr and "'python'" in res.stderr


def test_without_the_accelerator_the_reference_runs(small: str) -> None:
    """A build without a compiler: ``sentinel._ledgerscan`` cannot be imported at all."""
    script = (
        "import sys; sys.modules['sentinel._ledgerscan'] = None\n"
        "from sentinel import ledgerscan\n"
        "from sentinel.ledger import Ledger\n"
        "assert not ledgerscan.accelerator_built()\n"
        "if __name__ == '__main__':\n"
        f"    with Ledger.open({small!r}) as led:\n"
        "        for w in (1, 2):\n"
        "            r = led.verify(workers=w, range_size=4, batch=4)\n"
        "            print(r.status, r.verifier, r.records_checked)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["valid python 12", "valid python 12"]


def test_pure_python_wheel_without_a_compiler(tmp_path: Path) -> None:
    """The build hook warns and builds a pure-Python wheel when there is no C compiler (the
    fallback `make demo` relies on), and fails loudly when the accelerator is required."""
    env = {"PATH": "/usr/bin:/bin", "CC": "/nonexistent/cc", "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    wheels = [p.name for p in tmp_path.glob("*.whl")]
    assert wheels == ["sentinel_residency-0.1.0-py3-none-any.whl"], wheels
    required = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**env, "SENTINEL_REQUIRE_ACCELERATOR": "1"},
        check=False,
    )
    assert required.returncode != 0
    assert "ledger-verify accelerator" in required.stdout + required.stderr


# -- table (rowid) order: what the accelerator's sequential row walk depends on ---------------
#
# The accelerator reads a block's rows in rowid order from the rowid of its first seq, skips
# other logs' rows, re-reads the block through the (log_id, seq) index when table order is
# not seq order, and confirms a range read so with a count of the reference's predicate.

M = 40


def _ledger(path: Path, layout: str) -> None:
    """A valid ledger of M records of log ``sentinel`` (and some of ``other``), its rows laid
    out in the table as ``layout`` says."""
    clock = FixedClock()
    url = f"sqlite:///{path}"
    with Ledger.open(url, clock=clock) as led, Ledger.open(url, log_id="other", clock=clock) as o:
        if layout == "interleaved":  # one record of each log in turn
            for i in range(M):
                led.append([audit_record(i)])
                o.append([audit_record(i)])
        elif layout == "other in runs":  # runs of the other log longer than a block
            for start in range(0, M, 10):
                led.append([audit_record(i) for i in range(start, start + 10)])
                o.append([audit_record(i) for i in range(start, start + 50)])
        else:
            led.append([audit_record(i) for i in range(M)])
            o.append([audit_record(i) for i in range(5)])
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        columns = "log_id, seq, recorded_at, kind, body, leaf_hash, prev_hash, chain_hash"
        if layout in ("reinserted", "reinserted+vacuum"):  # rows 3, 17, 30: new rowids
            conn.execute("BEGIN")
            conn.execute(
                f"CREATE TEMP TABLE moved AS SELECT {columns} FROM ledger_entries "
                "WHERE log_id = 'sentinel' AND seq IN (30, 3, 17)"
            )
            conn.execute(
                "DELETE FROM ledger_entries WHERE log_id = 'sentinel' AND seq IN (3, 17, 30)"
            )
            conn.execute(
                f"INSERT INTO ledger_entries ({columns}) SELECT {columns} FROM moved "
                "ORDER BY seq DESC"
            )
            conn.execute("COMMIT")
        if layout == "reversed":  # the whole table in descending seq order
            conn.execute("BEGIN")
            conn.execute(f"CREATE TEMP TABLE copy AS SELECT {columns} FROM ledger_entries")
            conn.execute("DELETE FROM ledger_entries")
            conn.execute(
                f"INSERT INTO ledger_entries ({columns}) SELECT {columns} FROM copy "
                "ORDER BY seq DESC"
            )
            conn.execute("COMMIT")
        if layout.endswith("vacuum"):
            conn.execute("VACUUM")
    finally:
        conn.close()


def _same_as_reference(path: Path, size: int, must_accept: bool) -> None:
    """Every cut of [0, size) into ranges and blocks: the accelerator returns the reference's
    clean result or declines; ``Ledger.verify`` reaches the reference's outcome."""
    conn, fetch = _fetch(path)
    try:
        for block in (1, 4, 8, 64):
            for span in (block, 2 * block, 4 * block):
                for lo in range(0, size, span):
                    hi = min(lo + span, size)
                    stops = sorted({hi, (lo + hi + 1) // 2})
                    ref = ledgerscan.scan_range(fetch, "?", "sentinel", lo, hi, size, block, stops)
                    fast = ledgerscan.scan_sqlite_file(str(path), "sentinel", lo, hi, block, stops)
                    where = (block, lo, hi)
                    if must_accept:
                        assert fast is not None, where
                    if fast is not None:
                        assert not ref.problems and ref.row is None, where
                        assert _fields(fast) == _fields(ref), where
    finally:
        conn.close()
    with Ledger.open(f"sqlite:///{path}") as led:
        for kw in ({"batch": 4, "range_size": 8}, {"batch": 64, "range_size": 64}):
            fast_result = led.verify(workers=1, **kw)
            reference = led.verify(workers=1, accelerated=False, **kw)
            assert _outcome(fast_result) == _outcome(reference), kw
            if must_accept:
                assert fast_result.ok and fast_result.verifier == "c", kw


@pytest.mark.parametrize(
    "layout",
    [
        "plain",
        "plain+vacuum",
        "interleaved",
        "other in runs",
        "reinserted",
        "reinserted+vacuum",
        "reversed",
    ],
)
def test_accelerator_on_any_table_order(tmp_path: Path, layout: str) -> None:
    """A valid ledger whatever the order of its rows in the table: two logs interleaved row by
    row or in long runs, rows deleted and re-inserted (rowid order no longer seq order), the
    whole table reversed, VACUUMed (rowids renumbered): the accelerator accepts, with the
    reference's result (it falls back to the index where table order is not seq order)."""
    path = tmp_path / "ledger.db"
    _ledger(path, layout)
    _same_as_reference(path, M, must_accept=True)


@pytest.mark.parametrize(
    ("seq", "where"),
    [
        ("5.5", "inside a range"),
        ("-1", "before record 0"),
        ("7.999", "before a block end"),
        ("39.5", "after the last record"),
    ],
)
def test_accelerator_sees_rows_outside_table_order(tmp_path: Path, seq: str, where: str) -> None:
    """A row added at the end of the table with a seq that is not the next integer: a walk in
    table order from the range's first row never meets it, but the reference's query finds it
    (ordered by seq) and reports it. The accelerator must not accept such a range."""
    path = tmp_path / "ledger.db"
    _ledger(path, "plain")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        columns = "log_id, seq, recorded_at, kind, body, leaf_hash, prev_hash, chain_hash"
        conn.execute(
            f"INSERT INTO ledger_entries ({columns}) SELECT log_id, {seq}, recorded_at, kind, "
            "body, leaf_hash, randomblob(32), chain_hash FROM ledger_entries "
            "WHERE log_id = 'sentinel' AND seq = 5"
        )
    finally:
        conn.close()
    with Ledger.open(f"sqlite:///{path}") as led:
        assert not led.verify(workers=1, accelerated=False).ok, where
    _same_as_reference(path, M, must_accept=False)
