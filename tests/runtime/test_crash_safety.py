"""Issue 3 item 7: SIGKILL the real ``sentinel run`` daemon at random points; nothing is lost
or repeated.

Each test lays out a working directory with ``init_directory`` and a patched
``DEFAULT_CONFIG_TOML``, then starts ``python -m sentinel --config … run`` as a subprocess,
kills it with SIGKILL at a seeded random point, and restarts it, ``TRIALS`` times, while input
keeps arriving:

* tailer: a writer thread appends distribution access-log lines (a unique tag in each request
  path; some lines written in two pieces, so the daemon also sees partial lines) to the file
  the daemon tails. At the end the daemon catches up, is stopped with SIGTERM, and every line
  written is in the ledger exactly once, with its own ``raw_sha256`` and ``src_pos`` (byte
  offset); the tailer's committed cursor is at the end of the file.
* webhook: a sender thread POSTs notification envelopes (built from the corpus'
  ``notification-push-manifest.json`` with unique event ids) serially, retrying one until it
  gets a 2xx as the registry does, and sometimes re-sending an acknowledged one (registries
  deliver at least once). After every kill, before the restart, every event whose delivery got
  a 2xx must already be in the ledger; at the end every event is there exactly once.

Most kills wait until the daemon is seen making progress (ledger growing / a 2xx), then a
random 0-``KILL_JITTER_S`` s more, so they land mid-ingest; every ``BLIND_EVERY``-th kill
comes at a blind random time after the spawn, which also hits start-up and recovery. The chain
verifies (``valid`` / ``valid-unpinned``) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sentinel.audit.cursor import Cursor, first_line_fingerprint
from sentinel.config import DEFAULT_CONFIG_TOML
from sentinel.ledger import Ledger
from sentinel.runtime.setup import init_directory

REPO = Path(__file__).resolve().parents[2]
ENVELOPE = "registry-logs/distribution-live/notification-push-manifest.json"
CONTENT_TYPE = "application/vnd.docker.distribution.events.v1+json"
TAIL_TRIALS = 16
WEBHOOK_TRIALS = 10
BLIND_EVERY = 4
KILL_JITTER_S = 0.3
#: a kill is never later than this after the spawn (the daemon starts in about a second)
MAX_LIFE_S = 6.0
CATCH_UP_S = 120.0
#: lines the writer adds per tailer trial (40 per write, a few ms apart)
LINES_PER_TRIAL = 2000
CHUNK = 40
#: seconds without ledger growth after which catching up is taken as finished
STALL_S = 15.0


# -- the daemon -------------------------------------------------------------------------------


def _patch(text: str, old: str, new: str) -> str:
    assert old in text, f"DEFAULT_CONFIG_TOML no longer contains {old!r}"
    return text.replace(old, new, 1)


def _workdir(
    tmp_path: Path, ledger_url: str, *, tail: Path | None = None, webhook_port: int | None = None
) -> tuple[Path, str]:
    """``init_directory`` with the test's ledger, sources and no metrics; (config, token)."""
    text = _patch(DEFAULT_CONFIG_TOML, 'url = "sqlite:///state/ledger.db"', f'url = "{ledger_url}"')
    text = _patch(text, "poll_interval = 1.0", "poll_interval = 0.1")
    # outside the directory that holds the SQLite file (`sentinel run` refuses it inside)
    outside = tmp_path.parent / f"{tmp_path.name}-checkpoints"
    text = _patch(text, 'checkpoint_dir = "checkpoints"', f'checkpoint_dir = "{outside}"')
    text = _patch(text, 'enabled = true\nlisten = "127.0.0.1:9464"', "enabled = false")
    if tail is not None:
        text = _patch(
            text,
            '# [[audit.files]]\n# id = "registry"\n# format = "distribution-json"\n'
            '# path = "/var/log/docker-registry/app.log"',
            f'[[audit.files]]\nid = "registry"\nformat = "distribution-access"\npath = "{tail}"',
        )
    if webhook_port is not None:
        text = _patch(
            text,
            'enabled = false\nlisten = "127.0.0.1:9465"',
            f'enabled = true\nlisten = "127.0.0.1:{webhook_port}"',
        )
    work = tmp_path / "sentinel"
    result = init_directory(work, config_text=text)
    return result.config, result.webhook_token.read_text().strip()


class Daemon:
    """``sentinel run`` as a child process; output appended to ``daemon.log``."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.parent / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sentinel", "--config", str(self.config), "run"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.config.parent,
            )
        self.spawned_at = time.monotonic()

    def kill(self) -> None:
        proc = self.proc
        assert proc is not None
        if proc.poll() is not None:
            pytest.fail(f"daemon exited by itself with {proc.returncode}: {self.tail_log()}")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        self.proc = None

    def terminate(self) -> None:
        proc = self.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(60)
        self.proc = None
        assert code == 0, f"daemon exit code {code} on SIGTERM: {self.tail_log()}"

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def tail_log(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_caught_up(size: Callable[[], int], target: int) -> None:
    """Until the ledger holds ``target`` records, or stops growing (then the asserts explain)."""
    deadline = time.monotonic() + CATCH_UP_S
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = size()
        if now >= target:
            return
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > STALL_S:
            return
        time.sleep(0.05)


def _kill_cycles(
    daemon: Daemon, trials: int, rng: random.Random, progress: Callable[[], int]
) -> Iterator[int]:
    """Start, kill at a random point, yield the trial number while the daemon is down."""
    for trial in range(trials):
        before = progress()
        daemon.start()
        if trial % BLIND_EVERY == BLIND_EVERY - 1:
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            deadline = daemon.spawned_at + MAX_LIFE_S
            while progress() == before and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, KILL_JITTER_S))
        daemon.kill()
        yield trial


def _ledger_audit(url: str) -> list[dict[str, Any]]:
    with Ledger.open(url) as led:
        return [e.record()["data"] for e in led.iter_entries(kind="audit_event")]


# -- tailer -----------------------------------------------------------------------------------


class LogWriter(threading.Thread):
    """Appends unique access-log lines to ``path``, some in two pieces, up to a quota.

    ``allow(n)`` lets it write ``n`` more lines (paced, ``CHUNK`` at a time), so the amount of
    input does not depend on how fast a loaded machine runs the trials.
    """

    def __init__(self, path: Path, seed: int) -> None:
        super().__init__(name="log-writer")
        self.path = path
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.cond = threading.Condition()
        self.allowed = 0
        self.written = 0
        self.error: BaseException | None = None

    def allow(self, n: int) -> None:
        with self.cond:
            self.allowed += n
            self.cond.notify()

    def drained(self) -> bool:
        with self.cond:
            return self.written >= self.allowed

    def line(self, n: int) -> bytes:
        method, status = self.rng.choice(
            [("GET", 200), ("GET", 200), ("HEAD", 200), ("PUT", 201), ("GET", 401)]
        )
        return (
            f"127.0.0.{1 + n % 200} - - [29/Nov/2026:19:{n // 60 % 60:02d}:{n % 60:02d} +0000] "
            f'"{method} /v2/models/crash-{n % 5}/manifests/id-{n:07d} HTTP/1.1" {status} 481 '
            f'"" "skopeo/1.9.3"\n'
        ).encode()

    def run(self) -> None:
        try:
            with self.path.open("ab", buffering=0) as fh:
                while not self.stop_event.is_set():
                    with self.cond:
                        if self.written >= self.allowed:
                            self.cond.wait(0.05)
                            continue
                    chunk = b"".join(self.line(self.written + i) for i in range(CHUNK))
                    if self.rng.random() < 0.3:  # a partial line reaches the disk first
                        cut = len(chunk) - self.rng.randint(1, 60)
                        fh.write(chunk[:cut])
                        time.sleep(0.005)
                        fh.write(chunk[cut:])
                    else:
                        fh.write(chunk)
                    with self.cond:
                        self.written += CHUNK
                    time.sleep(self.rng.uniform(0.005, 0.03))
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_tailer_survives_sigkill(tmp_path: Path, ledger_url: str) -> None:
    log = tmp_path / "access.log"
    log.touch()
    config, _ = _workdir(tmp_path, ledger_url, tail=log)
    daemon = Daemon(config)
    rng = random.Random(20261129)
    writer = LogWriter(log, seed=7)

    watcher = Ledger.open(ledger_url)  # creates the schema; reads the head while we wait
    progress = watcher.size

    writer.start()
    try:
        kills = 0
        writer.allow(LINES_PER_TRIAL)
        for _trial in _kill_cycles(daemon, TAIL_TRIALS, rng, progress):
            kills += 1
            writer.allow(LINES_PER_TRIAL)
        while not writer.drained() and writer.is_alive():
            time.sleep(0.05)
        writer.stop_event.set()
        writer.join(10)
        assert writer.error is None, writer.error
        assert kills == TAIL_TRIALS
        written = writer.written
        daemon.start()
        _wait_caught_up(progress, written)
        daemon.terminate()
    finally:
        writer.stop_event.set()
        writer.join(10)
        daemon.cleanup()
        watcher.close()

    data = log.read_bytes()
    st = log.stat()
    fp = first_line_fingerprint(data.split(b"\n", 1)[0])
    file_id = Cursor(st.st_dev, st.st_ino, "", 0, 0).file_id(str(log), fp)
    expected: dict[str, tuple[str, str]] = {}  # tag → (raw_sha256, src_pos)
    offset = 0
    for raw in data.splitlines(keepends=True):
        tag = raw.split(b"/manifests/", 1)[1].split(b" ", 1)[0].decode()
        expected[tag] = (hashlib.sha256(raw[:-1]).hexdigest(), f"{file_id}:{offset}")
        offset += len(raw)
    assert len(expected) == written

    events = _ledger_audit(ledger_url)
    tags = Counter(e["reference"] for e in events)
    repeated = {t: n for t, n in tags.items() if n > 1}
    assert not repeated, f"lines recorded more than once: {sorted(repeated)[:10]}"
    missing, extra = set(expected) - set(tags), set(tags) - set(expected)
    assert not missing and not extra, f"missing {sorted(missing)[:10]}, extra {sorted(extra)[:10]}"
    assert len(events) == written
    got = {e["reference"]: (e["raw_sha256"], e["src_pos"]) for e in events}
    assert got == expected
    with Ledger.open(ledger_url) as led:
        kinds = led.count_by_kind()
        # nothing unparsed; the shipped audit rules may add findings (the 401 lines are
        # failed logins) and each daemon run a sensor_health summary: records too
        assert kinds.pop("audit_event") == written
        assert set(kinds) <= {"audit_finding", "sensor_health"}
        result = led.verify()
        assert result.ok, result
        assert result.records_checked == written + sum(kinds.values())
        cursor = Cursor.loads(led.get_cursor(f"tail:registry:{log}") or "")
    assert cursor is not None and cursor.offset == len(data)


# -- webhook ----------------------------------------------------------------------------------


class Sender(threading.Thread):
    """POSTs envelopes one at a time, each until it gets a 2xx (the registry's behaviour)."""

    def __init__(self, url: str, token: str, template: dict[str, Any], seed: int) -> None:
        super().__init__(name="webhook-sender")
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPE}
        self.template = template
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.abort = threading.Event()
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self.acks = 0
        self.failures = 0
        self.error: BaseException | None = None
        self.session = requests.Session()

    def envelope(self, first: int, count: int) -> tuple[bytes, list[str]]:
        events = []
        for n in range(first, first + count):
            ev = copy.deepcopy(self.template)
            ev["id"] = f"crash-evt-{n:07d}"
            ev["timestamp"] = f"2026-11-29T19:{n // 60 % 60:02d}:{n % 60:02d}.163524777Z"
            ev["target"]["tag"] = f"t{n}"
            ev["request"]["id"] = f"crash-req-{n:07d}"
            events.append(ev)
        return json.dumps({"events": events}).encode(), [e["id"] for e in events]

    def post(self, body: bytes, ids: list[str]) -> None:
        """Deliver until a 2xx (or the test stops the sender)."""
        with self.lock:
            self.sent.update(ids)
        while True:
            try:
                resp = self.session.post(self.url, data=body, headers=self.headers, timeout=10)
                ok = 200 <= resp.status_code < 300
                if resp.status_code not in (200, 503):
                    raise AssertionError(f"unexpected HTTP {resp.status_code}: {resp.text!r}")
            except requests.RequestException:  # refused, reset, cut mid-response: no 2xx
                ok = False
            if ok:
                with self.lock:
                    self.acked.update(ids)
                    self.acks += 1
                return
            self.failures += 1
            if self.abort.is_set():
                return
            time.sleep(0.02)

    def run(self) -> None:
        n = 0
        done: list[tuple[bytes, list[str]]] = []
        try:
            while not self.stop_event.is_set():
                if done and self.rng.random() < 0.1:  # at-least-once: a redelivery
                    self.post(*self.rng.choice(done))
                    continue
                count = self.rng.randint(1, 3)
                item = self.envelope(n, count)
                n += count
                self.post(*item)
                done.append(item)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.session.close()


def test_webhook_acknowledged_deliveries_survive_sigkill(
    tmp_path: Path, ledger_url: str, corpus: Path
) -> None:
    port = _free_port()
    config, token = _workdir(tmp_path, ledger_url, webhook_port=port)
    template = json.loads((corpus / ENVELOPE).read_text())["events"][0]
    daemon = Daemon(config)
    rng = random.Random(29112026)
    sender = Sender(f"http://127.0.0.1:{port}/notifications", token, template, seed=11)

    def progress() -> int:
        with sender.lock:
            return sender.acks

    def stored_ids() -> Counter[str]:
        return Counter(str(e["event_id"]) for e in _ledger_audit(ledger_url))

    sender.start()
    try:
        for _trial in _kill_cycles(daemon, WEBHOOK_TRIALS, rng, progress):
            with sender.lock:
                acked = set(sender.acked)
            missing = acked - set(stored_ids())
            assert not missing, f"acknowledged but not durable: {sorted(missing)[:10]}"
        daemon.start()
        time.sleep(1.0)  # more deliveries on a live daemon
        sender.stop_event.set()  # the sender finishes the delivery in flight (until 2xx)
        sender.join(CATCH_UP_S)
        assert not sender.is_alive()
        assert sender.error is None, sender.error
        daemon.terminate()
    finally:
        sender.stop_event.set()
        sender.abort.set()
        daemon.cleanup()
        sender.join(30)

    assert sender.failures > 0  # the kills did interrupt deliveries
    assert sender.acked == sender.sent
    stored = stored_ids()
    repeated = {k: n for k, n in stored.items() if n > 1}
    assert not repeated, f"events recorded more than once: {sorted(repeated)[:10]}"
    assert set(stored) == sender.acked
    with Ledger.open(ledger_url) as led:
        kinds = led.count_by_kind()
        # the last, cleanly stopped run adds a sensor_health summary of the webhook source
        assert kinds.pop("audit_event") == len(sender.acked)
        assert set(kinds) <= {"sensor_health"}
        result = led.verify()
        assert result.ok, result
