"""`sentinel demo` — the README's first command — on the real DB-IP City Lite database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.demo.make_capture import LOOKUPS, SCENARIO, build
from sentinel.resources import demo_dir

REPO = Path(__file__).resolve().parents[2]
GEOIP = Path(os.environ.get("SENTINEL_DEMO_GEOIP", REPO / ".cache" / "dbip-city-lite-2023-04.mmdb"))


@pytest.fixture(scope="module")
def geoip() -> Path:
    if not GEOIP.is_file():
        pytest.fail(
            f"{GEOIP} missing: `make test` fetches it (python -m sentinel.demo.fetch_geoip)"
        )
    return GEOIP


def test_shipped_capture_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "again.pcap"
    build(out)
    assert out.read_bytes() == (demo_dir() / "registry-egress.pcap").read_bytes()


def test_demo_runs_end_to_end(tmp_path: Path, geoip: Path) -> None:
    exe = str(Path(sys.executable).with_name("sentinel"))
    target = tmp_path / "demo"
    done = subprocess.run(
        [exe, "demo", "--dir", str(target), "--geoip", str(geoip)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "report.html" in done.stdout and "DB-IP" in done.stdout

    report = json.loads((target / "state" / "reports" / "report.json").read_text())
    crit = {c["key"]: c for c in report["criteria"]}
    residency = crit["data_residency"]
    assert residency["status"] == "fail"
    found = {(v["remote_ip"], v["country"], v["reason"]) for v in residency["violations"]}
    assert found == {
        ("52.95.110.1", "US", "foreign country"),
        ("3.5.140.1", "KR", "foreign country"),
        ("9.9.9.9", "CH", "expired waiver"),
        ("114.114.114.114", "CN", "foreign country"),
    }
    # the registry host's lookups at its resolver are internal flows of their own
    assert residency["by_verdict"] == {"allowed": 6 + len(LOOKUPS), "violation": 4, "waived": 1}
    assert residency["by_country"]["DE"]["flows"] == 3
    flows = sum(c["flows"] for c in residency["by_country"].values())
    assert flows == len(SCENARIO) + len(LOOKUPS)
    # flows the registry host opened after a DNS lookup say which host they went to
    names = {
        v["remote_ip"]: [(n["name"], n["cnames"]) for n in v.get("remote_names", [])]
        for v in residency["violations"]
    }
    assert names == {
        "3.5.140.1": [("s3.ap-northeast-2.amazonaws.com", ["s3-r-w.ap-northeast-2.amazonaws.com"])],
        "9.9.9.9": [("dns.quad9.net", [])],
        "52.95.110.1": [],  # a client connecting in: nothing was looked up
        "114.114.114.114": [],
    }
    access = crit["access_control"]
    assert access["failure_count"] >= 2
    assert {f["actor"] for f in access["failures"]} >= {"mallory"}
    logging_ = crit["audit_logging"]
    assert logging_["verification"]["status"] == "valid"
    assert set(logging_["events_by_source"]) == {"registry", "registry-access", "registry-webhook"}
    # every audit source the daemon ran was watched and summarized at its stop
    coverage = {c["source"]: c for c in report["coverage"]["sources"]}
    assert set(coverage) == {
        "file:registry",
        "file:registry-access",
        "webhook:registry-webhook",
        "pcap-dir:inbox/captures",  # where the demo drops the registry host's capture
    }
    assert all(c["activity"] > 0 and c["status"] == "complete" for c in coverage.values())
    # the registry's own log line carrying the webhook's bearer token never reaches the ledger
    html = (target / "state" / "reports" / "report.html").read_text()
    assert "<html" in html and "52.95.110.1" in html and "DB-IP" in html
    assert "Coverage of the evidence" in html
    assert "s3.ap-northeast-2.amazonaws.com" in html

    verify = subprocess.run(
        [exe, "--config", str(target / "sentinel.toml"), "ledger", "verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    promtool = shutil.which("promtool")
    assert promtool, "install the Debian package `prometheus`"
    lint = subprocess.run(
        [promtool, "check", "metrics"],
        input=(target / "state" / "metrics.prom").read_bytes(),
        capture_output=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stderr.decode()
    prom = (target / "state" / "metrics.prom").read_text()
    assert f'sentinel_capture_dns_total{{kind="responses"}} {len(LOOKUPS)}.0' in prom

    # a second run re-creates the directory; a foreign non-empty directory is refused
    again = subprocess.run(
        [exe, "demo", "--dir", str(target), "--geoip", str(geoip)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    refused = subprocess.run(
        [exe, "demo", "--dir", str(other), "--geoip", str(geoip)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2 and "not a demo directory" in refused.stderr
    assert (other / "keep.txt").exists()


def test_demo_without_database_says_how_to_get_one(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("sentinel"))
    done = subprocess.run(
        [exe, "demo", "--dir", str(tmp_path / "d"), "--geoip", str(tmp_path / "none.mmdb")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "make demo" in done.stderr and "Traceback" not in done.stderr
