"""Hot reload: rename replacement, in-place overwrite, broken databases keep the old one."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.errors import GeoIPError
from sentinel.geo import GeoDatabase, GeoHandle, GeoResult, ReloadResult, current

CITY = "GeoIP2-City-Test.mmdb"
IPINFO = "ipinfo/ipinfo_lite_sample.mmdb"
#: (address, answer in CITY, answer in IPINFO): the two files disagree on both
PROBES = ("81.2.69.142", "1.0.0.1")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _replace_by_rename(src: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _overwrite_in_place(src: Path, dest: Path) -> None:
    ino = dest.stat().st_ino
    with dest.open("r+b") as fh:  # same inode: truncate, then write the new bytes
        fh.truncate(0)
        fh.write(src.read_bytes())
    assert dest.stat().st_ino == ino


def _wait(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def live(tmp_path: Path, corpus: Path) -> Path:
    path = tmp_path / "geo" / "db.mmdb"
    path.parent.mkdir()
    shutil.copyfile(corpus / "geoip" / CITY, path)
    return path


def _answers(corpus: Path) -> dict[str, set[GeoResult]]:
    out: dict[str, set[GeoResult]] = {ip: set() for ip in PROBES}
    for name in (CITY, IPINFO):
        with GeoDatabase.open(corpus / "geoip" / name) as db:
            for ip in PROBES:
                out[ip].add(db.lookup(ip))
    assert all(len(v) == 2 for v in out.values())  # the files really disagree
    return out


@pytest.mark.parametrize("replace", [_replace_by_rename, _overwrite_in_place])
def test_worker_swaps_on_replacement(
    live: Path, corpus: Path, replace: Callable[[Path, Path], None]
) -> None:
    results: list[ReloadResult] = []
    new = corpus / "geoip" / IPINFO
    with GeoHandle.open(live, settle=0.05, poll_interval=0.5, on_reload=results.append) as h:
        assert h.provenance.database_type == "GeoIP2-City"
        h.start()
        replace(new, live)
        _wait(lambda: any(r.swapped for r in results), "the swap")
        assert h.provenance.sha256 == _sha(new)
        assert h.lookup("1.0.0.1").country == "AU"
        status = h.status()
        assert (status.reloads, status.reload_failures, status.last_error) == (1, 0, None)
        assert results[-1].swapped and results[-1].ok
        h.stop()
        h.stop()  # twice is fine


def test_readers_never_crash_during_replacements(live: Path, corpus: Path) -> None:
    answers = _answers(corpus)
    stop = threading.Event()
    seen: list[GeoResult] = []
    errors: list[BaseException] = []

    def reader(handle: GeoHandle) -> None:
        try:
            while not stop.is_set():
                for ip in PROBES:
                    db = handle.current
                    db._cache.clear()  # force real reads from the memory map every time
                    got = db.lookup(ip)
                    assert got in answers[ip], (ip, got)
                    seen.append(got)
        except BaseException as exc:  # the test fails below, with the reason
            errors.append(exc)

    with GeoHandle.open(live, settle=0.02, poll_interval=0.2) as h:
        h.start()
        threads = [threading.Thread(target=reader, args=(h,)) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            for i in range(6):
                src = corpus / "geoip" / (IPINFO if i % 2 == 0 else CITY)
                (_overwrite_in_place if i % 3 else _replace_by_rename)(src, live)
                _wait(lambda src=src: h.provenance.sha256 == _sha(src), f"swap {i}")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors
        assert h.status().reloads == 6
        assert len({r.country for r in seen}) >= 2  # both databases were read


BROKEN = [
    ("GeoIP2-City-Test-Invalid-Node-Count.mmdb", "not a valid MaxMind DB"),
    ("GeoIP2-City-Test-Broken-Double-Format.mmdb", "corrupt database"),
    ("MaxMind-DB-test-broken-pointers-24.mmdb", "corrupt database"),
    ("MaxMind-DB-test-broken-search-tree-24.mmdb", "corrupt database"),
    ("GeoLite2-ASN-Test.mmdb", "not a location database"),
    ("GeoIP2-Anonymous-IP-Test.mmdb", "not a location database"),
]


@pytest.mark.parametrize(("name", "problem"), BROKEN)
def test_broken_file_keeps_the_old_database(
    live: Path, corpus: Path, name: str, problem: str
) -> None:
    with GeoHandle.open(live) as h:
        before = h.provenance
        _replace_by_rename(corpus / "geoip" / name, live)
        result = h.check()
        assert result is not None and not result.ok and not result.swapped
        assert problem in (result.error or "")
        assert h.provenance == before
        assert h.lookup("81.2.69.142").country == "GB"
        assert h.check() is None  # the same refused version is not retried (or re-counted)
        status = h.status()
        assert status.reload_failures == 1 and status.last_error == result.error
        # a good file afterwards is taken, and clears the error
        good = corpus / "geoip" / "GeoLite2-Country-Test.mmdb"
        _replace_by_rename(good, live)
        ok = h.check()
        assert ok is not None and ok.swapped and h.provenance.sha256 == _sha(good)
        assert h.status().last_error is None


@pytest.mark.parametrize("content", [b"", b"not a database" * 1000])
def test_junk_and_empty_files_are_refused(live: Path, content: bytes) -> None:
    with GeoHandle.open(live) as h:
        live.write_bytes(content)  # in place
        result = h.check()
        assert result is not None and not result.ok
        assert h.lookup("81.2.69.142").country == "GB"


def test_worker_reports_a_refused_file(live: Path, corpus: Path) -> None:
    results: list[ReloadResult] = []
    with GeoHandle.open(live, settle=0.05, poll_interval=0.5, on_reload=results.append) as h:
        h.start()
        _overwrite_in_place(corpus / "geoip" / "GeoLite2-ASN-Test.mmdb", live)
        _wait(lambda: bool(results), "the refusal")  # the hook runs after the counters
        assert h.status().reload_failures == 1
        assert results and not results[-1].ok and "GeoLite2-ASN" in (results[-1].error or "")
        assert h.provenance.database_type == "GeoIP2-City"


def test_missing_file_and_unchanged_bytes(live: Path, corpus: Path) -> None:
    with GeoHandle.open(live) as h:
        held = h.current
        live.unlink()
        assert h.check() is None  # nothing to load: keep serving
        shutil.copyfile(corpus / "geoip" / CITY, live)  # same bytes, new inode
        result = h.check()
        assert result is not None and result.ok and not result.swapped
        assert h.current is held and h.status().reloads == 0


def test_swapped_out_database_stays_usable(live: Path, corpus: Path) -> None:
    with GeoHandle.open(live) as h:
        old = current(h)
        assert old is not None
        _replace_by_rename(corpus / "geoip" / IPINFO, live)
        assert (h.check() or pytest.fail("no reload")).swapped
        assert old.lookup("81.2.69.142").country == "GB"  # a reader that held it finishes
        assert h.lookup("81.2.69.142").country is None


def test_first_file_must_be_valid(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(GeoIPError, match="not a location database"):
        GeoHandle.open(corpus / "geoip" / "GeoLite2-ASN-Test.mmdb")
    with pytest.raises(GeoIPError, match="cannot read"):
        GeoHandle.open(tmp_path / "missing.mmdb")


def test_future_build_time_is_refused(corpus: Path) -> None:
    with GeoDatabase.open(corpus / "geoip" / CITY) as db:
        db.validate(now=db.provenance.build_epoch)  # built "now": fine
        with pytest.raises(GeoIPError, match="implausible build_epoch"):
            db.validate(now=db.provenance.build_epoch - 2 * 86_400)


SCRIPT = """
import sys
from pathlib import Path
from sentinel.geo import GeoDatabase
path, other, snapshot = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
db = GeoDatabase.open(path, snapshot=snapshot)
before = db._reader.get("81.2.69.142")
with path.open("r+b") as fh:
    fh.truncate(0)  # what `cp other path` does first: the mapped pages are gone
    print(db._reader.get("81.2.69.142") == before, flush=True)
    fh.write(other.read_bytes())
    fh.flush()
print(db._reader.get("81.2.69.142") == before, flush=True)
"""


def test_in_place_overwrite_cannot_crash_a_snapshot_reader(live: Path, corpus: Path) -> None:
    other = corpus / "geoip" / IPINFO

    def run(snapshot: bool) -> subprocess.CompletedProcess[str]:
        shutil.copyfile(corpus / "geoip" / CITY, live)
        argv = [sys.executable, "-c", SCRIPT, str(live), str(other), "1" if snapshot else "0"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    safe = run(snapshot=True)
    assert (safe.returncode, safe.stdout.split()) == (0, ["True", "True"]), safe.stderr
    # the hazard is real: mapping the file itself dies with SIGBUS on the same overwrite
    direct = run(snapshot=False)
    assert direct.returncode == -signal.SIGBUS, (direct.returncode, direct.stdout)


def _snapshot_maps() -> int:
    """Snapshot files mapped by this process (distinct inodes: the reader and the search-tree
    walk of ``lookup_many`` map the same file)."""
    with open("/proc/self/maps") as fh:
        return len({line.split()[4] for line in fh if "sentinel-geoip-" in line})


def test_swapped_out_snapshots_are_released(live: Path, corpus: Path, tmp_path: Path) -> None:
    import gc

    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    base = _snapshot_maps()
    with GeoHandle.open(live, snapshot_dir=snaps) as h:
        assert list(snaps.iterdir()) == []  # unlinked at once: only the mapping holds it
        assert _snapshot_maps() == base + 1
        for name in ("GeoLite2-City-Test.mmdb", CITY, IPINFO, CITY):
            _replace_by_rename(corpus / "geoip" / name, live)
            assert (h.check() or pytest.fail("no reload")).swapped
            gc.collect()
            assert _snapshot_maps() == base + 1  # the old map went with its last reference
    gc.collect()
    assert _snapshot_maps() == base
    assert list(snaps.iterdir()) == []


def test_forced_reload_and_a_failing_hook(live: Path, corpus: Path) -> None:
    def hook(result: ReloadResult) -> None:
        raise RuntimeError("metrics backend down")

    with GeoHandle.open(live, on_reload=hook) as h:
        _replace_by_rename(corpus / "geoip" / "GeoLite2-ASN-Test.mmdb", live)
        first = h.check()
        assert first is not None and not first.ok  # the hook's exception did not escape
        assert h.check() is None
        again = h.reload()  # an explicit reload retries the refused version
        assert again is not None and not again.ok
        assert h.status().reload_failures == 2
