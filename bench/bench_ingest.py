"""Audit-log ingest throughput: ``sentinel audit ingest`` into SQLite and PostgreSQL, beside
rsyslog's imfile → omfile drain of the same file, plus a cProfile of the ingest path.

Usage::

    .venv/bin/python bench/bench_ingest.py [-n 1000000] [--file LOG] [--pg ADMIN_URL]
        [--skip-pg] [--skip-rsyslog] [--profile-lines 100000] [--keep]
        [--verify-sizes 1000000,10000000] [--pg-verify-sizes 1000000] [--ledger-dir DIR]

The whole issue-3 figure set in one run (ingest both backends, rsyslog, verify of 1 M and
10 M records)::

    .venv/bin/python bench/bench_ingest.py --file /tmp/bench-1m.log \
        --verify-sizes 1000000,10000000 --pg-verify-sizes 1000000 --ledger-dir /tmp/bench-ledgers

Needs rsyslog for the side-by-side figure (``apt-get install rsyslog``; the daemon is run in
the foreground with a private configuration, it does not touch the system's syslog).

Steps, each in its own process so that peak RSS (``wait4`` ``ru_maxrss``) is that step's own:

1. the input: ``--file`` if it exists, else ``bench/gen_registry_log.py`` writes ``-n`` lines
   of CNCF distribution 2.8.2 JSON app log (seed 1) into a temporary directory;
2. ``sentinel audit ingest --format distribution-json --ledger sqlite:///…`` (a fresh file);
3. the same into a fresh PostgreSQL database created through ADMIN_URL (default
   ``$SENTINEL_TEST_PG`` or ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), dropped at
   the end;
4. ``rsyslogd -n -f CONF -i PIDFILE`` with only imfile (``freshStartTail="off"``, the whole
   file from the start) and omfile writing each line unchanged (``%rawmsg%``) to a temporary
   file; timed from the spawn until the output holds every line, then stopped by its PID;
5. cProfile of the same ingest (SQLite) over the first ``--profile-lines`` lines: the top
   functions by own time and by cumulative time;
6. with ``--verify-sizes``/``--pg-verify-sizes``: ``bench_ledger.big_verify`` per size
   (a ledger bulk-built to that size, one checkpoint, ``Ledger.verify``: records/s by wall
   and by CPU second, peak RSS); ``--ledger-dir`` keeps the SQLite ledgers for the next run.

Prints a table (tool, lines, events, wall seconds, lines/s, events/s, CPU seconds, lines per
CPU second, peak RSS) and the profile. On a shared machine the wall figures include waiting
for other processes; CPU seconds (user + system, ``wait4``) do not.
Asserts nothing about timing. "events" are the ledger records appended: not every log line is
an audit event (``authorized request`` lines, for example, record no access on their own).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PG_ADMIN = os.environ.get("SENTINEL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RSYSLOG_TIMEOUT_S = 600.0


@dataclass
class Row:
    tool: str
    lines: int
    events: int | None
    seconds: float
    peak_rss_bytes: int
    #: user + system CPU seconds of the process (the wall time also counts waiting for I/O
    #: and, on a shared machine, for other processes)
    cpu_seconds: float


def spawn_wait4(argv: list[str]) -> tuple[str, str, int, float, int, float]:
    """Run ``argv`` to completion.

    Returns (stdout, stderr, exit code, wall seconds, peak RSS bytes, CPU seconds).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            proc.returncode,
            wall,
            usage.ru_maxrss * 1024,
            usage.ru_utime + usage.ru_stime,
        )


def ingest(label: str, url: str, log: Path, lines: int) -> Row:
    argv = [
        sys.executable,
        "-m",
        "sentinel",
        "audit",
        "ingest",
        "--format",
        "distribution-json",
        "--ledger",
        url,
        str(log),
    ]
    stdout, stderr, code, wall, rss, cpu = spawn_wait4(argv)
    if code not in (0, 1):
        raise SystemExit(f"{label}: sentinel audit ingest exited {code}: {stderr.strip()}")
    m = re.search(r"appended (\d+) record", stdout)
    events = int(m[1]) if m else None
    print(f"  {label}: {stdout.strip()} {stderr.strip()}".rstrip(), flush=True)
    return Row(label, lines, events, wall, rss, cpu)


RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="64k")
module(load="imfile" mode="inotify")
template(name="raw" type="string" string="%rawmsg%\\n")
input(type="imfile" file="{log}" tag="registry" freshStartTail="off" readMode="0"
      ruleset="drain")
ruleset(name="drain") {{
  action(type="omfile" file="{out}" template="raw")
}}
"""


def rsyslog_drain(log: Path, lines: int, tmp: Path) -> Row | None:
    rsyslogd = shutil.which("rsyslogd") or (
        "/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None
    )
    if rsyslogd is None:
        print("  rsyslog: not installed (apt-get install rsyslog); skipped", flush=True)
        return None
    work = tmp / "rsyslog"
    work.mkdir()
    out = work / "drain.out"
    conf = work / "rsyslog.conf"
    pidfile = work / "rsyslogd.pid"
    conf.write_text(RSYSLOG_CONF.format(work=work, log=log, out=out))
    target = log.stat().st_size
    start = time.perf_counter()
    proc = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(conf), "-i", str(pidfile)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    done = None
    try:
        deadline = start + RSYSLOG_TIMEOUT_S
        while time.perf_counter() < deadline:
            if out.exists() and out.stat().st_size >= target:
                done = time.perf_counter() - start
                break
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                print(f"  rsyslog exited early ({proc.returncode}): {err.strip()}")
                return None
            time.sleep(0.01)
    finally:
        usage = None
        if proc.poll() is None and proc.pid > 0:
            os.kill(proc.pid, signal.SIGTERM)
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = 0
    if done is None:
        print(f"  rsyslog: output incomplete after {RSYSLOG_TIMEOUT_S:.0f} s")
        return None
    with out.open("rb") as fh:
        got = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 22), b""))
    print(f"  rsyslog: {got} lines written to its output file", flush=True)
    rss = usage.ru_maxrss * 1024 if usage else 0
    cpu = usage.ru_utime + usage.ru_stime if usage else 0.0
    return Row("rsyslog imfile→omfile", got, None, done, rss, cpu)


def profile(log: Path, lines: int, tmp: Path) -> str:
    """cProfile of ``sentinel audit ingest`` (SQLite) over the first ``lines`` lines."""
    head = tmp / "profile-input.log"
    with log.open("rb") as src, head.open("wb") as dst:
        for i, line in enumerate(src):
            if i >= lines:
                break
            dst.write(line)
    from sentinel.cli.main import cli

    url = f"sqlite:///{tmp / 'profile.db'}"
    prof = cProfile.Profile()
    prof.enable()
    with contextlib.suppress(SystemExit):
        cli.main(
            ["audit", "ingest", "--format", "distribution-json", "--ledger", url, str(head)],
            prog_name="sentinel",
            standalone_mode=False,
        )
    prof.disable()
    buf = io.StringIO()
    by_area: dict[str, float] = {}
    raw = pstats.Stats(prof)
    total = 0.0
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in raw.stats.items():  # type: ignore[attr-defined]
        area = area_of(filename, func)
        by_area[area] = by_area.get(area, 0.0) + tt
        total += tt
    buf.write("own time by area:\n")
    for area, tt in sorted(by_area.items(), key=lambda kv: -kv[1]):
        buf.write(f"  {area:<44} {tt:7.2f} s  {100 * tt / total:5.1f} %\n")
    buf.write("\n")
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(r"/sentinel/", 20)
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(20)
    return buf.getvalue()


AREAS = (
    ("/sentinel/ledger/", "sentinel.ledger (canonical JSON, hashes, Merkle)"),
    ("/sentinel/audit/parsers/", "sentinel.audit.parsers"),
    ("/sentinel/timefmt", "sentinel.timefmt"),
    ("/sentinel/", "sentinel (other)"),
    ("/sqlalchemy/", "SQLAlchemy"),
    ("/json/", "json (stdlib)"),
    ("/ipaddress", "ipaddress (stdlib)"),
    ("/urllib/", "urllib (stdlib)"),
)


def area_of(filename: str, func: str) -> str:
    for needle, name in AREAS:
        if needle in filename:
            return name
    if filename == "~":  # C functions: name them by what they are
        for needle, name in (
            ("sqlite3", "sqlite3 driver (C)"),
            ("psycopg", "psycopg (C)"),
            ("sha256", "hashlib (C)"),
            ("json", "json (C)"),
            ("strftime", "datetime (C)"),
            ("re.Pattern", "re (C)"),
        ):
            if needle in func:
                return name
        return "other builtins (C)"
    return "other Python"


def human_bytes(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def table(rows: list[Row]) -> str:
    cols = ("lines", "events", "wall s", "lines/s", "events/s", "CPU s", "lines/CPUs", "peak RSS")
    head = f"{'tool':<26} " + " ".join(f"{c:>10}" for c in cols)
    out = [head, "-" * len(head)]
    for r in rows:
        ev = f"{r.events:>10}" if r.events is not None else f"{'-':>10}"
        evs = f"{r.events / r.seconds:>10.0f}" if r.events is not None else f"{'-':>10}"
        per_cpu = f"{r.lines / r.cpu_seconds:>10.0f}" if r.cpu_seconds else f"{'-':>10}"
        out.append(
            f"{r.tool:<26} {r.lines:>10} {ev} {r.seconds:>10.2f} {r.lines / r.seconds:>10.0f} "
            f"{evs} {r.cpu_seconds:>10.2f} {per_cpu} {human_bytes(r.peak_rss_bytes):>10}"
        )
    return "\n".join(out)


def verify_big(args: argparse.Namespace, tmp: Path) -> None:
    """Step 6: ``bench_ledger.big_verify`` for each requested size and backend."""
    sizes = [int(x) for x in args.verify_sizes.split(",") if x.strip()]
    pg_sizes = [int(x) for x in args.pg_verify_sizes.split(",") if x.strip()]
    if not sizes and not pg_sizes:
        return
    sys.path.insert(0, str(HERE))
    import bench_ledger

    print("\nverification (bulk-built ledgers, one checkpoint each)")
    where = args.ledger_dir or tmp
    where.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        bench_ledger.big_verify("sqlite", f"sqlite:///{where}/ledger-{n}.db", n, None)
    for n in pg_sizes:
        name = f"sentinel_bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(args.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = args.pg.rsplit("/", 1)[0] + f"/{name}"
            bench_ledger.big_verify("postgresql", url, n, None)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--lines", type=int, default=1_000_000)
    ap.add_argument("--file", type=Path, help="input log (generated here if it does not exist)")
    ap.add_argument("--pg", default=PG_ADMIN, help="PostgreSQL admin URL")
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-rsyslog", action="store_true")
    ap.add_argument("--profile-lines", type=int, default=100_000, help="0: no profile")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--verify-sizes", default="", help="SQLite verify sizes, e.g. 1000000,10000000")
    ap.add_argument("--pg-verify-sizes", default="", help="PostgreSQL verify sizes")
    ap.add_argument("--ledger-dir", type=Path, help="keep/reuse the SQLite verify ledgers here")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sentinel-bench-ingest-"))
    rows: list[Row] = []
    try:
        log = args.file or tmp / "registry-app.json.log"
        if not log.exists():
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    str(HERE / "gen_registry_log.py"),
                    str(log),
                    "-n",
                    str(args.lines),
                ],
                check=True,
            )
            print(f"generated in {time.perf_counter() - t0:.1f} s", flush=True)
        with log.open("rb") as fh:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 22), b""))
        print(f"input: {log} ({lines} lines, {log.stat().st_size / 1e6:.0f} MB)", flush=True)

        rows.append(ingest("sentinel ingest SQLite", f"sqlite:///{tmp / 'ledger.db'}", log, lines))
        if not args.skip_pg:
            name = f"sentinel_bench_{uuid.uuid4().hex[:10]}"
            admin = sa.create_engine(args.pg, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                url = args.pg.rsplit("/", 1)[0] + f"/{name}"
                rows.append(ingest("sentinel ingest PostgreSQL", url, log, lines))
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
        if not args.skip_rsyslog:
            row = rsyslog_drain(log, lines, tmp)
            if row is not None:
                rows.append(row)
        print()
        print(table(rows))
        if args.profile_lines:
            print(f"\ncProfile: sentinel audit ingest (SQLite), first {args.profile_lines} lines")
            print(profile(log, args.profile_lines, tmp))
        verify_big(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
