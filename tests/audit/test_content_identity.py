"""A file's identity for dedup is its content (first-line fingerprint + offset + line hash), not
its inode: a byte-for-byte copy (logrotate ``copytruncate``'s ``app.log.1`` matched by a glob, a
restored backup, a log fetched from another host, a .gz) adds nothing; a file ingested by hand
and then tailed gives the same keys. Real corpus files, the real CLI, real ledgers."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sentinel.audit.cursor import HEAD_BYTES, JSONFileCursorStore, first_line_fingerprint
from sentinel.audit.files import parse_file
from sentinel.audit.globtailer import GlobTailer
from sentinel.audit.parsers import PARSERS
from sentinel.audit.records import to_ledger_batch
from sentinel.audit.tailer import FileTailer, TailBatch
from sentinel.ledger import Ledger
from sentinel.records import AuditEvent, Unparsed, position_key

APP_JSON = "registry-logs/distribution-live/registry-app-json.log"
ACCESS = "registry-logs/distribution-live/registry-access-combined.log"


def _ingest(url: str, fmt: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("sentinel"))
    cmd = [exe, "audit", "ingest", "--format", fmt, "--source", "reg", "--ledger", url]
    return subprocess.run([*cmd, *map(str, paths)], capture_output=True, text=True, check=False)


def _appended(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode in (0, 1), result.stderr
    return int(result.stdout.split("appended ", 1)[1].split(" ", 1)[0])


@pytest.fixture
def lines(corpus: Path) -> list[bytes]:
    """Distinct access-log lines (a counter in the user agent keeps every line unique)."""
    base = (corpus / ACCESS).read_bytes().splitlines()
    return [b'%s n%d"' % (base[i % len(base)][:-1], i) for i in range(40)]


def sha(items: list[bytes]) -> list[str]:
    return [hashlib.sha256(x).hexdigest() for x in items]


def append(path: Path, items: list[bytes]) -> None:
    with path.open("ab") as f:
        f.write(b"".join(x + b"\n" for x in items))


def keys_by_hand(path: Path, fmt: str = "distribution-access", **kw: int) -> list[str]:
    return [r.dedup_key for r in parse_file(path, PARSERS[fmt], "reg", **kw)]


class Run:
    """A ledger-backed tailer (file or glob) committing records with their cursor."""

    def __init__(self, ledger_url: str, path: Path, *, glob: bool = False, **kw: int) -> None:
        self.ledger = Ledger.open(ledger_url)
        self.delivered: list[AuditEvent | Unparsed] = []
        kind = GlobTailer if glob else FileTailer
        self.tailer = kind(
            path,
            "reg",
            PARSERS["distribution-access"],
            self.ledger,
            self._sink,
            use_watchdog=False,
            batch_lines=4,
            **kw,
        )

    def _sink(self, batch: TailBatch) -> None:
        records, keys = to_ledger_batch(batch.records)
        self.ledger.append(records, dedup_keys=keys, cursors={batch.cursor_key: batch.cursor_value})
        self.delivered += batch.records

    def poll(self) -> int:
        return self.tailer.poll_once() + self.tailer.poll_once()

    def close(self) -> None:
        self.tailer.close()
        self.ledger.close()


def in_ledger(ledger_url: str) -> list[str]:
    with Ledger.open(ledger_url) as led:
        return [r["data"]["raw_sha256"] for r in led.query(kind="audit_event")]


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize(("sample", "fmt"), [(APP_JSON, "distribution-json")])
def test_a_copy_is_not_ingested_again(
    tmp_path: Path, corpus: Path, ledger_url: str, sample: str, fmt: str
) -> None:
    """Issue #4 finding 2: ``cp app.log copy.log`` and ingest both → the copy adds nothing,
    nor does a gzip copy or a copy under another directory; a copy that grew adds its new
    lines only."""
    orig = tmp_path / "registry-app-json.log"
    shutil.copyfile(corpus / sample, orig)
    first = _appended(_ingest(ledger_url, fmt, orig))
    assert first == 63  # the corpus file's records (as counted by the sweep)
    other = tmp_path / "fetched-from-another-host"
    other.mkdir()
    shutil.copyfile(orig, tmp_path / "copy.log")
    shutil.copyfile(orig, other / "registry-app-json.log")
    with gzip.open(tmp_path / "copy.log.gz", "wb") as gz:
        gz.write(orig.read_bytes())
    for path in (tmp_path / "copy.log", other / "registry-app-json.log", tmp_path / "copy.log.gz"):
        result = _ingest(ledger_url, fmt, path)
        assert _appended(result) == 0, path
        assert f"{first} duplicate(s) skipped" in result.stdout
    grown = tmp_path / "grown.log"
    extra = [
        x
        for x in orig.read_bytes().splitlines(keepends=True)
        if PARSERS[fmt].parse(x.rstrip(b"\n"), source="reg", src_pos="x")
    ][:3]
    grown.write_bytes(orig.read_bytes() + b"".join(extra))  # three of its lines, appended
    assert _appended(_ingest(ledger_url, fmt, grown)) == 3  # new offsets: new records
    with Ledger.open(ledger_url) as led:
        assert led.size() == first + 3
        assert led.verify().ok


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
def test_copytruncate_with_a_glob_matching_the_copy_is_exactly_once(
    tmp_path: Path, lines: list[bytes], ledger_url: str
) -> None:
    """logrotate ``copytruncate`` twice, with ``*.log*`` tailing the live file *and* its
    copies: every line is in the ledger exactly once, and the lines written between the last
    read and the truncation (lost to a single-file tailer) are read from the copy."""
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "app.log"
    append(live, lines[:5])
    run = Run(ledger_url, logs / "*.log*", glob=True)
    assert run.poll() == 5
    for lo, hi in ((5, 12), (12, 20)):
        append(live, lines[lo : lo + 3])  # unread at rotation
        if (logs / "app.log.1").exists():
            (logs / "app.log.1").rename(logs / "app.log.2")  # same inode, new name
        shutil.copy2(live, logs / "app.log.1")  # copytruncate: a NEW inode, the same bytes
        with live.open("r+b") as f:
            f.truncate(0)
        append(live, lines[lo + 3 : hi])
        run.poll()
    assert isinstance(run.tailer, GlobTailer)
    assert run.tailer.files == [logs / "app.log", logs / "app.log.1", logs / "app.log.2"]
    run.close()
    got = in_ledger(ledger_url)
    assert Counter(got) == Counter(sha(lines[:20]))  # all of them, each once
    # the copies were read whole (the ledger, not luck, kept them out)
    assert len(run.delivered) > 20

    again = Run(ledger_url, logs / "*.log*", glob=True)  # a restart reads nothing new
    again.poll()
    again.close()
    assert Counter(in_ledger(ledger_url)) == Counter(sha(lines[:20]))


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
def test_ingested_by_hand_then_tailed_gives_the_same_keys(
    tmp_path: Path, lines: list[bytes], ledger_url: str
) -> None:
    log = tmp_path / "access.log"
    append(log, lines[:10])
    by_hand = keys_by_hand(log)
    assert _appended(_ingest(ledger_url, "distribution-access", log)) == 10
    run = Run(ledger_url, log)
    assert run.poll() == 10
    assert [r.dedup_key for r in run.delivered] == by_hand
    append(log, lines[10:12])
    assert run.poll() == 2
    run.close()
    assert in_ledger(ledger_url) == sha(lines[:12])
    # and a copy of the tailed file, ingested by hand afterwards, adds nothing
    shutil.copyfile(log, tmp_path / "backup.log")
    assert _appended(_ingest(ledger_url, "distribution-access", tmp_path / "backup.log")) == 0


def test_gz_rotation_keeps_the_keys(tmp_path: Path, lines: list[bytes]) -> None:
    """Stopped, rotated and compressed: the tail read from the .gz at the same uncompressed
    offset has the keys the plain file would have given."""
    log = tmp_path / "access.log"
    append(log, lines[:5])
    store = JSONFileCursorStore(tmp_path / "cursors.json")
    got: list[AuditEvent | Unparsed] = []

    def sink(batch: TailBatch) -> None:
        got.extend(batch.records)
        store.commit({batch.cursor_key: batch.cursor_value})

    def tail() -> None:
        t = FileTailer(log, "reg", PARSERS["distribution-access"], store, sink, use_watchdog=False)
        t.poll_once()
        t.close()

    tail()
    append(log, lines[5:9])
    plain_keys = keys_by_hand(log)
    log.rename(tmp_path / "access.log.1")
    with (tmp_path / "access.log.1.gz").open("wb") as out:
        subprocess.run(["gzip", "-c", str(tmp_path / "access.log.1")], stdout=out, check=True)
    (tmp_path / "access.log.1").unlink()
    append(log, lines[9:11])
    tail()
    assert [r.raw_sha256 for r in got] == sha(lines[:11])
    assert [r.dedup_key for r in got[:9]] == plain_keys
    assert keys_by_hand(tmp_path / "access.log.1.gz") == plain_keys


@pytest.mark.parametrize("max_line", [1 << 20, 2048])
def test_first_line_still_being_written_and_oversize(
    tmp_path: Path, lines: list[bytes], max_line: int
) -> None:
    """No record before the first line is complete, so its fingerprint never changes under a
    file's records: a 5 KiB first line written in three parts (also when it is over
    ``max_line``, kept as unparsed evidence) gives the keys a hand ingest of the finished file
    gives."""
    length = 5000
    log = tmp_path / "first.log"
    first = lines[0] + b" " + b"x" * (length - len(lines[0]) - 1)
    log.write_bytes(first[:700])  # not even the fingerprint's 1 KiB yet
    store = JSONFileCursorStore(tmp_path / "cursors.json")
    got: list[AuditEvent | Unparsed] = []
    tailer = FileTailer(
        log,
        "reg",
        PARSERS["distribution-access"],
        store,
        lambda b: got.extend(b.records),
        use_watchdog=False,
        max_line=max_line,
    )
    assert tailer.poll_once() == 0
    with log.open("ab") as f:
        f.write(first[700:3000])
    assert tailer.poll_once() == 0  # over 1 KiB, still no newline: still nothing
    with log.open("ab") as f:
        f.write(first[3000:] + b"\n")
    append(log, lines[1:4])
    assert tailer.poll_once() == 4
    tailer.close()
    assert isinstance(got[0], Unparsed)  # not an access line with 4 KiB appended
    assert ("longer than" in got[0].reason) == (max_line < length)
    fp = first_line_fingerprint(first)
    assert fp == hashlib.sha256(first[:HEAD_BYTES]).hexdigest()[:16]
    assert all(f":{fp}:" in r.src_pos for r in got)
    assert [r.dedup_key for r in got] == keys_by_hand(log, max_line=max_line)


def test_same_inode_rewritten(tmp_path: Path, lines: list[bytes]) -> None:
    """The same inode truncated and rewritten: with the same bytes nothing is new (the
    generation in ``src_pos`` differs, the key does not); with other bytes everything is."""
    log = tmp_path / "access.log"
    append(log, lines[:4])
    store = JSONFileCursorStore(tmp_path / "cursors.json")
    got: list[AuditEvent | Unparsed] = []
    tailer = FileTailer(
        log,
        "reg",
        PARSERS["distribution-access"],
        store,
        lambda b: got.extend(b.records),
        use_watchdog=False,
    )
    tailer.poll_once()
    log.write_bytes(b"")
    assert tailer.poll_once() == 0
    append(log, lines[:4])  # rewritten with the same bytes
    tailer.poll_once()
    log.write_bytes(b"")
    tailer.poll_once()
    append(log, lines[10:14])  # and then with other bytes
    tailer.poll_once()
    tailer.close()
    assert tailer.stats.truncations == 2
    gens = [int(r.src_pos.rsplit(":", 2)[0].rsplit(".", 1)[1]) for r in got]
    assert gens == [0] * 4 + [1] * 4 + [2] * 4
    keys = [r.dedup_key for r in got]
    assert keys[:4] == keys[4:8]
    assert not set(keys[8:]) & set(keys[:4])


def test_two_files_with_the_same_first_line(tmp_path: Path, lines: list[bytes]) -> None:
    """The documented limit: files sharing their first line share the fingerprint, so only a
    line with identical bytes at an identical offset shares a key (it is the same content);
    every other line of the second file is its own."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    append(a, [lines[0], lines[1], lines[2]])
    append(b, [lines[0], lines[1], lines[3], lines[2]])
    ka, kb = keys_by_hand(a), keys_by_hand(b)
    assert ka[:2] == kb[:2]
    assert not set(ka[2:]) & set(kb[2:])  # lines[2] sits at another offset in b


def test_positions_other_than_files_keep_their_keys() -> None:
    """Webhook and syslog positions, and file positions written before fingerprints, keep
    the keys they had."""
    for pos in ("reg:webhook:2026-11-29T10:00:00.000000Z:3#1", "reg:syslog:2026-11-29:1:7"):
        assert position_key(pos) == pos
    assert position_key("/var/log/a@b.log@2049:77.1:4096#2") == "2049:77.1:4096#2"
    fp = first_line_fingerprint(b"first line")
    assert position_key(f"/var/log/a@b.log@2049:77.1:{fp}:4096#2") == f"{fp}:4096#2"
    assert position_key(f"/srv/x.log@2049:77.0:{fp}:0@17") == f"{fp}:0@17"
