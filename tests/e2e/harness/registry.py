"""Run Debian's ``docker-registry`` (CNCF distribution 2.8.2) on 127.0.0.1 for end-to-end tests.

Configuration keys: distribution ``docs/configuration.md`` (v2.8): ``log``, ``storage``, ``http``,
``auth.htpasswd`` (bcrypt entries only), ``notifications``. The access log (combined format) goes to
stdout and the application log to stderr; both are written to files so a tailer can follow them.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import bcrypt
import yaml

from .errors import HarnessError, require_binary
from .net import free_port, http_status, wait_for

DEFAULT_USERS: Mapping[str, str] = {"alice": "password"}
READY_TIMEOUT = 20.0  # seconds
STOP_TIMEOUT = 10.0  # seconds before SIGKILL


@dataclass(frozen=True)
class Notifications:
    """Where the registry POSTs its event envelopes, and the bearer token it sends."""

    url: str
    token: str
    name: str = "sentinel"
    timeout: str = "1s"
    threshold: int = 3
    backoff: str = "1s"


@dataclass
class RegistryProcess:
    """A ``docker-registry serve`` process with its config, storage and log files under ``workdir``.

    Use as a context manager: ``__enter__`` writes the config, starts the server and waits until
    it accepts TCP connections on its port (``ready_probe="tcp"``, the default: leaves no line in
    either log, so the logs hold only what the test did) or until ``GET /v2/`` answers (401 with
    htpasswd; ``ready_probe="http"``, which adds that request to both logs); ``__exit__`` stops
    it by its PID (SIGTERM, then SIGKILL after 10 s). Raises ``HarnessError`` when the binary is
    missing or the server does not come up (the tail of its stderr is in the message).
    """

    workdir: Path
    notifications: Notifications | None = None
    users: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    log_formatter: str = "json"  # json | text | logstash
    log_fields: Mapping[str, str] = field(default_factory=dict)
    realm: str = "sentinel-e2e"
    port: int = 0  # 0: pick a free one
    ready_probe: str = "tcp"  # tcp: connect only, no log line | http: GET /v2/ (logs a 401)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _files: list[IO[bytes]] = field(default_factory=list, init=False, repr=False)

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of a ``docker://`` reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}"

    @property
    def root_dir(self) -> Path:
        """``storage.filesystem.rootdirectory``."""
        return self.workdir / "storage"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yml"

    @property
    def htpasswd_path(self) -> Path:
        return self.workdir / "htpasswd"

    @property
    def access_log(self) -> Path:
        """The registry's stdout: the access log, Apache combined format."""
        return self.workdir / "access.log"

    @property
    def app_log(self) -> Path:
        """The registry's stderr: the application log in ``log_formatter``'s format."""
        return self.workdir / "app.log"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise HarnessError("registry is not running")
        return self._proc.pid

    def ref(self, repo: str, tag: str) -> str:
        """``docker://127.0.0.1:PORT/REPO:TAG``."""
        return f"docker://{self.host}/{repo}:{tag}"

    def config(self) -> dict[str, Any]:
        """The YAML configuration as a dict (written to ``config_path`` on start)."""
        log: dict[str, Any] = {
            "level": "info",
            "formatter": self.log_formatter,
            "accesslog": {"disabled": False},
        }
        if self.log_fields:
            log["fields"] = dict(self.log_fields)
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": log,
            "storage": {
                "filesystem": {"rootdirectory": str(self.root_dir)},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
            "auth": {"htpasswd": {"realm": self.realm, "path": str(self.htpasswd_path)}},
        }
        if self.notifications is not None:
            n = self.notifications
            cfg["notifications"] = {
                "events": {"includereferences": True},
                "endpoints": [
                    {
                        "name": n.name,
                        "url": n.url,
                        "headers": {"Authorization": [f"Bearer {n.token}"]},
                        "timeout": n.timeout,
                        "threshold": n.threshold,
                        "backoff": n.backoff,
                    }
                ],
            }
        return cfg

    def _write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root_dir.mkdir(exist_ok=True)
        lines = [
            f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
            for user, pw in self.users.items()
        ]
        self.htpasswd_path.write_text("".join(lines))
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def start(self) -> RegistryProcess:
        """Start the server and wait for readiness; retries on a port taken in the meantime."""
        binary = require_binary("docker-registry", "docker-registry")
        fixed_port = self.port != 0
        last_err = ""
        for _attempt in range(3):
            if not fixed_port:
                self.port = free_port()
            self._write_files()
            out = self.access_log.open("ab")
            err = self.app_log.open("ab")
            self._files = [out, err]
            self._proc = subprocess.Popen(
                [binary, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workdir,
            )
            proc = self._proc

            def settled(proc: subprocess.Popen[bytes] = proc) -> bool:
                return proc.poll() is not None or self._answers()

            up = wait_for(settled, READY_TIMEOUT)
            if up and proc.poll() is None:
                return self
            last_err = self._tail_app_log()
            self.stop()
            if fixed_port or "address already in use" not in last_err:
                break
        raise HarnessError(f"docker-registry did not come up on {self.host}:\n{last_err}")

    def _answers(self) -> bool:
        if self.ready_probe == "http":
            return http_status(f"{self.url}/v2/") is not None
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def _tail_app_log(self, limit: int = 4000) -> str:
        try:
            return self.app_log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        """Stop the process by its PID (SIGTERM, SIGKILL after 10 s); its exit code. Idempotent."""
        proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=STOP_TIMEOUT)
            code = proc.returncode
        for f in self._files:
            f.close()
        self._files = []
        return code

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> RegistryProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
