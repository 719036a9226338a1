"""Rotation to .gz, many files by glob, delete and recreate: real files, real rotations (done by
hand in logrotate's order, and by logrotate itself), records and cursors in a real ledger.

Each test checks exactly-once twice: the tailer delivered every line once (before the ledger's
dedup keys could hide a re-read), and the ledger holds every line once, in order per file.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from sentinel.audit.globtailer import GlobTailer
from sentinel.audit.parsers import PARSERS
from sentinel.audit.records import to_ledger_batch
from sentinel.audit.tailer import FileTailer, TailBatch
from sentinel.ledger import Ledger

ACCESS = "registry-logs/distribution-live/registry-access-combined.log"


@pytest.fixture
def lines(corpus: Path) -> list[bytes]:
    """Distinct access-log lines (a counter in the user agent keeps every line unique)."""
    base = (corpus / ACCESS).read_bytes().splitlines()
    assert all(x.endswith(b'"') for x in base)
    return [b'%s n%d"' % (base[i % len(base)][:-1], i) for i in range(60)]


def sha(items: list[bytes]) -> list[str]:
    return [hashlib.sha256(x).hexdigest() for x in items]


def append(path: Path, items: list[bytes], *, newline_last: bool = True) -> None:
    with path.open("ab") as f:
        f.write(b"\n".join(items) + (b"\n" if newline_last else b""))


def gzip_like_logrotate(src: Path, dst: Path) -> None:
    """``gzip`` into ``dst``, then unlink ``src`` (logrotate's compress; mtime kept)."""
    with dst.open("wb") as out:
        subprocess.run(["gzip", "-c", str(src)], stdout=out, check=True)
    shutil.copystat(src, dst)
    src.unlink()


class Run:
    """A ledger-backed tailer: ``poll()`` reads what is there and commits it with its cursor."""

    def __init__(self, ledger_url: str, path: Path, *, glob: bool = False) -> None:
        self.ledger = Ledger.open(ledger_url)
        self.delivered: list[str] = []
        kind = GlobTailer if glob else FileTailer
        self.tailer = kind(
            path,
            "reg",
            PARSERS["distribution-access"],
            self.ledger,
            self._sink,
            use_watchdog=False,
            batch_lines=4,
        )

    def _sink(self, batch: TailBatch) -> None:
        records, keys = to_ledger_batch(batch.records)
        self.ledger.append(records, dedup_keys=keys, cursors={batch.cursor_key: batch.cursor_value})
        self.delivered += [r.raw_sha256 for r in batch.records]

    def poll(self) -> int:
        return self.tailer.poll_once() + self.tailer.poll_once()

    def close(self) -> None:
        self.tailer.close()
        self.ledger.close()


def in_ledger(ledger_url: str) -> list[str]:
    with Ledger.open(ledger_url) as led:
        return [r["data"]["raw_sha256"] for r in led.query(kind="audit_event")]


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
def test_compress_while_running_finishes_from_the_open_file(
    tmp_path: Path, lines: list[bytes], ledger_url: str
) -> None:
    """logrotate ``compress``: rename, create, gzip (unlinks the renamed file) — the tailer
    still holds the old file open and reads its tail before the new file."""
    log = tmp_path / "access.log"
    append(log, lines[:5])
    run = Run(ledger_url, log)
    assert run.poll() == 5
    append(log, lines[5:8])  # unread at rotation
    log.rename(tmp_path / "access.log.1")
    append(log, lines[8:11])  # create + the registry writing to the new file
    gzip_like_logrotate(tmp_path / "access.log.1", tmp_path / "access.log.1.gz")
    assert run.poll() == 6
    assert run.tailer.stats.rotations == 1
    run.close()
    assert run.delivered == sha(lines[:11])
    assert in_ledger(ledger_url) == sha(lines[:11])


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
def test_compressed_before_restart_is_read_from_the_gz_at_the_same_offset(
    tmp_path: Path, lines: list[bytes], ledger_url: str
) -> None:
    log = tmp_path / "access.log"
    append(log, lines[:5])
    run = Run(ledger_url, log)
    run.poll()
    run.close()  # Sentinel stops
    append(log, lines[5:9], newline_last=False)  # last line never terminated
    log.rename(tmp_path / "access.log.1")
    append(log, lines[9:12])
    gzip_like_logrotate(tmp_path / "access.log.1", tmp_path / "access.log.1.gz")
    assert not (tmp_path / "access.log.1").exists()

    again = Run(ledger_url, log)
    assert again.poll() == 7
    again.close()
    assert again.delivered == sha(lines[5:12])
    assert in_ledger(ledger_url) == sha(lines[:12])
    # the records from the .gz carry the original file's identity and uncompressed offsets
    with Ledger.open(ledger_url) as led:
        pos = [r["data"]["src_pos"] for r in led.query(kind="audit_event")]
    first_ino = pos[0].split("@")[1].split(".")[0]
    assert pos[5].split("@")[1].startswith(first_ino)
    assert pos[5].endswith(f":{sum(len(x) + 1 for x in lines[:5])}")

    third = Run(ledger_url, log)  # and a further restart reads nothing twice
    assert third.poll() == 0
    third.close()


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_delaycompress_two_rotations_while_stopped(
    tmp_path: Path, lines: list[bytes], ledger_url: str
) -> None:
    """``compress`` + ``delaycompress``: the cursor's file ends up as access.log.2.gz, the next
    one as access.log.1; both are finished, oldest first, then the live file."""
    log = tmp_path / "access.log"
    append(log, lines[:5])
    run = Run(ledger_url, log)
    run.poll()
    run.close()
    append(log, lines[5:8])
    # rotation 1: rename, the registry reopens
    log.rename(tmp_path / "access.log.1")
    append(log, lines[8:11])
    # rotation 2: .1 → .2 and compressed (delayed), live → .1, new live file
    (tmp_path / "access.log.1").rename(tmp_path / "access.log.2")
    gzip_like_logrotate(tmp_path / "access.log.2", tmp_path / "access.log.2.gz")
    log.rename(tmp_path / "access.log.1")
    append(log, lines[11:14])

    again = Run(ledger_url, log)
    assert again.poll() == 9
    again.close()
    assert again.delivered == sha(lines[5:14])
    assert in_ledger(ledger_url) == sha(lines[:14])


def _logrotate(tmp_path: Path, log: Path, *options: str) -> None:
    binary = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not Path(binary).exists():
        pytest.fail("logrotate is not installed: apt-get install logrotate", pytrace=False)
    conf = tmp_path / "logrotate.conf"
    conf.write_text(
        f"{log} {{\n  rotate 5\n  missingok\n" + "".join(f"  {o}\n" for o in options) + "}\n"
    )
    subprocess.run(
        [binary, "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)],
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize(
    "options", [("compress", "create"), ("compress", "delaycompress", "create")]
)
def test_real_logrotate(
    tmp_path: Path, lines: list[bytes], ledger_url: str, options: tuple[str, ...]
) -> None:
    """logrotate itself, twice while the tailer runs and twice while it is stopped."""
    log = tmp_path / "access.log"
    append(log, lines[:5])
    run = Run(ledger_url, log)
    run.poll()
    append(log, lines[5:8])
    _logrotate(tmp_path, log, *options)
    append(log, lines[8:11])
    run.poll()
    append(log, lines[11:13])
    _logrotate(tmp_path, log, *options)
    append(log, lines[13:15])
    run.poll()
    run.close()
    assert run.delivered == sha(lines[:15])

    append(log, lines[15:18])  # stopped: unread, then two rotations
    _logrotate(tmp_path, log, *options)
    append(log, lines[18:20])
    _logrotate(tmp_path, log, *options)
    append(log, lines[20:22])
    assert list(tmp_path.glob("access.log.*.gz")), "logrotate compressed nothing"
    again = Run(ledger_url, log)
    again.poll()
    again.close()
    assert again.delivered == sha(lines[15:22])
    assert in_ledger(ledger_url) == sha(lines[:22])


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_damaged_gz_is_read_up_to_the_damage_and_counted(
    tmp_path: Path, lines: list[bytes], ledger_url: str
) -> None:
    log = tmp_path / "access.log"
    append(log, lines[:3])
    run = Run(ledger_url, log)
    run.poll()
    run.close()
    append(log, lines[3:40])
    log.rename(tmp_path / "access.log.1")
    append(log, lines[40:42])
    data = gzip.compress((tmp_path / "access.log.1").read_bytes())
    (tmp_path / "access.log.1").unlink()
    (tmp_path / "access.log.1.gz").write_bytes(data[: len(data) * 2 // 3])  # cut short
    again = Run(ledger_url, log)
    again.poll()
    again.close()
    got = again.delivered
    assert again.tailer.stats.read_errors == 1
    # a prefix of the unread lines, then the new file; nothing twice
    prefix = got[:-2]
    assert 10 <= len(prefix) < 37  # the lines before the damage, not the rest
    assert prefix == sha(lines[3 : 3 + len(prefix)]) and got[-2:] == sha(lines[40:42])
    assert len(set(in_ledger(ledger_url))) == len(in_ledger(ledger_url))


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
def test_delete_and_recreate(tmp_path: Path, lines: list[bytes], ledger_url: str) -> None:
    log = tmp_path / "access.log"
    append(log, lines[:4])
    run = Run(ledger_url, log)
    run.poll()
    append(log, lines[4:6])
    log.unlink()  # deleted: the open file is still read to its end
    append(log, lines[6:9])
    run.poll()
    run.close()
    log.unlink()  # deleted and recreated while stopped: the new file from its start
    append(log, lines[9:11])
    again = Run(ledger_url, log)
    again.poll()
    again.close()
    assert run.delivered + again.delivered == sha(lines[:11])
    assert in_ledger(ledger_url) == sha(lines[:11])


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgresql"], indirect=True)
def test_glob_many_files_each_with_its_own_cursor(
    tmp_path: Path, lines: list[bytes], ledger_url: str
) -> None:
    logs = tmp_path / "registry"
    logs.mkdir()
    a, b = logs / "a.log", logs / "b.log"
    append(a, lines[0:3])
    append(b, lines[3:5])
    (logs / "notes.txt").write_bytes(lines[50] + b"\n")  # does not match
    run = Run(ledger_url, logs / "*.log", glob=True)
    assert run.poll() == 5
    assert isinstance(run.tailer, GlobTailer) and run.tailer.files == [a, b]
    c = logs / "c.log"  # a file that starts to match later
    append(c, lines[5:7])
    append(a, lines[7:8])
    assert run.poll() == 3
    # rotation of one file, compressed: not tailed as a file of its own, finished by a.log's
    append(a, lines[8:10])
    a.rename(logs / "a.log.1")
    append(a, lines[10:11])
    gzip_like_logrotate(logs / "a.log.1", logs / "a.log.1.gz")
    assert run.poll() == 3
    run.close()
    append(b, lines[11:13])  # while stopped
    append(c, lines[13:14])
    again = Run(ledger_url, logs / "*.log", glob=True)
    assert again.poll() == 3
    again.close()

    with Ledger.open(ledger_url) as led:
        cursors = {k for k in (f"tail:reg:{p}" for p in (a, b, c)) if led.get_cursor(k)}
        assert len(cursors) == 3  # one cursor per file
        per_file: dict[str, list[str]] = {}
        for r in led.query(kind="audit_event"):
            per_file.setdefault(r["data"]["src_pos"].split("@")[0], []).append(
                r["data"]["raw_sha256"]
            )
    assert sorted(run.delivered + again.delivered) == sorted(sha(lines[:14]))
    assert per_file[str(a)] == sha(lines[0:3] + lines[7:11])
    assert per_file[str(b)] == sha(lines[3:5] + lines[11:13])
    assert per_file[str(c)] == sha(lines[5:7] + lines[13:14])


def test_glob_limit_and_vanished_files(tmp_path: Path, lines: list[bytes]) -> None:
    from sentinel.audit.cursor import JSONFileCursorStore

    store = JSONFileCursorStore(tmp_path / "cursors.json")
    got: list[str] = []

    def sink(batch: TailBatch) -> None:
        got.extend(r.raw_sha256 for r in batch.records)
        store.commit({batch.cursor_key: batch.cursor_value})

    for i in range(3):
        append(tmp_path / f"f{i}.log", [lines[i]])
    tailer = GlobTailer(
        tmp_path / "f*.log",
        "reg",
        PARSERS["distribution-access"],
        store,
        sink,
        use_watchdog=False,
        max_files=2,
    )
    tailer.poll_once()
    assert tailer.skipped_files == 1 and len(tailer.files) == 2
    (tmp_path / "f0.log").unlink()
    tailer.poll_once()  # f0 read to its end and gone: forgotten, which frees a place for f2
    tailer.poll_once()
    assert tailer.files == [tmp_path / "f1.log", tmp_path / "f2.log"]
    assert sorted(got) == sorted(sha(lines[:3]))
    assert tailer.stats.lines == 3
    tailer.close()


def test_glob_worker_wakes_on_a_new_file(tmp_path: Path, lines: list[bytes]) -> None:
    import threading

    from sentinel.audit.cursor import JSONFileCursorStore

    store = JSONFileCursorStore(tmp_path / "cursors.json")
    got: list[str] = []
    event = threading.Event()

    def sink(batch: TailBatch) -> None:
        got.extend(r.raw_sha256 for r in batch.records)
        store.commit({batch.cursor_key: batch.cursor_value})
        event.set()

    (tmp_path / "logs").mkdir()
    tailer = GlobTailer(
        tmp_path / "logs" / "*.log",
        "reg",
        PARSERS["distribution-access"],
        store,
        sink,
        poll_interval=60,
    )
    tailer.start()
    try:
        append(tmp_path / "logs" / "new.log", lines[:2])
        # the poll interval is 60 s: only the file event can deliver this within the wait
        assert event.wait(20), "the glob tailer did not wake on the new file"
    finally:
        tailer.stop()
        tailer.stop()
    assert got == sha(lines[:2])


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_restart_while_gzip_is_still_compressing(
    tmp_path: Path, lines: list[bytes], ledger_url: str
) -> None:
    """The renamed file and a half-written .gz of it side by side (logrotate's gzip still
    running): the file is finished once; the .gz copy is not read as a further file."""
    log = tmp_path / "access.log"
    append(log, lines[:4])
    run = Run(ledger_url, log)
    run.poll()
    run.close()
    append(log, lines[4:30])
    log.rename(tmp_path / "access.log.1")
    append(log, lines[30:32])
    data = gzip.compress((tmp_path / "access.log.1").read_bytes())
    (tmp_path / "access.log.1.gz").write_bytes(data[: len(data) * 9 // 10])  # newer, incomplete
    again = Run(ledger_url, log)
    again.poll()
    again.close()
    assert again.delivered == sha(lines[4:32])
    assert in_ledger(ledger_url) == sha(lines[:32])
