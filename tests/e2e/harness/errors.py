"""The harness's one error type: an environment or tool failure, with the tool's own words."""

from __future__ import annotations


class HarnessError(RuntimeError):
    """A real component the harness drives failed (missing binary, bad exit, no readiness)."""


def require_binary(name: str, debian_package: str) -> str:
    """Absolute path of ``name`` on PATH; ``HarnessError`` naming the Debian package otherwise."""
    import shutil

    path = shutil.which(name)
    if path is None:
        raise HarnessError(
            f"`{name}` not found on PATH: install the Debian package `{debian_package}` "
            f"(apt-get install -y {debian_package}; .ci/install-deps.sh does it)"
        )
    return path
