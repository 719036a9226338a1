"""The shipped systemd unit verifies and stays hardened (systemd-analyze, offline)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "sentinel.service"


def _unit_for_here(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's `sentinel` (verify needs it)."""
    exe = Path(sys.executable).with_name("sentinel")
    if not exe.exists():
        pytest.fail(f"{exe} missing: install the project (make install)")
    unit = tmp_path / "sentinel.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/sentinel", str(exe)))
    return unit


def _analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze missing: install the Debian package `systemd`")
    return path


def test_unit_verifies(tmp_path: Path) -> None:
    done = subprocess.run(
        [_analyze(), "verify", "--man=no", str(_unit_for_here(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_unit_exposure_is_low(tmp_path: Path) -> None:
    done = subprocess.run(
        [_analyze(), "security", "--offline=true", str(_unit_for_here(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.5, done.stdout


def test_unit_keeps_only_cap_net_raw() -> None:
    text = UNIT.read_text()
    assert "CapabilityBoundingSet=CAP_NET_RAW\n" in text
    assert "User=sentinel" in text
    assert "NoNewPrivileges=yes" in text
