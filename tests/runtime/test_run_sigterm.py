"""`sentinel run` as a real process: serves metrics, records a capture, stops on SIGTERM."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sentinel.config import DEFAULT_CONFIG_TOML
from sentinel.ledger import Ledger
from sentinel.resources import demo_dir
from sentinel.runtime.setup import init_directory


def test_run_serves_records_and_stops_on_sigterm(tmp_path: Path, corpus: Path) -> None:
    text = (
        DEFAULT_CONFIG_TOML.replace('pcap_dir = ""', 'pcap_dir = "captures"')
        .replace('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:0"')
        .replace(
            '# database = "/usr/share/GeoIP/dbip-city-lite.mmdb"',
            f'database = "{corpus / "geoip" / "GeoLite2-City-Test.mmdb"}"',
        )
    )
    init_directory(tmp_path, config_text=text)
    shutil.copyfile(demo_dir() / "policy.yaml", tmp_path / "policy.yaml")
    (tmp_path / "captures").mkdir()
    exe = str(Path(sys.executable).with_name("sentinel"))
    log = (tmp_path / "run.log").open("w+")
    proc = subprocess.Popen(
        [exe, "--config", str(tmp_path / "sentinel.toml"), "run"], stderr=log, stdout=log
    )
    try:
        deadline = time.monotonic() + 30
        port = None
        while time.monotonic() < deadline and port is None:
            time.sleep(0.2)
            found = re.search(
                r"metrics on http://127\.0\.0\.1:(\d+)/metrics", (tmp_path / "run.log").read_text()
            )
            port = int(found.group(1)) if found else None
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
        assert port, (tmp_path / "run.log").read_text()
        shutil.copyfile(demo_dir() / "registry-egress.pcap", tmp_path / "captures" / "a.pcap")
        while time.monotonic() < deadline:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            # the capture's one internal conversation, and the six DNS lookups at the resolver
            if b'sentinel_flows_total{reason="internal",verdict="allowed"} 7.0' in body:
                break
            time.sleep(0.3)
        else:
            pytest.fail("the capture was not judged:\n" + (tmp_path / "run.log").read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = (tmp_path / "run.log").read_text()
    assert "Traceback" not in output
    assert "apscheduler" not in output.lower()  # its per-job chatter stays at debug level
    with Ledger.open(f"sqlite:///{tmp_path / 'state' / 'ledger.db'}") as ledger:
        assert ledger.verify().ok
        assert ledger.size() > 0
