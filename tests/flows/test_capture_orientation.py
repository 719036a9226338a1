"""Captured flows with neither endpoint in ``local_networks`` are judged like NetFlow records:
marked ``orientation_unknown``, judged from both ends, the worse verdict kept, counted — on the
vectorized and the scalar read path, in ``egress check`` and in the daemon's summary."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from sentinel.flows import read_flows
from sentinel.geo import GeoDatabase
from sentinel.metrics import Metrics
from sentinel.policy.egress import EgressPolicy
from sentinel.runtime.recorder import summarize

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "rules" / "egress-policy.yaml"  # local_networks: 10.20.0.0/24, fd00:20::/64
# GeoIP2-City-Test.mmdb: Sweden (allowed: EEA), China
SE, CN = "89.160.20.112", "175.16.199.1"
OURS = "10.20.0.5"
T = 1767222000.0  # 2025-12-31T23:00:00Z


def _write_capture(path: Path) -> None:
    """Three flows, each opened by its first packet's source:

    * CN client → SE:443 (our unlisted public address in an allowed country): taken as
      oriented by its first packet, the CN client would be "ours" and SE judged — allowed;
    * OURS → SE:443, in local_networks: oriented, not marked;
    * SE:53 → CN (UDP, neither end ours).
    """
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pkts = []
    t = T
    for src, dst, sport, dport, flags in [
        (CN, SE, 50000, 443, "S"),
        (SE, CN, 443, 50000, "SA"),
        (CN, SE, 50000, 443, "A"),
        (SE, CN, 443, 50000, "PA"),
    ]:
        p = eth / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / (b"x" * 100)
        p.time = t
        pkts.append(p)
        t += 0.01
    for src, dst in [(OURS, SE), (SE, OURS)]:
        p = eth / IP(src=src, dst=dst) / TCP(sport=40000 if src == OURS else 443) / b"y"
        p[TCP].dport = 443 if src == OURS else 40000
        p.time = t
        pkts.append(p)
        t += 0.01
    p = eth / IP(src=SE, dst=CN) / UDP(sport=53, dport=33333) / (b"z" * 40)
    p.time = t
    pkts.append(p)
    wrpcap(str(path), pkts)


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "unlisted.pcap"
    _write_capture(path)
    return path


@pytest.fixture
def geo(corpus: Path) -> GeoDatabase:
    return GeoDatabase.open(corpus / "geoip" / "GeoIP2-City-Test.mmdb")


@pytest.mark.parametrize("engine", ["vector", "scalar"])
def test_flows_without_a_local_end_are_marked_and_judged_from_both_ends(
    capture: Path, geo: GeoDatabase, engine: str
) -> None:
    policy = EgressPolicy.load(POLICY)
    flows, _stats = read_flows([capture], policy.local_networks, engine=engine)  # type: ignore[arg-type]
    got = {(f.local_ip, f.remote_ip, f.orientation_unknown) for f in flows}
    # the first packet's source is taken as local (as before); the mark says it is a guess
    assert got == {(CN, SE, True), (OURS, SE, False), (SE, CN, True)}
    with geo:
        verdicts = policy.evaluate_many(flows, geo)
        one_by_one = [policy.evaluate(f, geo, f.last_seen) for f in flows]
    by_pair = {frozenset((v.flow.local_ip, v.flow.remote_ip)): v for v in verdicts}
    tcp = by_pair[frozenset((CN, SE))]
    # without the mark this flow was "allowed, SE" (our own address judged)
    assert (tcp.verdict, tcp.country, tcp.flow.remote_ip) == ("violation", "CN", CN)
    assert tcp.flow.orientation_unknown and tcp.to_json()["orientation_unknown"] is True
    ours = by_pair[frozenset((OURS, SE))]
    assert (ours.verdict, ours.country, ours.flow.orientation_unknown) == ("allowed", "SE", False)
    assert "orientation_unknown" not in ours.to_json()
    assert [(v.verdict, v.flow.remote_ip) for v in verdicts] == [
        (v.verdict, v.flow.remote_ip) for v in one_by_one
    ]
    # counted as NetFlow's are: metric and the summary record
    metrics = Metrics()
    metrics.count_verdicts(verdicts)
    assert metrics.orientation_unknown._value.get() == 2
    now = datetime.now(UTC)
    summary = summarize(verdicts, source="pcap:unlisted.pcap", start=now, end=now)
    assert summary["orientation_unknown"] == 2


def test_egress_check_shows_and_counts_them(capture: Path, corpus: Path) -> None:
    geoip = str(corpus / "geoip" / "GeoIP2-City-Test.mmdb")
    base = [sys.executable, "-m", "sentinel", "egress", "check", "--policy", str(POLICY)]
    args = [*base, "--geoip", geoip, "--pcap", str(capture), "--no-dns"]
    done = subprocess.run([*args, "--json"], capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 1, done.stderr  # the CN client is a violation
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    marked = [(r["remote_ip"], r["verdict"]) for r in rows if r.get("orientation_unknown")]
    assert marked == [(CN, "violation"), (CN, "violation")]
    assert [(r["remote_ip"], r["verdict"]) for r in rows if "orientation_unknown" not in r] == [
        (SE, "allowed")
    ]
    assert "2 flow(s) with neither endpoint in local_networks, judged from both ends" in (
        done.stderr
    )
    done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=REPO)
    unknown = [line for line in done.stdout.splitlines() if "orientation=unknown" in line]
    assert len(unknown) == 2 and all(CN in line for line in unknown)
