"""Flows whose orientation is unknown (no endpoint in ``local_networks``) are judged from both
ends and keep the worse verdict; the mark is recorded, counted and kept out of old records."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

from sentinel.flows.netflow import FlowRecord, Orienter
from sentinel.flows.netflow_collector import read_export_flows
from sentinel.geo import GeoDatabase
from sentinel.metrics import Metrics
from sentinel.policy.egress import EgressPolicy, severity, worse
from sentinel.records import Flow, Verdict, protocol_name
from sentinel.runtime.recorder import summarize

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "rules" / "egress-policy.yaml"
T0 = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
SE, CN = "89.160.20.112", "175.16.199.1"  # GeoIP2-City-Test.mmdb: Sweden, China


def _flow(local: str, remote: str, *, unknown: bool) -> Flow:
    return Flow(6, local, 443, remote, 50000, 3, 2, 1000, 100, T0, T0, orientation_unknown=unknown)


def test_both_ends_judged_worse_kept(policy: EgressPolicy, geo: GeoDatabase) -> None:
    """CN server → our SE address: taken as oriented it is "allowed SE"; of unknown orientation
    the CN end decides (violation) and the verdict's flow is turned round to say so."""
    oriented = _flow(CN, SE, unknown=False)
    assert policy.evaluate(oriented, geo, T0).verdict == "allowed"
    unknown = _flow(CN, SE, unknown=True)
    for verdict in (policy.evaluate(unknown, geo, T0), policy.evaluate_many([unknown], geo)[0]):
        assert (verdict.verdict, verdict.country, verdict.flow.remote_ip) == (
            "violation", "CN", CN)  # fmt: skip
        f = verdict.flow
        assert (f.local_ip, f.local_port, f.remote_port) == (SE, 50000, 443)
        assert (f.bytes_out, f.bytes_in, f.packets_out, f.packets_in) == (100, 1000, 2, 3)
        assert verdict.to_json()["orientation_unknown"] is True
    # on a tie the exporter's orientation is kept
    tie = policy.evaluate(_flow(SE, "81.2.69.142", unknown=True), geo, T0)
    assert (tie.flow.local_ip, tie.country) == (SE, "GB")


def test_evaluate_many_mixes_orientations(policy: EgressPolicy, geo: GeoDatabase) -> None:
    flows = [
        _flow(CN, SE, unknown=True),
        _flow(CN, SE, unknown=False),
        _flow(SE, "8.8.8.8", unknown=True),  # unknown location beats allowed
        _flow("10.20.0.5", SE, unknown=False),
    ]
    got = [(v.verdict, v.reason, v.flow.remote_ip) for v in policy.evaluate_many(flows, geo)]
    assert got == [
        ("violation", "foreign country", CN),
        ("allowed", "allowed country", SE),
        ("violation", "unknown location", "8.8.8.8"),
        ("allowed", "allowed country", SE),
    ]
    assert got == [
        (v.verdict, v.reason, v.flow.remote_ip)
        for v in (policy.evaluate(f, geo, f.last_seen) for f in flows)
    ]


def test_severity_order() -> None:
    f = _flow(SE, CN, unknown=True)
    allowed = Verdict(f, "allowed", "allowed country", "SE", "jurisdiction")
    waived = Verdict(f, "waived", "waiver", None, "W-1", waiver_id="W-1")
    unknown_ok = Verdict(f, "allowed", "unknown location", None, "jurisdiction")
    unknown = Verdict(f, "violation", "unknown location", None, "jurisdiction")
    foreign = Verdict(f, "violation", "foreign country", "CN", "jurisdiction")
    expired = Verdict(f, "violation", "expired waiver", "CN", "W-1", waiver_id="W-1")
    ranked = [allowed, waived, unknown_ok, unknown, foreign]
    assert sorted(ranked, key=severity) == ranked
    assert severity(expired) == severity(foreign)
    assert worse(waived, unknown) is unknown and worse(foreign, expired) is foreign


def test_old_records_keep_their_bytes(policy: EgressPolicy, geo: GeoDatabase) -> None:
    """The mark is written only when set: oriented flows serialize as before."""
    v = policy.evaluate(_flow("10.20.0.5", CN, unknown=False), geo, T0)
    assert "orientation_unknown" not in v.to_json()
    assert "orientation_unknown" not in summarize([v], source="t", start=T0, end=T0)
    u = policy.evaluate(_flow(SE, CN, unknown=True), geo, T0)
    body = summarize([v, u, u], source="t", start=T0, end=T0)
    assert body["orientation_unknown"] == 2
    json.dumps(body, allow_nan=False)
    metrics = Metrics()
    metrics.count_verdicts([v, u, u])
    assert "sentinel_egress_orientation_unknown_total 2.0" in metrics.exposition().decode()


def test_to_flow_marks_records_without_a_local_end() -> None:
    rec = FlowRecord("192.0.2.1", 5, 0, 0, 6, CN, SE, 443, 50000, 1, 100, 0, 0)
    assert rec.to_flow(Orienter([])).orientation_unknown
    assert not rec.to_flow(Orienter(["89.160.20.0/24"])).orientation_unknown
    assert (
        not dataclasses.replace(rec, dst="10.20.0.5")
        .to_flow(Orienter(["10.20.0.0/24"]))
        .orientation_unknown
    )
    # a private end with no local_networks: still marked (set local_networks), same verdict
    assert dataclasses.replace(rec, dst="10.1.2.3").to_flow(Orienter([])).orientation_unknown


def test_ingress_only_netflow_record_is_a_violation(corpus: Path, dbip: GeoDatabase) -> None:
    """The new-user case: akvorado's v9 record 173.194.190.106:443 (US) → 37.165.129.20 (our
    public address, FR, not in local_networks) was "allowed country=FR"; it is a violation."""
    policy = EgressPolicy.load(SHIPPED)
    folder = corpus / "pcap" / "akvorado"
    flows, _stats = read_export_flows(
        [folder / "template.pcap", folder / "data.pcap"], [str(n) for n in policy.local_networks]
    )
    verdicts = {v.flow.local_ip: v for v in policy.evaluate_many(flows, dbip)}
    us = verdicts["37.165.129.20"]
    assert (us.verdict, us.reason, us.country) == ("violation", "foreign country", "US")
    assert (us.flow.remote_ip, us.flow.remote_port, us.flow.bytes_in) == (
        "173.194.190.106", 443, 1400)  # fmt: skip
    assert all(v.flow.orientation_unknown for v in verdicts.values())
    # with our address listed the orientation is known and the verdict is the same
    listed = EgressPolicy.from_yaml(
        SHIPPED.read_bytes().replace(b"local_networks: [", b"local_networks: [37.165.129.0/24, ")
    )
    flows, _stats = read_export_flows(
        [folder / "template.pcap", folder / "data.pcap"], [str(n) for n in listed.local_networks]
    )
    (known,) = [v for v in listed.evaluate_many(flows, dbip) if v.flow.local_ip == "37.165.129.20"]
    assert not known.flow.orientation_unknown
    assert (known.verdict, known.country, known.flow.remote_ip) == (
        "violation", "US", "173.194.190.106")  # fmt: skip


def test_nfv5_both_ends_judged(corpus: Path, dbip: GeoDatabase) -> None:
    """akvorado/nfv5.pcap: 29 records, none with an end in local_networks; every one is judged
    from both ends (a US server → a BN client: violation whichever end is ours)."""
    policy = EgressPolicy.load(SHIPPED)
    flows, _stats = read_export_flows(
        [corpus / "pcap" / "akvorado" / "nfv5.pcap"], [str(n) for n in policy.local_networks]
    )
    assert len(flows) == 29 and all(f.orientation_unknown for f in flows)
    verdicts = policy.evaluate_many(flows, dbip)
    both = [
        worse(
            policy.evaluate(f, dbip, f.last_seen), policy.evaluate(f.swapped(), dbip, f.last_seen)
        )
        for f in flows
    ]
    assert [(v.verdict, v.country) for v in verdicts] == [(v.verdict, v.country) for v in both]
    assert sum(v.verdict == "violation" for v in verdicts) == 29


def test_protocol_names() -> None:
    assert [protocol_name(n) for n in (6, 17, 112, 89, 2, 253, 61)] == [
        "tcp", "udp", "vrrp", "ospf", "igmp", "ip-253", "ip-61"]  # fmt: skip
