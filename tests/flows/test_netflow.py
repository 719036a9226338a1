"""NetFlow v5/v9/IPFIX decoding against pmacct's expected output and akvorado's test captures.

pmacct (tests/NNN-*/output-flow-00.json) aggregates the decoded records by its configured
primitives and sums packets and bytes; we aggregate ours by the primitives both have (addresses,
ports, protocol, ToS, interfaces, TCP flags) and compare the sums. Test 104 runs with
``nfacctd_renormalize: true`` (counts multiplied by the sampling rate), so counts are compared
scaled; the other tests carry no sampling (rate 1 either way). pmacct's ``peer_ip_src`` is the
address of its test harness' replay host, not the capture's, so only the number of exporters
is compared. The akvorado captures (AGPL) are read in place.
"""

from __future__ import annotations

import json
import struct
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from sentinel.flows.netflow import FlowRecord, Limits, NetflowDecoder, Orienter
from sentinel.flows.netflow_collector import ExportPcapStats, export_datagrams, read_export_pcap

PMACCT = {
    "100": (["100-IPFIXv10-CISCO.pcap"], "100-IPFIXv10-CISCO"),
    "101": (["101-NFv9-CISCO-cust_primitives.pcap"], "101-NFv9-CISCO-cust_primitives"),
    "104": (
        ["104-IPFIXv10-IPv6-CISCO-sampling_option.pcap"],
        "104-IPFIXv10-IPv6-CISCO-sampling_option",
    ),
    "111": (
        [
            "111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources.traffic-00.pcap",
            "111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources.traffic-01.pcap",
        ],
        "111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources",
    ),
    "112": (
        ["112-IPFIXv10-CISCO-options-map-reassignment.pcap"],
        "112-IPFIXv10-CISCO-options-map-reassignment",
    ),
}
#: pmacct's protocol names (getprotobynumber)
PROTO = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 112: "vrrp"}
TCP_FLAGS = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"]

Key = tuple[str, str, int, int, str, int, int, int, frozenset[str]]


def _flags(bits: int) -> frozenset[str]:
    return frozenset(name for i, name in enumerate(TCP_FLAGS) if bits & (1 << i))


def _ours(records: list[FlowRecord]) -> dict[Key, list[int]]:
    agg: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        key = (
            r.src, r.dst, r.src_port, r.dst_port, PROTO[r.protocol], r.tos, r.in_if, r.out_if,
            _flags(r.tcp_flags),
        )  # fmt: skip
        agg[key][0] += r.packets * r.sampling_rate
        agg[key][1] += r.bytes * r.sampling_rate
    return dict(agg)


def _pmacct(lines: list[dict[str, object]]) -> dict[Key, list[int]]:
    agg: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
    for e in lines:
        key = (
            e["ip_src"], e["ip_dst"], e["port_src"], e["port_dst"], e["ip_proto"], e["tos"],
            e["iface_in"], e["iface_out"], frozenset(e["tcp_flags"]),  # type: ignore[arg-type]
        )  # fmt: skip
        agg[key][0] += int(e["packets"])  # type: ignore[call-overload]
        agg[key][1] += int(e["bytes"])  # type: ignore[call-overload]
    return dict(agg)  # type: ignore[arg-type]


@pytest.mark.parametrize("test_id", sorted(PMACCT))
def test_decoded_flows_match_pmacct_expected_output(corpus: Path, test_id: str) -> None:
    pcaps, stem = PMACCT[test_id]
    folder = corpus / "pcap" / "pmacct"
    records, stats = read_export_pcap([folder / p for p in pcaps])
    expected = [
        json.loads(line)
        for line in (folder / f"{stem}.output-flow-00.json").read_text().splitlines()
        if line.strip()
    ]
    assert _ours(records) == _pmacct(expected)
    assert len({r.exporter for r in records}) == len({e["peer_ip_src"] for e in expected})
    assert stats.problems == []
    # pmacct test 101 keeps the exporter's times: unix_secs - (SysUptime - FIRST_SWITCHED)
    # // 1000, whole seconds; ours keep the milliseconds, so pmacct's is ours rounded up
    stamped = [e for e in expected if "timestamp_start" in e]
    if stamped:
        ours = Counter((r.src, r.dst, r.src_port, -(-r.first_ns // 10**9)) for r in records)
        theirs = Counter(
            (e["ip_src"], e["ip_dst"], e["port_src"], int(float(e["timestamp_start"])))
            for e in stamped
        )
        assert theirs <= ours


def test_pmacct_104_sampling_rate_from_options_data(corpus: Path) -> None:
    """Options template 257 (selectorId scope, samplingPopulation 256 / samplingSize 1)."""
    folder = corpus / "pcap" / "pmacct"
    records, _ = read_export_pcap([folder / "104-IPFIXv10-IPv6-CISCO-sampling_option.pcap"])
    assert {r.sampling_rate for r in records} == {256}
    flow = records[0].to_flow(Orienter(["fe80::/10"]))
    assert flow.sampling_rate == 256
    assert flow.packets == records[0].packets * 256
    assert flow.to_json()["sampling_rate"] == 256


def test_pmacct_112_data_without_templates_is_counted(corpus: Path) -> None:
    """Options data re-assigned twice; data sets 313, 341, 348 and the last 342 never get a
    template in the capture (tshark: "no template found"): counted, not decoded, not fatal."""
    path = corpus / "pcap" / "pmacct" / "112-IPFIXv10-CISCO-options-map-reassignment.pcap"
    records, stats = read_export_pcap([path])
    assert len(records) == 9
    assert stats.decoder.missing_template_sets == 4
    assert stats.decoder.pending_sets == 0
    assert stats.decoder.options_records > 0


# -- akvorado captures --------------------------------------------------------------------


def _akvorado(corpus: Path, *names: str) -> tuple[list[FlowRecord], ExportPcapStats]:
    return read_export_pcap([corpus / "pcap" / "akvorado" / f"{n}.pcap" for n in names])


def test_nfv5(corpus: Path) -> None:
    records, stats = _akvorado(corpus, "nfv5")
    assert len(records) == 29
    first = records[0]
    assert (first.src, first.dst, first.src_port, first.dst_port) == (
        "161.202.212.212",
        "202.152.70.24",
        30104,
        11963,
    )
    assert (first.protocol, first.packets, first.bytes, first.tcp_flags) == (6, 1, 133, 0x18)
    assert (first.in_if, first.out_if, first.sampling_rate, first.version) == (117, 86, 1, 5)
    assert stats.decoder.datagrams == {"5": 1}


def test_data_before_template_in_the_same_datagram_is_replayed(corpus: Path) -> None:
    records, stats = _akvorado(corpus, "data+templates")
    assert stats.decoder.replayed_sets == 1
    assert stats.decoder.missing_template_sets == 0
    assert len(records) == 21
    # the options data in the same datagram says SAMPLING_INTERVAL = 100
    assert {r.sampling_rate for r in records} == {100}


def test_data_alone_counts_no_template(corpus: Path) -> None:
    records, stats = _akvorado(corpus, "data")
    assert records == []
    assert stats.decoder.missing_template_sets == 1
    assert stats.decoder.missing_template_bytes > 0


def test_template_then_data_and_options_sampling(corpus: Path) -> None:
    records, _ = _akvorado(corpus, "template", "data")
    assert len(records) == 4
    assert {r.sampling_rate for r in records} == {1}  # the sampler's rate was never sent
    first = records[0]
    assert (first.src, first.dst, first.src_port, first.dst_port, first.protocol) == (
        "198.38.121.178",
        "91.170.143.87",
        443,
        19624,
        6,
    )
    assert (first.packets, first.bytes, first.in_if, first.out_if) == (1, 1500, 335, 450)
    records, _ = _akvorado(corpus, "options-template", "options-data", "template", "data")
    assert [r.sampling_rate for r in records] == [30000] * 4


def test_sampling_interval_in_the_data_template(corpus: Path) -> None:
    records, _ = _akvorado(corpus, "samplingrate-template", "samplingrate-data")
    assert {r.sampling_rate for r in records} == {2048}
    first = records[0]
    assert (first.src, first.dst, first.src_port, first.dst_port, first.bytes) == (
        "232.131.215.65",
        "142.183.180.65",
        13245,
        10907,
        160,
    )


def test_multiple_sampler_ids(corpus: Path) -> None:
    records, _ = _akvorado(
        corpus,
        "multiplesamplingrates-options-template",
        "multiplesamplingrates-options-data",
        "multiplesamplingrates-template",
        "multiplesamplingrates-data",
    )
    assert [r.sampling_rate for r in records[:2]] == [4000, 2000]
    assert (records[0].src, records[0].dst, records[0].packets, records[0].bytes) == (
        "ffff::68",
        "ffff::1a",
        18,
        1348,
    )
    assert (records[1].src, records[1].dst, records[1].packets, records[1].bytes) == (
        "ffff::5a",
        "ffff::f",
        4,
        579,
    )


def test_ipfixprobe_biflows_keep_both_directions(corpus: Path) -> None:
    records, _ = _akvorado(corpus, "ipfixprobe-templates", "ipfixprobe-data")
    by_ends = {(r.src, r.dst, r.src_port, r.dst_port): r for r in records}
    smtp = by_ends[("10.10.1.4", "74.53.140.153", 1470, 25)]
    assert (smtp.packets, smtp.bytes, smtp.rev_packets, smtp.rev_bytes) == (28, 21673, 25, 1546)
    ping = by_ends[("192.168.1.1", "10.10.1.4", 0, 0)]
    assert (ping.protocol, ping.packets, ping.bytes, ping.rev_packets) == (1, 4, 2304, 0)
    flow = smtp.to_flow(Orienter(["10.10.1.0/24"]))
    assert (flow.local_ip, flow.remote_ip) == ("10.10.1.4", "74.53.140.153")
    assert (flow.packets_out, flow.bytes_out, flow.packets_in, flow.bytes_in) == (
        28,
        21673,
        25,
        1546,
    )


def test_scapy_captures_keep_exporters_apart(corpus: Path) -> None:
    """netflowv9.pcap: two exporters with the same source id; only 192.168.100.10 sends
    SAMPLING_INTERVAL 12 (options), so the data of 192.168.100.1 is not scaled by it."""
    decoder = NetflowDecoder()
    stats = ExportPcapStats()
    for _ts, exporter, payload in export_datagrams(corpus / "pcap/scapy/netflowv9.pcap", stats):
        decoder.feed(payload, exporter)
    assert decoder.sampling_rate("192.168.100.10", 9, 8, None) == 12
    assert decoder.sampling_rate("192.168.100.1", 9, 8, None) == 1
    assert decoder.stats.records == 24
    records, _ = read_export_pcap([corpus / "pcap/scapy/ipfix.pcap"])
    assert [(r.src, r.dst, r.protocol, r.packets, r.bytes) for r in records] == [
        ("70.1.115.1", "50.0.71.1", 61, 9, 1312)
    ]


# -- synthetic datagrams: withdrawal, limits, sequences, damage -----------------------------


def _ipfix(seq: int, *sets: bytes, domain: int = 7, export: int = 1_700_000_000) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export, seq, domain) + body


def _set(set_id: int, body: bytes) -> bytes:
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def _template(tid: int, fields: list[tuple[int, int]]) -> bytes:
    return struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)


V4 = [(8, 4), (12, 4), (4, 1), (1, 4), (2, 4)]  # src, dst, protocol, octets, packets
SWAPPED = [(12, 4), (8, 4), (4, 1), (1, 4), (2, 4)]  # same length, addresses swapped


def _v4_record(src: str, dst: str, proto: int, octets: int, packets: int) -> bytes:
    a = bytes(int(x) for x in src.split("."))
    b = bytes(int(x) for x in dst.split("."))
    return a + b + struct.pack("!BII", proto, octets, packets)


def test_withdrawal_and_reassignment() -> None:
    d = NetflowDecoder()
    rec = _v4_record("10.0.0.1", "8.8.8.8", 17, 100, 2)
    r = d.feed(_ipfix(0, _set(2, _template(300, V4)), _set(300, rec)), "192.0.2.1")
    assert [(x.src, x.dst) for x in r.records] == [("10.0.0.1", "8.8.8.8")]
    # withdrawn (field count 0): later data waits for a template
    r = d.feed(_ipfix(1, _set(2, struct.pack("!HH", 300, 0)), _set(300, rec)), "192.0.2.1")
    assert r.records == [] and d.stats.templates_withdrawn == 1 and d.stats.pending_sets == 1
    # reassigned with another layout: the buffered set is decoded with the new one
    r = d.feed(_ipfix(2, _set(2, _template(300, SWAPPED))), "192.0.2.1")
    assert [(x.src, x.dst) for x in r.records] == [("8.8.8.8", "10.0.0.1")]
    assert d.stats.replayed_sets == 1 and d.stats.pending_sets == 0
    # a redefinition of a live template is counted
    d.feed(_ipfix(3, _set(2, _template(300, V4))), "192.0.2.1")
    assert d.stats.templates_replaced == 1
    # same template id from another exporter or domain is another template
    r = d.feed(_ipfix(0, _set(300, rec)), "192.0.2.2")
    assert r.records == []
    r = d.feed(_ipfix(0, _set(300, rec), domain=8), "192.0.2.1")
    assert r.records == []
    assert d.stats.pending_sets == 2


def test_limits_are_enforced_and_counted() -> None:
    d = NetflowDecoder(
        Limits(max_datagram=200, max_exporters=1, max_templates_per_exporter=1, max_pending_sets=2)
    )
    rec = _v4_record("10.0.0.1", "8.8.8.8", 6, 1, 1)
    d.feed(_ipfix(0, _set(2, _template(300, V4) + _template(301, V4))), "192.0.2.1")
    assert d.stats.templates == 1 and d.stats.templates_refused == 1
    for seq in range(3):
        d.feed(_ipfix(seq, _set(301, rec)), "192.0.2.1")
    assert d.stats.pending_sets == 2 and d.stats.missing_template_sets == 1
    assert d.feed(_ipfix(9, _set(300, rec)), "192.0.2.9").problems == ["too many exporters"]
    assert d.feed(b"\x00\x0a" + bytes(300), "192.0.2.1").problems == ["too large"]
    assert d.stats.refused == {"too many exporters": 1, "too large": 1}
    assert d.finish() == 2
    assert d.stats.missing_template_sets == 3


def _v5(seq: int, count: int) -> bytes:
    header = struct.pack("!HHIIIIBBH", 5, count, 1000, 1_700_000_000, 0, seq, 0, 1, 0)
    record = struct.pack(
        "!4s4s4sHHIIIIHHxBBBHHBBxx",
        bytes([10, 0, 0, 1]), bytes([8, 8, 8, 8]), bytes(4), 1, 2, 3, 300, 900, 1000,
        1234, 443, 0x18, 6, 0, 0, 0, 24, 24,
    )  # fmt: skip
    return header + record * count


def test_sequence_gaps_reordering_and_restart() -> None:
    d = NetflowDecoder()
    for seq, count in [(0, 2), (2, 2), (10, 1), (4, 2), (11, 1), (4_000_000_000, 1)]:
        d.feed(_v5(seq, count), "192.0.2.1")
    s = d.stats.sequences[("192.0.2.1", 5, 1)]
    assert (s.datagrams, s.lost, s.gaps, s.reordered, s.resets) == (6, 6, 1, 1, 1)
    assert d.stats.sequence_lost == 6
    # v5 counts come straight from the header; times are SysUptime-relative
    rec = d.feed(_v5(4_000_000_001, 1), "192.0.2.1").records[0]
    assert (rec.packets, rec.bytes, rec.src_port, rec.dst_port) == (3, 300, 1234, 443)
    assert rec.last_ns == 1_700_000_000 * 10**9
    assert rec.first_ns == (1_700_000_000 * 1000 - 100) * 10**6


def test_v9_sequence_counts_export_packets(corpus: Path) -> None:
    """pmacct 101: sequence numbers 147688 (template), 147674-147678, 147684-147696, ...: the
    datagrams older than the first one are late (reordered), the jumps forward are losses."""
    _records, stats = read_export_pcap(
        [corpus / "pcap" / "pmacct" / "101-NFv9-CISCO-cust_primitives.pcap"]
    )
    (seq,) = stats.decoder.sequences.values()
    assert seq.unit == "export packets"
    assert seq.datagrams == 40
    assert seq.reordered > 0 and seq.lost > 0 and seq.resets == 0


def test_every_truncation_of_every_corpus_datagram_is_handled(corpus: Path) -> None:
    """No exception escapes ``feed``: cut each corpus datagram at every length and flip bytes;
    every problem is a counted, typed reason."""
    payloads: list[tuple[str, bytes]] = []
    stats = ExportPcapStats()
    for path in sorted((corpus / "pcap" / "pmacct").glob("*.pcap")) + sorted(
        (corpus / "pcap" / "akvorado").glob("*.pcap")
    ):
        payloads.extend((e, p) for _ts, e, p in export_datagrams(path, stats))
    assert len(payloads) > 100
    decoder = NetflowDecoder()
    for exporter, payload in payloads:
        decoder.feed(payload, exporter)  # learn the templates first
    problems = 0
    for exporter, payload in payloads:
        for cut in range(0, len(payload), 7):
            problems += len(decoder.feed(payload[:cut], exporter).problems)
        damaged = bytearray(payload)
        for i in range(4, len(damaged), 11):
            damaged[i] ^= 0xFF
        problems += len(decoder.feed(bytes(damaged), exporter).problems)
    assert problems > 0
    assert sum(decoder.stats.malformed.values()) > 0
    assert all(isinstance(k, str) and k for k in decoder.stats.malformed)


def test_to_flow_orients_and_scales() -> None:
    record = FlowRecord(
        exporter="192.0.2.1", version=10, domain=0, template_id=300, protocol=6,
        src="8.8.8.8", dst="10.1.2.3", src_port=443, dst_port=5555, packets=2, bytes=300,
        first_ns=1_700_000_000 * 10**9, last_ns=1_700_000_001 * 10**9, sampling_rate=10,
    )  # fmt: skip
    flow = record.to_flow(Orienter(["10.1.0.0/16"]))
    assert (flow.local_ip, flow.local_port, flow.remote_ip, flow.remote_port) == (
        "10.1.2.3",
        5555,
        "8.8.8.8",
        443,
    )
    assert (flow.packets_in, flow.bytes_in, flow.packets_out, flow.bytes_out) == (20, 3000, 0, 0)
    assert flow.to_json()["exporter"] == "192.0.2.1"
    assert flow.to_json()["sampling_rate"] == 10
    unsampled = FlowRecord(**{**_fields(record), "sampling_rate": 1}).to_flow(Orienter([]))
    assert "sampling_rate" not in unsampled.to_json()


def _fields(record: FlowRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__slots__}  # type: ignore[attr-defined]


def test_orienter_ranks_as_ipaddress_does() -> None:
    """The fast path (first byte outside every special range) gives the same rank as the
    ``ipaddress`` check the capture path uses, on boundaries and random addresses."""
    import ipaddress
    import random

    local = ["10.20.0.0/24", "2a01:4f8:1::/48"]
    orient = Orienter(local)
    nets = [ipaddress.ip_network(n) for n in local]
    rng = random.Random(5)
    samples = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(20000)]
    samples += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(5000)]
    samples += [
        str(ipaddress.IPv6Address((0x2000 + rng.getrandbits(13)) << 112)) for _ in range(5000)
    ]
    samples += ["10.20.0.7", "10.20.1.7", "100.64.0.1", "192.0.0.170", "203.0.113.9", "8.8.8.8"]
    samples += ["2a01:4f8:1::5", "2001:db8::1", "fe80::1", "ff02::12", "::ffff:8.8.8.8", "3fff::1"]
    for text in samples:
        addr = ipaddress.ip_address(text)
        if any(addr in n for n in nets if n.version == addr.version):
            expected = 2
        else:
            expected = 1 if addr.is_private or addr.is_multicast else 0
        assert orient.rank(text) == expected, text


def test_a_damaged_set_spoils_only_itself() -> None:
    """A reserved set id and a template that overruns its set are counted; the well-framed
    sets after them are still decoded."""
    d = NetflowDecoder()
    rec = _v4_record("10.0.0.1", "8.8.8.8", 6, 10, 1)
    broken_template = struct.pack("!HH", 301, 9) + struct.pack("!HH", 8, 4)  # 9 fields, 1 given
    message = _ipfix(
        0,
        _set(5, b"\x00" * 8),
        _set(2, broken_template),
        _set(2, _template(300, V4)),
        _set(300, rec),
    )
    result = d.feed(message, "192.0.2.1")
    assert [(r.src, r.bytes) for r in result.records] == [("10.0.0.1", 10)]
    assert d.stats.malformed == {"reserved set id": 1, "bad template": 1}
    assert len(result.problems) == 2
