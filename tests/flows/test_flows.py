"""Decoding and flows on real corpus captures (many link types) and scapy-written input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from scapy.layers.inet import GRE, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import wrpcap

from sentinel.flows import read_flows
from sentinel.flows.decode import Decoder
from sentinel.flows.table import FlowTable
from sentinel.records import Flow


def _flows(corpus: Path, name: str, local: list[str]) -> tuple[list[Flow], object]:
    return read_flows([corpus / "pcap" / name], local)


def _find(flows: list[Flow], remote_ip: str, remote_port: int) -> Flow:
    hits = [f for f in flows if f.remote_ip == remote_ip and f.remote_port == remote_port]
    assert len(hits) == 1, [f.to_json() for f in flows]
    return hits[0]


@pytest.mark.parametrize("name", ["zeek/http-vlan-0.pcap", "zeek/http-qinq-0.pcap"])
def test_vlan_and_qinq(corpus: Path, name: str) -> None:
    flows, stats = read_flows([corpus / "pcap" / name], ["141.142.228.0/24"])
    assert stats.packets == 14
    (flow,) = flows
    assert (flow.protocol, flow.local_ip, flow.local_port) == (6, "141.142.228.5", 59856)
    assert (flow.remote_ip, flow.remote_port) == ("192.150.187.43", 80)
    assert (flow.packets_out, flow.packets_in, flow.bytes_out, flow.bytes_in) == (7, 7, 512, 5379)
    assert flow.first_seen == datetime(2013, 3, 7, 21, 42, 6, 869344, tzinfo=UTC)


def test_sll_ipv6(corpus: Path) -> None:
    flows, _ = read_flows([corpus / "pcap/pcapplusplus/SllPacket.pcap"], ["2404:138::/32"])
    flow = _find(flows, "2404:6800:8004::68", 80)
    assert flow.bytes_in == 1280 and flow.packets_in == 1


def test_sll2_icmp_and_arp(corpus: Path) -> None:
    flows, stats = read_flows([corpus / "pcap/zeek/linux_dlt_sll2.pcap"], [])
    assert stats.packets == 6
    assert stats.not_ip == 2  # the ARP frames, counted
    assert {(f.protocol, f.packets) for f in flows} == {(1, 2), (58, 2)}


def test_null_loopback_ipv4_and_ipv6(corpus: Path) -> None:
    flows, stats = read_flows([corpus / "pcap/pcapplusplus/null_loopback.pcap"], [])
    assert stats.packets == 3
    assert {f.remote_ip for f in flows} >= {"::1", "172.16.1.255"}


def test_null_loopback_ipv6_af30(corpus: Path) -> None:
    flows, _ = read_flows([corpus / "pcap/tcpdump/quic_handshake.pcap"], [])
    (flow,) = flows
    assert (flow.protocol, flow.packets, flow.remote_port) == (17, 18, 443)


def test_raw_ip_mixed(corpus: Path) -> None:
    flows, stats = read_flows([corpus / "pcap/pcapplusplus/raw_ip.pcap"], ["10.0.0.0/24"])
    assert stats.packets == 100
    assert sum(f.packets for f in flows) == 100
    assert _find(flows, "82.102.152.19", 80).bytes_out == 3242
    assert {f.remote_ip for f in flows} >= {"2001:618:1:8000::5", "23.43.75.27"}


@pytest.mark.parametrize(
    ("name", "remote"),
    [("tcpdump/LINKTYPE_IPV4.pcap", "9.9.9.9"), ("tcpdump/LINKTYPE_IPV6.pcap", "2620:fe::9")],
)
def test_linktype_ipv4_ipv6(corpus: Path, name: str, remote: str) -> None:
    flows, _ = read_flows([corpus / "pcap" / name], [])
    assert _find(flows, remote, 53).packets_out == 1


def test_ipv4_fragments_follow_the_first(corpus: Path) -> None:
    flows, stats = read_flows([corpus / "pcap/pcapplusplus/ip4_fragments.pcap"], ["10.0.0.0/8"])
    assert stats.packets == 53
    assert stats.fragments_unmatched == 0
    (flow,) = flows  # every fragment of the NFS datagrams lands in the one UDP flow
    assert (flow.local_port, flow.remote_port, flow.packets) == (789, 2049, 53)
    flows, _ = read_flows([corpus / "pcap/zeek/ipv4-fragmented-1.pcap"], [])
    (flow,) = flows
    assert (flow.local_port, flow.remote_port, flow.packets, flow.bytes_out) == (123, 137, 3, 498)


def test_ipv6_fragments(corpus: Path) -> None:
    flows, stats = read_flows([corpus / "pcap/pcapplusplus/ip6_fragments.pcap"], [])
    assert stats.packets == 36 and stats.fragments_unmatched == 0
    assert sum(f.packets for f in flows) == 36
    assert _find(flows, "ff02::fb", 5353).packets == 20
    # zeek's trace has one fragment whose first fragment is not in the file: port-0 flow, counted
    flows, stats = read_flows([corpus / "pcap/zeek/ipv6-fragmented-dns.pcap"], ["2001:470::/32"])
    assert stats.fragments_unmatched == 1
    assert sum(f.packets for f in flows) == 8
    stray = [f for f in flows if f.remote_port == 0]
    assert len(stray) == 1 and stray[0].packets_in == 1
    assert sum(f.packets for f in flows if f.remote_port == 53) == 7


def test_mpls_and_vlan_mix(corpus: Path) -> None:
    flows, stats = read_flows([corpus / "pcap/zeek/mixed-vlan-mpls.pcap"], [])
    assert stats.packets == 47 and stats.not_ip == 0
    assert sum(f.packets for f in flows) == 47
    assert _find(flows, "10.34.0.1", 23).packets == 11  # the MPLS-labelled telnet packets


def test_pcapng_multi_interface_and_gzip(corpus: Path) -> None:
    flows, stats = read_flows(
        [
            corpus / "pcap/zeek/pcapng-multi-interface.pcapng",
            corpus / "pcap/scapy/http_head.pcapng.gz",
        ],
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
    )
    assert stats.files == 2 and stats.packets == 16
    dns = [f for f in flows if f.remote_ip == "1.1.1.1"]
    assert len(dns) == 3 and all(f.first_seen.year == 2026 for f in dns)
    assert _find(flows, "142.250.179.110", 80).packets == 10


def test_jumbogram_counts_captured_bytes(corpus: Path) -> None:
    flows, _ = read_flows([corpus / "pcap/tcpdump/bigtcp-ipv6-hbh.pcap"], [])
    (flow,) = flows
    assert flow.bytes_out == 80080


def test_malformed_headers_are_counted_and_kept(corpus: Path) -> None:
    flows, stats = read_flows([corpus / "pcap/tcpdump/ipv4_invalid_hdr_length.pcap"], [])
    assert stats.malformed == 1
    assert flows[0].remote_ip == "45.33.127.156" and flows[0].remote_port == 0


def test_unsupported_linktype_counted(corpus: Path) -> None:
    _, stats = read_flows([corpus / "pcap/tcpdump/LINKTYPE_PKTAP.pcap"], [])
    assert stats.packets == 1 and stats.unsupported_linktype == 1
    _, stats = read_flows([corpus / "pcap/pcapplusplus/microsecs_big_endian.pcap"], [])
    assert stats.packets == 13 and stats.unsupported_linktype == 13  # NETLINK carries no IP


def test_nflog(corpus: Path) -> None:
    flows, stats = read_flows([corpus / "pcap/tcpdump/nflog.pcap"], ["10.0.0.0/24"])
    assert stats.packets == 4 and stats.unsupported_linktype == 0 and stats.not_ip == 0
    assert {(f.remote_ip, f.remote_port, f.packets_in) for f in flows} == {("74.82.42.42", 53, 1)}
    assert sorted(f.bytes_in for f in flows) == [73, 77, 85, 89]
    flows, stats = read_flows([corpus / "pcap/zeek/nflog-http.pcap"], ["10.0.2.0/24"])
    (flow,) = flows
    assert (flow.local_ip, flow.remote_ip, flow.remote_port, flow.packets) == (
        "10.0.2.15",
        "93.184.216.34",
        80,
        13,
    )


def test_tunnels_are_judged_by_their_inner_flow(corpus: Path) -> None:
    pcap = corpus / "pcap"
    flows, stats = read_flows([pcap / "zeek/tunnels-4in6.pcap"], [])
    (flow,) = flows
    assert stats.tunnels == {"ipip": 1}
    assert (flow.protocol, flow.local_ip, flow.local_port) == (6, "70.55.213.211", 31337)
    assert (flow.remote_ip, flow.remote_port, flow.bytes_out) == ("192.88.99.1", 80, 40)
    flows, stats = read_flows([pcap / "zeek/tunnels-6in4.pcap"], [])
    (flow,) = flows
    assert stats.tunnels == {"ip6ip": 1}
    assert (flow.protocol, flow.local_ip, flow.remote_ip, flow.remote_port) == (
        17,
        "dead::beef",
        "cafe::babe",
        13000,
    )
    flows, stats = read_flows([pcap / "pcapplusplus/IPv4-encapsulated-IPv6.pcap"], [])
    assert stats.tunnels == {"ip6ip": 1}
    assert flows[0].local_ip == "2001:638:902:1:201:2ff:fee2:7596" and flows[0].local_port == 21
    # GRE: every packet of the trace is decapsulated; the ssh session is one inner flow
    flows, stats = read_flows([pcap / "zeek/tunnels-gre-sample.pcap"], ["172.28.2.0/24"])
    assert stats.packets == 40 and stats.tunnels == {"gre": 40}
    assert sum(f.packets for f in flows) == 40
    ssh = _find(flows, "66.59.111.190", 40264)
    assert (ssh.local_ip, ssh.local_port, ssh.packets) == ("172.28.2.3", 22, 22)
    assert not [f for f in flows if f.protocol == 47]
    # VXLAN: inner ICMP decapsulated; the two frames carrying ARP stay on the outer UDP flow
    flows, stats = read_flows([pcap / "zeek/tunnels-vxlan.pcap"], ["10.0.0.0/24"])
    assert stats.tunnels == {"vxlan": 8}
    assert {(f.protocol, f.remote_ip, f.packets) for f in flows} == {
        (1, "10.0.0.2", 8),
        (17, "192.168.56.12", 1),
        (17, "192.168.56.11", 1),
    }
    flows, stats = read_flows([pcap / "pcapplusplus/Vxlan1.pcap"], [])
    assert stats.tunnels == {"vxlan": 1} and flows[0].protocol == 1
    # Teredo is attributed to the outer IPv4/UDP flow
    flows, stats = read_flows([pcap / "zeek/tunnels-Teredo.pcap"], [])
    assert stats.tunnels == {} and sum(f.packets for f in flows) == 78


def test_damaged_inner_packet_stays_on_the_outer_flow(tmp_path: Path) -> None:
    outer = IP(src="10.20.0.1", dst="81.2.69.142") / GRE() / b"\x45\x00"  # inner header cut
    path = tmp_path / "g.pcap"
    wrpcap(str(path), [Ether() / outer])
    flows, stats = read_flows([path], ["10.20.0.0/24"])
    (flow,) = flows
    assert (flow.protocol, flow.remote_ip) == (47, "81.2.69.142")
    assert stats.tunnels == {} and stats.malformed == 0


def test_direction_and_inbound_client(tmp_path: Path) -> None:
    """A foreign client downloading from the registry: the flow's remote is the client."""
    registry, client = "10.20.0.5", "81.2.69.142"
    pkts = [
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=client, dst=registry)
        / TCP(sport=40000, dport=443)
        / b"GET",
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=registry, dst=client)
        / TCP(sport=443, dport=40000)
        / (b"x" * 1000),
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / Dot1Q(vlan=7)
        / IP(src=registry, dst=client)
        / TCP(sport=443, dport=40000),
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IPv6(src="fd00:20::5", dst="2001:218::1")
        / UDP(sport=5000, dport=53),
    ]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i
    path = tmp_path / "t.pcap"
    wrpcap(str(path), pkts)
    flows, stats = read_flows([path], ["10.20.0.0/24", "fd00:20::/64"])
    assert stats.packets == 4
    tcp = _find(flows, client, 40000)
    assert (tcp.local_ip, tcp.local_port) == (registry, 443)
    assert (tcp.packets_in, tcp.packets_out) == (1, 2)
    assert tcp.bytes_out == 1040 + 40 and tcp.bytes_in == 43
    assert _find(flows, "2001:218::1", 53).bytes_out == 48


def test_scapy_fragments_in_tmp(tmp_path: Path) -> None:
    big = (
        IP(src="10.20.0.5", dst="175.16.199.1", id=77) / UDP(sport=1234, dport=9999) / (b"z" * 3000)
    )
    frags = fragment(big, fragsize=1000)
    stray = IP(src="10.20.0.5", dst="175.16.199.1", id=78, frag=100, proto=17) / (b"q" * 8)
    path = tmp_path / "f.pcap"
    wrpcap(
        str(path),
        [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / f for f in frags]
        + [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / stray],
    )
    flows, stats = read_flows([path], ["10.20.0.0/24"])
    assert stats.fragments_unmatched == 1
    assert _find(flows, "175.16.199.1", 9999).packets_out == len(frags)
    assert _find(flows, "175.16.199.1", 0).packets_out == 1
    assert _find(flows, "175.16.199.1", 9999).bytes_out == sum(len(f) for f in frags)


def test_table_timeouts_and_bound() -> None:
    table = FlowTable(["10.0.0.0/8"], max_flows=2)
    a, b, c = bytes([10, 0, 0, 1]), bytes([8, 8, 8, 8]), bytes([9, 9, 9, 9])
    s = 1_000_000_000
    table.add(0, (17, a, b, 1000, 53, 60))
    table.add(1 * s, (17, b, a, 53, 1000, 80))
    table.add(2 * s, (17, a, c, 1001, 53, 60))
    table.add(3 * s, (6, a, c, 1002, 443, 60))  # third flow: the oldest is closed early
    assert table.evicted == 1 and len(table) == 2
    closed = table.expire(3 * s, idle_timeout_s=30, active_timeout_s=300)
    assert [f.remote_ip for f in closed] == ["8.8.8.8"]
    assert closed[0].packets_out == 1 and closed[0].packets_in == 1
    assert table.expire(40 * s, idle_timeout_s=30, active_timeout_s=300) != []
    assert len(table) == 0 and table.drain() == []
    table.add(0, (6, a, c, 1, 2, 40))
    table.add(400 * s, (6, a, c, 1, 2, 40))
    (long,) = table.expire(400 * s, idle_timeout_s=30, active_timeout_s=300)
    assert long.packets == 2


def test_neither_local_prefers_private_side() -> None:
    table = FlowTable([])
    pub, priv = bytes([81, 2, 69, 142]), bytes([192, 168, 1, 2])
    table.add(0, (6, pub, priv, 443, 5555, 100))
    (flow,) = table.drain()
    assert (flow.local_ip, flow.remote_ip, flow.bytes_in) == ("192.168.1.2", "81.2.69.142", 100)


def test_decoder_rejects_short_frames() -> None:
    d = Decoder()
    assert d.decode(1, b"\x00" * 10) is None
    assert d.decode(1, b"\x00" * 12 + b"\x08\x00" + b"\x45") is None
    assert d.malformed == 2
    assert d.decode(999, b"") is None and d.unsupported_linktype == 1
