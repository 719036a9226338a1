"""A real MLflow tracking server for end-to-end tests (``mlflow server`` on 127.0.0.1).

MLflow is an optional test extra (``pip install -e '.[e2e-mlflow]'``); when it is missing the
fixture fails saying how to install it (never skipped). The server runs on a free port with a
SQLite backend and local artifacts, its stdout (the access log) in a file; every process it
starts is stopped by PID, children first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .net import free_port

START_TIMEOUT = 90.0  # seconds; the first start runs the database migrations (~10 s)
STOP_TIMEOUT = 15.0


def _mlflow_binary() -> str:
    path = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(
            "MLflow is not installed in this environment: install the optional test extra "
            "with `.venv/bin/pip install -e '.[e2e-mlflow]'` (make test does it)",
            pytrace=False,
        )
    return path


def _descendants(pid: int) -> list[int]:
    """PIDs of every descendant of ``pid`` (from /proc), deepest first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []

    def walk(p: int) -> None:
        for child in children.get(p, []):
            walk(child)
            out.append(child)

    walk(pid)
    return out


class MlflowServer:
    """``mlflow server`` on 127.0.0.1:port with its stdout (the access log) in a file."""

    def __init__(
        self, workdir: Path, *, app_name: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.app_name = app_name
        self.extra_env = dict(env or {})
        self.binary = _mlflow_binary()
        self.workdir = workdir
        self.port = free_port()
        self.access_log = workdir / "mlflow-access.log"
        self.stderr_log = workdir / "mlflow-stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from cryptography.fernet import Fernet

        (self.workdir / "artifacts").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
            MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
            MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            # no job runner and huey consumers: the registry needs none, and they triple the
            # start and stop time on a loaded 2-core machine
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            TZ="UTC",
        )
        env.update(self.extra_env)
        with self.access_log.open("ab") as out, self.stderr_log.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--backend-store-uri",
                    f"sqlite:///{self.workdir / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(self.workdir / "artifacts"),
                    "--workers",
                    "1",
                    *(["--app-name", self.app_name] if self.app_name else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workdir,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        tail = self.stderr_log.read_text(errors="replace")[-3000:]
        self.stop()
        pytest.fail(f"mlflow server did not come up on {self.url}:\n{tail}", pytrace=False)

    def stop(self) -> None:
        """SIGTERM every descendant (deepest first), then the server; SIGKILL what remains."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pids = _descendants(proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid) and _is_mlflow(pid):  # never a recycled PID of someone else's
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _is_mlflow(pid: int) -> bool:
    try:
        return b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
