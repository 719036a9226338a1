"""Drive skopeo 1.9 (Debian ``skopeo``) against a local plain-HTTP registry, isolated per test.

Every call runs with a private ``HOME``/``XDG_*``, ``registries.conf``
(``CONTAINERS_REGISTRIES_CONF``), policy, ``registries.d`` and auth file under ``workdir``.
skopeo's blob-info cache (containers/image ``pkg/blobinfocache``) lives in
``$XDG_DATA_HOME/containers/cache`` for a normal user but in ``/var/lib/containers/cache`` for
root; as root each call therefore runs in a private mount namespace (``unshare --mount``) with a
per-test directory bind-mounted over that path, so no run sees another's cached blob locations
(which otherwise cause extra HEAD probes).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import HarnessError, require_binary
from .oci import OciLayout

SYSTEM_CACHE = Path("/var/lib/containers/cache")
TIMEOUT = 60.0  # seconds per skopeo call


@dataclass(frozen=True)
class Creds:
    """A registry user and password."""

    user: str
    password: str

    @property
    def arg(self) -> str:
        return f"{self.user}:{self.password}"


ALICE = Creds("alice", "password")


@dataclass(frozen=True)
class Result:
    """One finished skopeo run."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class Skopeo:
    """skopeo with state under ``workdir``; every method raises ``HarnessError`` on failure
    (non-zero exit or timeout), with the command line and skopeo's stderr in the message."""

    def __init__(self, workdir: Path, *, timeout: float = TIMEOUT) -> None:
        self.binary = require_binary("skopeo", "skopeo")
        self.workdir = workdir
        self.timeout = timeout
        self.home = workdir / "home"
        self.cache_dir = workdir / "blob-info-cache"
        self.registries_conf = workdir / "registries.conf"
        self.registries_d = workdir / "registries.d"
        self.policy = workdir / "policy.json"
        self.authfile = workdir / "auth.json"
        self.tmpdir = workdir / "tmp"
        for d in (self.home, self.cache_dir, self.registries_d, self.tmpdir):
            d.mkdir(parents=True, exist_ok=True)
        self.registries_conf.write_text("unqualified-search-registries = []\n")
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.authfile.write_text("{}")
        self.history: list[Result] = []
        self._isolate_root_cache = os.geteuid() == 0
        if self._isolate_root_cache:
            require_binary("unshare", "util-linux")
            SYSTEM_CACHE.mkdir(parents=True, exist_ok=True)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "REGISTRY_"))}
        env.update(
            HOME=str(self.home),
            XDG_RUNTIME_DIR=str(self.home / "run"),
            XDG_CONFIG_HOME=str(self.home / "config"),
            XDG_DATA_HOME=str(self.home / "data"),
            XDG_CACHE_HOME=str(self.home / "cache"),
            CONTAINERS_REGISTRIES_CONF=str(self.registries_conf),
            REGISTRY_AUTH_FILE=str(self.authfile),
            TMPDIR=str(self.tmpdir),
        )
        return env

    def run(self, *args: str, check: bool = True) -> Result:
        """Run ``skopeo --policy … --registries.d … ARGS``; see the class docstring for errors."""
        argv = [
            self.binary,
            "--policy",
            str(self.policy),
            "--registries.d",
            str(self.registries_d),
            "--tmpdir",
            str(self.tmpdir),
            *args,
        ]
        full = argv
        if self._isolate_root_cache:
            full = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                'mount --bind "$1" "$2" && shift 2 && exec "$@"',
                "sh",
                str(self.cache_dir),
                str(SYSTEM_CACHE),
                *argv,
            ]
        try:
            proc = subprocess.run(
                full,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(
                f"skopeo timed out after {self.timeout} s: {' '.join(argv)}\n{exc.stderr!r}"
            ) from exc
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
        self.history.append(result)
        if check and proc.returncode != 0:
            raise HarnessError(
                f"skopeo exited {proc.returncode}: {' '.join(argv)}\n{proc.stderr.strip()}"
            )
        return result

    def push(self, layout: OciLayout, ref: str, creds: Creds = ALICE) -> Result:
        """Copy ``layout`` (``oci:DIR:TAG``) to ``ref`` (``docker://HOST/REPO:TAG``)."""
        return self.run(
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds.arg,
            layout.ref,
            ref,
        )

    def pull(self, ref: str, out_dir: Path, creds: Creds = ALICE, tag: str = "v1") -> Result:
        """Copy ``ref`` into the OCI layout ``out_dir`` under ``tag``."""
        return self.run(
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-creds",
            creds.arg,
            ref,
            f"oci:{out_dir}:{tag}",
        )

    def copy(self, src_ref: str, dst_ref: str, creds: Creds = ALICE) -> Result:
        """Registry-to-registry copy: a retag in one repository, or a cross-repository mount."""
        return self.run(
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-creds",
            creds.arg,
            "--dest-creds",
            creds.arg,
            src_ref,
            dst_ref,
        )

    def delete(self, ref: str, creds: Creds = ALICE) -> Result:
        """Delete the manifest ``ref`` points at (and so every tag on it)."""
        return self.run("delete", "--tls-verify=false", "--creds", creds.arg, ref)

    def inspect(self, ref: str, creds: Creds = ALICE) -> dict[str, object]:
        """``skopeo inspect`` output as a dict."""
        out = self.run("inspect", "--tls-verify=false", "--creds", creds.arg, ref).stdout
        data: dict[str, object] = json.loads(out)
        return data

    def failed_login(self, ref: str, user: str = "alice", password: str = "wrong-password") -> str:
        """Inspect ``ref`` with a wrong password; skopeo's error text. ``HarnessError`` if it
        unexpectedly succeeds."""
        result = self.run(
            "inspect", "--tls-verify=false", "--creds", f"{user}:{password}", ref, check=False
        )
        if result.returncode == 0:
            raise HarnessError(f"login with a wrong password succeeded on {ref}")
        return result.stderr
