"""DNS correlation: names from the answers in a capture, on the flows that follow them."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

from sentinel.flows import CaptureReader, Decoder, read_flows
from sentinel.flows.dns import (
    DnsCorrelator,
    DnsOptions,
    dns_messages,
    observe_dns,
    parse_response,
)
from sentinel.records import Verdict

CLIENT = "10.20.0.5"
RESOLVER = "10.20.0.53"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _engines(paths: list[Path], local: list[str], **kw: object) -> tuple[list, object]:  # type: ignore[type-arg]
    """Read on both engines, check they agree, return the result."""
    vector = read_flows(paths, local, engine="vector", **kw)  # type: ignore[arg-type]
    scalar = read_flows(paths, local, engine="scalar", **kw)  # type: ignore[arg-type]
    assert vector == scalar
    return vector


def _answer(
    name: str,
    addresses: list[str],
    *,
    ttl: int = 60,
    cnames: tuple[str, ...] = (),
    client: str = CLIENT,
    resolver: str = RESOLVER,
    tcp: bool = False,
) -> Packet:
    records = []
    owner = name
    for target in cnames:
        records.append(DNSRR(rrname=owner, type="CNAME", ttl=ttl, rdata=target))
        owner = target
    for address in addresses:
        kind = "AAAA" if ":" in address else "A"
        records.append(DNSRR(rrname=owner, type=kind, ttl=ttl, rdata=address))
    msg = DNS(id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname=name), an=records)
    ip = IPv6(src=resolver, dst=client) if ":" in client else IP(src=resolver, dst=client)
    if tcp:
        wire = bytes(msg)
        return (
            ETH
            / ip
            / TCP(sport=53, dport=40000, flags="PA")
            / Raw(len(wire).to_bytes(2, "big") + wire)
        )
    return ETH / ip / UDP(sport=53, dport=40000) / msg


def _syn(remote: str, sport: int, client: str = CLIENT) -> Packet:
    ip = IPv6(src=client, dst=remote) if ":" in client else IP(src=client, dst=remote)
    return ETH / ip / TCP(sport=sport, dport=443, flags="S")


def _write(path: Path, packets: list[tuple[float, Packet | bytes]]) -> Path:
    with PcapWriter(str(path), linktype=1, sync=False) as writer:
        writer.write_header(None)
        for ts, pkt in packets:
            wire = bytes(pkt)
            sec = int(ts)
            writer.write_packet(
                wire, sec=sec, usec=round((ts - sec) * 1e6), caplen=len(wire), wirelen=len(wire)
            )
    return path


def _names(flows: list, remote: str) -> list[str]:  # type: ignore[type-arg]
    (flow,) = [f for f in flows if f.remote_ip == remote]
    return [n.name for n in flow.remote_names]


# -- real captures ---------------------------------------------------------------------------


def test_raw_ip_capture_names_its_http_flows_with_their_cname_chains(corpus: Path) -> None:
    flows, stats = _engines([corpus / "pcap/pcapplusplus/raw_ip.pcap"], [])
    by_remote = {f.remote_ip: f for f in flows}
    crl = by_remote["82.102.152.19"].remote_names
    assert [(n.name, n.cnames, n.ttl, n.client, n.resolver) for n in crl] == [
        (
            "crl.microsoft.com",
            ("crl.www.ms.akadns.net", "a1363.dscg.akamai.net"),
            5,  # the smallest TTL along the chain (tshark: 2737, 166, 5)
            "10.0.0.1",
            "10.0.0.138",
        )
    ]
    assert crl[0].answered_at <= by_remote["82.102.152.19"].first_seen
    ynet = by_remote["23.221.143.117"]
    assert ynet.remote_host == "www.ynet.co.il"
    assert ynet.remote_names[0].cnames == ("www.ynet.co.il.edgekey.net", "e12476.b.akamaiedge.net")
    # the resolver's own address was never answered: no name
    assert by_remote["10.0.0.138"].remote_names == ()
    assert stats.dns == {"responses": 3, "addresses": 4}


def test_teredo_capture_names_the_http_server_and_counts_the_malformed_answer(
    corpus: Path,
) -> None:
    flows, stats = _engines([corpus / "pcap/zeek/tunnels-Teredo.pcap"], [])
    assert _names(flows, "67.228.110.120") == ["www.wireshark.org"]
    # frame 61 carries bytes after the message (tshark: "Extraneous data"): counted
    assert stats.dns["malformed"] == 1 and stats.dns["responses"] == 4


def test_dns_over_tcp_and_fragmented_answers(corpus: Path) -> None:
    _flows, stats = _engines([corpus / "pcap/tcpdump/dns_tcp.pcap"], [])
    # one response in one segment: www.tcpdump.org's two A records (AAAA are additional data)
    assert stats.dns == {"responses": 1, "addresses": 2}
    _flows, stats = _engines([corpus / "pcap/zeek/ipv6-fragmented-dns.pcap"], [])
    # IPv6 fragments are not reassembled: each fragment of the big answer is counted
    assert stats.dns == {"responses": 1, "truncated": 3}


def test_every_answer_tshark_sees_on_port_53_is_read(corpus: Path) -> None:
    path = corpus / "pcap/pcapplusplus/DnsPackets.pcap"
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "udp.srcport==53 && dns.flags.response==1",
         "-T", "fields", "-e", "dns.a", "-e", "dns.aaaa"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    expected = {a for line in out.splitlines() for a in line.replace("\t", ",").split(",") if a}
    responses = len(out.splitlines())
    dns = DnsCorrelator(DnsOptions(max_names=1000))
    decoder = Decoder()
    with CaptureReader(path) as reader:
        for ts, linktype, data, _orig in reader:
            summary = decoder.decode(linktype, data)
            if summary is not None:
                observe_dns(dns, decoder, ts, summary)
    assert dns.counts == {"responses": responses, "addresses": 859}
    assert set(dns._map) == expected
    # mDNS (5353) and LLMNR (5355) answers in the same capture are not used
    assert "224.0.0.251" not in dns._map and len(expected) == 232


def test_the_default_bounds_keep_eight_names_per_address(corpus: Path) -> None:
    _flows, stats = _engines([corpus / "pcap/pcapplusplus/DnsPackets.pcap"], [])
    # 198.252.206.16 is given for 53 stackexchange names, 212.199.205.24x for 12 Google names
    assert stats.dns["evicted"] == 141
    dns = DnsCorrelator(DnsOptions(max_entries=10))
    for i in range(30):
        dns.observe(T0 * 10**9, 17, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", *_udp(i))
    assert len(dns) == 10 and dns.counts["evicted"] == 20


def _udp(i: int) -> tuple[bytes, int, int]:
    seg = bytes(UDP(sport=53, dport=4000) / DNS(qr=1, qd=DNSQR(qname=f"h{i}.example"),
                an=DNSRR(rrname=f"h{i}.example", rdata=f"192.0.2.{i}")))  # fmt: skip
    return seg, 0, len(seg)


# -- matching rules on captures written here -------------------------------------------------


def test_time_client_and_hold_rules(tmp_path: Path) -> None:
    opts = DnsOptions(min_hold_s=600)
    packets: list[tuple[float, Packet | bytes]] = [
        (T0 + 0.5, _syn("198.51.100.7", 1000)),  # before any answer: no name
        (T0 + 1, _answer("early.example", ["198.51.100.7"], ttl=30)),
        (T0 + 2, _syn("198.51.100.7", 1001)),  # within the TTL
        (T0 + 500, _syn("198.51.100.7", 1002)),  # TTL expired, minimum hold still covers it
        (T0 + 700, _syn("198.51.100.7", 1003)),  # past the minimum hold: no name
        # another client asked for another name for the same address
        (T0 + 800, _answer("other.example", ["198.51.100.9"], client="10.20.0.6")),
        (T0 + 801, _answer("mine.example", ["198.51.100.9"])),
        (T0 + 802, _syn("198.51.100.9", 1004)),  # ours only
        (T0 + 803, _syn("198.51.100.9", 1005, client="10.20.0.7")),  # nobody's: any client's
        # a long TTL outlives the minimum hold; IPv6 and a CNAME chain over TCP
        (T0 + 900, _answer("long.example", ["198.51.100.11"], ttl=86400)),
        (T0 + 5000, _syn("198.51.100.11", 1006)),
        (
            T0 + 901,
            _answer(
                "v6.example",
                ["2001:db8::5"],
                cnames=("cdn.example",),
                client="fd00:20::5",
                resolver="fd00:20::53",
                tcp=True,
            ),
        ),
        (T0 + 902, _syn("2001:db8::5", 1007, client="fd00:20::5")),
    ]
    flows, stats = _engines(
        [_write(tmp_path / "t.pcap", sorted(packets, key=lambda p: p[0]))],
        ["10.20.0.0/24", "fd00:20::/64"],
        dns=opts,
    )
    by_port = {f.local_port: [n.name for n in f.remote_names] for f in flows}
    assert by_port[1000] == []
    assert by_port[1001] == ["early.example"]
    assert by_port[1002] == ["early.example"]
    assert by_port[1003] == []
    assert by_port[1004] == ["mine.example"]
    assert by_port[1005] == ["mine.example", "other.example"]  # newest answer first
    assert by_port[1006] == ["long.example"]
    (v6,) = [f for f in flows if f.local_port == 1007]
    assert v6.remote_names[0].cnames == ("cdn.example",)
    assert v6.remote_names[0].resolver == "fd00:20::53"
    assert stats.dns == {"responses": 5, "addresses": 5}
    # off: no names, no counters
    flows, stats = _engines([tmp_path / "t.pcap"], ["10.20.0.0/24"], dns=None)
    assert not any(f.remote_names for f in flows) and stats.dns == {}


def test_a_repeated_answer_extends_one_entry(tmp_path: Path) -> None:
    packets: list[tuple[float, Packet | bytes]] = [
        (T0 + k * 50, _answer("again.example", ["198.51.100.20"], ttl=60)) for k in range(10)
    ]
    packets.append((T0 + 1000, _syn("198.51.100.20", 2000)))
    flows, stats = _engines([_write(tmp_path / "r.pcap", packets)], [], dns=DnsOptions(0, 600))
    (flow,) = [f for f in flows if f.local_port == 2000]
    # answers every 50 s with TTL 60 s: one run from the first answer to 450 s + 60 s...
    assert flow.remote_names == ()
    flows, stats = _engines([tmp_path / "r.pcap"], [], dns=DnsOptions(600, 600))
    (flow,) = [f for f in flows if f.local_port == 2000]
    # ...and with a 600 s hold the run reaches 1000 s; answered_at is the run's first answer
    assert [n.answered_at for n in flow.remote_names] == [datetime.fromtimestamp(T0, UTC)]
    assert stats.dns["addresses"] == 10


def test_damaged_and_foreign_payloads_are_counted(tmp_path: Path) -> None:
    good = _answer("ok.example", ["198.51.100.30"])
    wire = bytes(good)
    packets: list[tuple[float, Packet | bytes]] = [
        (T0 + 1, good),
        (T0 + 2, wire[:-6]),  # cut by a snap length: the UDP length says more
        # not a response by its header (opcode 15): ignored without dnspython
        (T0 + 3, ETH / IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53) / Raw(b"\xff" * 40)),
        # a response header, then bytes dnspython rejects
        (
            T0 + 3.5,
            ETH
            / IP(src=RESOLVER, dst=CLIENT)
            / UDP(sport=53)
            / Raw(bytes.fromhex("000181800001000000000000") + b"\xff" * 20),
        ),
        (T0 + 4, ETH / IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53) / DNS(qr=0)),  # a query
        (T0 + 5, ETH / IP(src=RESOLVER, dst=CLIENT) / TCP(sport=53) / Raw(b"\x00\x30abc")),
    ]
    _flows, stats = _engines([_write(tmp_path / "d.pcap", packets)], [])
    assert stats.dns == {
        "responses": 1,
        "addresses": 1,
        "truncated": 2,
        "malformed": 1,
        "ignored": 2,
    }


def test_dns_messages_bounds() -> None:
    seg = bytes(UDP(sport=53, dport=9, len=8 + 3) / Raw(b"abc"))
    assert dns_messages(17, seg, 0, len(seg)) == ([b"abc"], None)
    assert dns_messages(17, seg[:5], 0, 5) == ([], "truncated")
    bad = bytearray(seg)
    bad[4:6] = b"\x00\x03"
    assert dns_messages(17, bytes(bad), 0, len(bad)) == ([], "malformed")
    one, two = b"m" * 12, b"n" * 13
    tcp = bytes(TCP(sport=53) / Raw(b"\x00\x0c" + one + b"\x00\x0d" + two))
    assert dns_messages(6, tcp, 0, len(tcp)) == ([one, two], None)
    assert dns_messages(6, tcp, 0, len(tcp) - 1) == ([one], "truncated")
    # shorter than a DNS header: the rest of the segment is not walked 2 bytes at a time
    zeros = bytes(TCP(sport=53) / Raw(bytes(1000)))
    assert dns_messages(6, zeros, 0, len(zeros)) == ([], "malformed")
    ack = bytes(TCP(sport=53, flags="A"))
    assert dns_messages(6, ack, 0, len(ack)) == ([], None)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    dns = DnsCorrelator()
    seg = bytes(UDP(sport=53, dport=9) / Raw(payload))
    dns.observe(T0 * 10**9, 17, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", seg, 0, len(seg))
    tcp = bytes(TCP(sport=53) / Raw(payload))
    dns.observe(T0 * 10**9, 6, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", tcp, 0, len(tcp))
    assert sum(dns.counts.values()) >= 1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_damaged_real_answers_never_raise(cut: int, junk: bytes) -> None:
    wire = bytearray(
        bytes(
            DNS(qr=1, qd=DNSQR(qname="a.example"),
                an=[DNSRR(rrname="a.example", type="CNAME", rdata="b.example"),
                    DNSRR(rrname="b.example", rdata="192.0.2.1")])
        )
    )  # fmt: skip
    pos = cut % len(wire)
    wire[pos : pos + len(junk)] = junk
    try:
        parse_response(bytes(wire))
    except Exception as exc:  # what observe counts as malformed
        assert not isinstance(exc, KeyboardInterrupt | SystemExit)


def test_cname_loops_and_unsolicited_records_are_not_followed() -> None:
    loop = DNS(qr=1, qd=DNSQR(qname="a.example"),
               an=[DNSRR(rrname="a.example", type="CNAME", rdata="b.example"),
                   DNSRR(rrname="b.example", type="CNAME", rdata="a.example"),
                   DNSRR(rrname="evil.example", rdata="192.0.2.66")])  # fmt: skip
    assert parse_response(bytes(loop)) == []
    chain = DNS(qr=1, qd=DNSQR(qname="a.example"),
                an=[DNSRR(rrname="a.example", type="CNAME", rdata="b.example", ttl=300),
                    DNSRR(rrname="b.example", rdata="192.0.2.7", ttl=20),
                    DNSRR(rrname="a.example", rdata="192.0.2.66")])  # fmt: skip
    (answer,) = parse_response(bytes(chain)) or []
    assert (answer.address, answer.name, answer.cnames, answer.ttl) == (
        "192.0.2.7", "a.example", ("b.example",), 20,
    )  # fmt: skip


def test_names_go_into_the_verdict_json_only_when_present(corpus: Path) -> None:
    flows, _stats = _engines([corpus / "pcap/pcapplusplus/raw_ip.pcap"], [])
    named = next(f for f in flows if f.remote_names)
    plain = next(f for f in flows if not f.remote_names)
    body = Verdict(named, "violation", "foreign country", "IL", "jurisdiction").to_json()
    assert body["remote_names"][0]["name"] in {"crl.microsoft.com", "www.ynet.co.il"}
    assert set(body["remote_names"][0]) == {
        "name", "cnames", "answered_at", "ttl", "client", "resolver",
    }  # fmt: skip
    rfc8785.dumps(body)  # canonical: no floats
    assert "remote_names" not in Verdict(plain, "allowed", "internal", None, "x").to_json()
    json.dumps(body)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="hold"):
        DnsOptions(min_hold_s=10, max_hold_s=5)
    with pytest.raises(ValueError, match="bounds"):
        DnsOptions(max_names=0)
