"""Hatch build hook: compile the optional ledger-verify accelerator ``sentinel/_ledgerscan.c``.

The extension (see ``sentinel.ledgerscan``) links the system SQLite and OpenSSL
(``-lsqlite3 -lcrypto``) and is compiled with the interpreter's own compiler and flags
(``sysconfig``: ``CC``, ``CFLAGS``, ``CCSHARED``, ``EXT_SUFFIX``). A wheel gets it at
``sentinel/<name><EXT_SUFFIX>`` and a platform tag; an editable install gets it beside the
sources (gitignored), replacing any older build.

It is optional: without a C compiler or the headers (Debian: ``gcc libsqlite3-dev
libssl-dev``), the hook warns and the package is pure Python; ``Ledger.verify`` then runs the
reference implementation only. ``SENTINEL_REQUIRE_ACCELERATOR=1`` turns that warning into a
build error (``make test`` sets it, so CI cannot silently lose the accelerator).

``python hatch_build.py`` compiles it in place, beside the sources, without hatchling: for a
git worktree that runs on a venv installed from another checkout (``PYTHONPATH=$PWD``).

Hatchling build-hook interface: https://hatch.pypa.io/latest/plugins/build-hook/reference/
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ModuleNotFoundError:  # `python hatch_build.py` outside a build environment
    if __name__ != "__main__":
        raise
    BuildHookInterface = object

SOURCE = Path("sentinel") / "_ledgerscan.c"
REQUIRE_ENV = "SENTINEL_REQUIRE_ACCELERATOR"


def compile_extension(source: Path, target: Path) -> str | None:
    """Compile ``source`` into the shared object ``target``; ``None`` on success, else why not."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not cc or shutil.which(cc[0]) is None:
        return f"no C compiler ({' '.join(cc) or 'CC unset'})"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        return f"no Python.h in {include}"
    cmd = [
        *cc,
        *shlex.split(sysconfig.get_config_var("CFLAGS") or ""),
        *shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC"),
        f"-I{include}",
        "-shared",
        str(source),
        "-o",
        str(target),
        "-lsqlite3",
        "-lcrypto",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        return f"`{' '.join(cmd)}` failed:\n{tail}"
    return None


class LedgerscanBuildHook(BuildHookInterface):
    """Adds the compiled accelerator to wheels and editable installs when it builds."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        name = "_ledgerscan" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
        if version == "editable":
            target = root / "sentinel" / name
            target.unlink(missing_ok=True)  # never leave an older build importable
        else:
            self._tmp = tempfile.mkdtemp(prefix="sentinel-ext-")
            target = Path(self._tmp) / name
        problem = compile_extension(root / SOURCE, target)
        if problem is not None:
            message = f"sentinel: building the ledger-verify accelerator failed: {problem}"
            if os.environ.get(REQUIRE_ENV) == "1":
                raise RuntimeError(message)
            self.app.display_warning(message + "\n(continuing pure Python: verify is slower)")
            return
        if version != "editable":
            build_data["force_include"][str(target)] = f"sentinel/{name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    out = here / "sentinel" / ("_ledgerscan" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    out.unlink(missing_ok=True)
    why = compile_extension(here / SOURCE, out)
    raise SystemExit(f"sentinel: {why}" if why else None)
