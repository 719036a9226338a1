"""`egress check`: waivers judged when the flow was seen; broken or location-less GeoIP
databases are refused; lookup errors never pass as an allowed unknown location."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from sentinel.flows import read_flows
from sentinel.geo.database import GeoDatabase
from sentinel.policy.egress import EgressPolicy, evaluate_all
from sentinel.resources import demo_dir
from sentinel.timefmt import parse_ts

EXE = str(Path(sys.executable).with_name("sentinel"))
DEMO_PCAP = demo_dir() / "registry-egress.pcap"


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "egress", "check", *args], capture_output=True, text=True, check=False
    )


def test_waiver_is_judged_at_the_time_the_flow_was_seen(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "jurisdiction: {name: t, allow_countries: [EEA]}\n"
        "local_networks: [10.20.0.0/24, 'fd00:20::/64']\n"
        "waivers:\n  - {id: W-US, network: 52.95.110.1/32, ports: [443], justification: j,"
        " approver: a, expires: '2026-12-01T00:00:00Z'}\n"
    )
    seen = _check(
        "--pcap",
        str(DEMO_PCAP),
        "--policy",
        str(policy),
        "--json",
        "--geoip",
        str(_dbip_or_test_db()),
    )
    us = [
        json.loads(line)
        for line in seen.stdout.splitlines()
        if json.loads(line)["remote_ip"] == "52.95.110.1"
    ]
    assert us[0]["verdict"] == "waived"  # captured 2026-11-29, the waiver ran until 2026-12-01
    later = _check(
        "--pcap",
        str(DEMO_PCAP),
        "--policy",
        str(policy),
        "--json",
        "--geoip",
        str(_dbip_or_test_db()),
        "--now",
        "2027-01-01T00:00:00Z",
    )
    us = [
        json.loads(line)
        for line in later.stdout.splitlines()
        if json.loads(line)["remote_ip"] == "52.95.110.1"
    ]
    assert (us[0]["verdict"], us[0]["reason"]) == ("violation", "expired waiver")


def _dbip_or_test_db() -> Path:
    repo = Path(__file__).resolve().parents[2]
    dbip = repo / ".cache" / "dbip-city-lite-2023-04.mmdb"
    if not dbip.is_file():
        pytest.fail(f"{dbip} missing: `make test` fetches it")
    return dbip


@pytest.mark.parametrize(
    "name",
    [
        "GeoIP2-City-Test-Broken-Double-Format.mmdb",
        "GeoLite2-ASN-Test.mmdb",
        "GeoIP2-Anonymous-IP-Test.mmdb",
        "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
    ],
)
def test_unusable_databases_are_refused(corpus: Path, name: str) -> None:
    done = _check(
        "--pcap",
        str(DEMO_PCAP),
        "--policy",
        str(demo_dir() / "policy.yaml"),
        "--geoip",
        str(corpus / "geoip" / name),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert name in done.stderr and "Traceback" not in done.stderr


def test_lookup_errors_fail_closed_even_with_unknown_allow(tmp_path: Path, corpus: Path) -> None:
    pcap = tmp_path / "t.pcap"
    frames = [
        Ether() / IP(src="10.20.0.5", dst=dst) / UDP(sport=40000, dport=443)
        for dst in ("81.2.69.142", "175.16.199.1")
    ]
    for i, f in enumerate(frames):
        f.time = 1_795_978_800 + i
    wrpcap(str(pcap), frames)
    policy = EgressPolicy.from_yaml(
        b"jurisdiction: {name: t, allow_countries: [EEA], unknown: allow}\n"
        b"local_networks: [10.20.0.0/24]\n"
    )
    flows, _ = read_flows([pcap], policy.local_networks)
    with GeoDatabase.open(corpus / "geoip" / "GeoIP2-City-Test-Broken-Double-Format.mmdb") as db:
        verdicts = evaluate_all(flows, policy, db, parse_ts("2026-11-29T19:00:00Z"))
        assert db.lookup_errors >= 2
    assert {(v.verdict, v.reason, v.rule) for v in verdicts} == {
        ("violation", "unknown location", "geoip-lookup-error")
    }
