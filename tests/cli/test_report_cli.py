"""`sentinel report`: exit codes follow the criteria; output names are checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from sentinel.geo.database import GeoDatabase
from sentinel.ledger import Ledger
from sentinel.metrics import Metrics
from sentinel.policy.egress import EgressPolicy
from sentinel.resources import demo_dir
from sentinel.runtime.egress import judge_capture_file
from sentinel.runtime.recorder import Recorder
from sentinel.runtime.setup import init_directory


def _report(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("sentinel"))
    return subprocess.run(
        [exe, "--config", str(cfg), "report", *args], capture_output=True, text=True, check=False
    )


def test_exit_codes(tmp_path: Path, corpus: Path) -> None:
    init_directory(tmp_path)
    cfg = tmp_path / "sentinel.toml"
    shutil.copyfile(demo_dir() / "policy.yaml", tmp_path / "policy.yaml")
    period = ("--from", "2026-11-29", "--to", "2026-11-30")
    empty = _report(cfg, *period, "-o", str(tmp_path / "r.html"))
    assert empty.returncode == 0, empty.stderr
    assert _report(cfg, *period, "-o", str(tmp_path / "r.txt")).returncode == 2
    missing = _report(cfg, *period, "--template-dir", str(tmp_path), "-o", str(tmp_path / "r.html"))
    assert missing.returncode == 2 and "report.html.j2" in missing.stderr

    url = f"sqlite:///{tmp_path / 'state' / 'ledger.db'}"
    with (
        Ledger.open(url) as ledger,
        GeoDatabase.open(corpus / "geoip" / "GeoIP2-City-Test.mmdb") as geo,
    ):
        policy = EgressPolicy.load(tmp_path / "policy.yaml")
        outcome = judge_capture_file(
            demo_dir() / "registry-egress.pcap", policy, geo, Recorder(ledger, Metrics())
        )
    assert outcome.violations > 0  # the test database knows none of the real addresses
    failing = _report(cfg, *period, "-o", str(tmp_path / "r.json"))
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "fail" in failing.stdout and (tmp_path / "r.json").is_file()
