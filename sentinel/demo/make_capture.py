"""Build the demo's packet capture: one registry host's traffic on 2026-11-29 (UTC).

Run ``python -m sentinel.demo.make_capture OUT.pcap`` to rebuild
``sentinel/demo/data/registry-egress.pcap``; the output is byte-for-byte deterministic (a test
checks that the shipped file matches). The registry host is 10.20.0.5 / fd00:20::5 inside the
local networks of ``rules/egress-policy.yaml``. Remote addresses are real public addresses whose
DB-IP City Lite (2023-04) country is given in ``SCENARIO``. Packets are cut to ``SNAPLEN``
bytes as ``tcpdump -s 96`` would; their original lengths are kept in the records.

Before each connection it opens, the registry host looks the remote name up at its local
resolver (``RESOLVER``; ``LOOKUPS``: the name, its CNAME chain and TTL), so the report can
say which host each flow went to. Those DNS exchanges are kept whole, as a capture with a
larger snap length for port 53 would keep them (a cut answer cannot be read); the DNS
messages are made with dnspython (fixed ids, no EDNS), so the bytes are deterministic.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.rdatatype
import dns.rrset
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

REGISTRY_V4 = "10.20.0.5"
REGISTRY_V6 = "fd00:20::5"
#: 2026-11-29T19:00:00Z, the hour the demo's registry logs were captured
BASE_TS = 1_795_978_800.0
#: bytes kept per packet, like ``tcpdump -s 96``: headers only, original lengths recorded
SNAPLEN = 96


@dataclass(frozen=True)
class Conversation:
    """One TCP or UDP conversation; ``remote_initiates`` is a client downloading from us."""

    remote: str
    remote_port: int
    local_port: int
    proto: str  # "tcp" | "udp"
    bytes_out: int
    bytes_in: int
    start: float  # seconds after BASE_TS
    remote_initiates: bool
    note: str


SCENARIO = (
    Conversation(
        "46.4.1.1", 51812, 443, "tcp", 600_000, 4_000, 10, True, "DE client pulls a model"
    ),
    Conversation("193.0.14.129", 49200, 443, "tcp", 250_000, 3_000, 40, True, "NL mirror pulls"),
    Conversation(
        "52.219.170.1",
        443,
        40100,
        "tcp",
        900_000,
        6_000,
        70,
        False,
        "replication to object storage in Frankfurt (DE)",
    ),
    Conversation(
        "2a01:4f8::1", 443, 40200, "tcp", 120_000, 2_000, 100, False, "backup over IPv6 to DE"
    ),
    Conversation(
        "203.0.113.50",
        443,
        40300,
        "tcp",
        50_000,
        1_000,
        130,
        False,
        "in-country provider range (allow_networks)",
    ),
    Conversation("10.20.0.7", 40400, 443, "tcp", 80_000, 2_000, 150, True, "internal CI runner"),
    Conversation(
        "192.0.2.10",
        443,
        40500,
        "tcp",
        30_000,
        1_000,
        170,
        False,
        "licence server under waiver W-1",
    ),
    Conversation(
        "52.95.110.1",
        50123,
        443,
        "tcp",
        700_000,
        5_000,
        200,
        True,
        "US client downloads a model: violation",
    ),
    Conversation(
        "3.5.140.1",
        443,
        40600,
        "tcp",
        400_000,
        3_000,
        240,
        False,
        "upload to object storage in KR: violation",
    ),
    Conversation(
        "9.9.9.9",
        443,
        40700,
        "tcp",
        20_000,
        2_000,
        280,
        False,
        "CH endpoint whose waiver W-0 expired: violation",
    ),
    Conversation(
        "114.114.114.114",
        53,
        40800,
        "udp",
        200,
        400,
        300,
        False,
        "DNS to a resolver in CN: violation",
    ),
)

#: the registry host's DNS resolver (inside the local networks: its flows are internal)
RESOLVER = "10.20.0.53"


@dataclass(frozen=True)
class Lookup:
    """The registry host asks ``RESOLVER`` for ``name`` just before connecting to ``remote``:
    the answer follows ``cnames`` to the address record; ``ttl`` seconds for every record."""

    remote: str
    name: str
    cnames: tuple[str, ...]
    ttl: int


LOOKUPS = (
    Lookup(
        "52.219.170.1",
        "s3.eu-central-1.amazonaws.com",
        ("s3-r-w.eu-central-1.amazonaws.com",),
        5,
    ),
    # asked over IPv4 for the IPv6 backup target: named although the flow's client differs
    Lookup("2a01:4f8::1", "backup.registry-dr.example", (), 3600),
    Lookup("203.0.113.50", "mirror.provider.example", (), 300),
    Lookup("192.0.2.10", "licence.vendor.example", (), 300),
    Lookup(
        "3.5.140.1",
        "s3.ap-northeast-2.amazonaws.com",
        ("s3-r-w.ap-northeast-2.amazonaws.com",),
        5,
    ),
    Lookup("9.9.9.9", "dns.quad9.net", (), 43200),
)

MSS = 1400


def _ip(src: str, dst: str) -> Packet:
    return IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst, id=0)


def _packets(conv: Conversation) -> list[tuple[float, Packet]]:
    local = REGISTRY_V6 if ":" in conv.remote else REGISTRY_V4
    eth_out = Ether(src="02:00:00:00:00:05", dst="02:00:00:00:00:01")
    eth_in = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:05")
    out_hdr = _ip(local, conv.remote)
    in_hdr = _ip(conv.remote, local)
    t = BASE_TS + conv.start
    pkts: list[tuple[float, Packet]] = []

    def emit(outbound: bool, payload: int, flags: str = "PA") -> None:
        nonlocal t
        t += 0.002
        hdr = out_hdr if outbound else in_hdr
        sport, dport = (
            (conv.local_port, conv.remote_port) if outbound else (conv.remote_port, conv.local_port)
        )
        l4: Packet
        if conv.proto == "tcp":
            l4 = TCP(sport=sport, dport=dport, flags=flags, seq=0, ack=0, window=65535)
        else:
            l4 = UDP(sport=sport, dport=dport)
        frame = (eth_out if outbound else eth_in) / hdr.copy() / l4
        if payload:
            frame = frame / Raw(bytes(payload))
        pkts.append((t, frame))

    if conv.proto == "tcp":
        first_out = not conv.remote_initiates
        emit(first_out, 0, "S")
        emit(not first_out, 0, "SA")
        emit(first_out, 0, "A")
    for total, outbound in ((conv.bytes_in, False), (conv.bytes_out, True)):
        while total > 0:
            size = min(MSS, total)
            emit(outbound, size)
            total -= size
    if conv.proto == "tcp":
        emit(True, 0, "FA")
        emit(False, 0, "FA")
    return pkts


def _lookup_packets(index: int, lookup: Lookup) -> list[tuple[float, Packet]]:
    """Query and answer, 50 ms and 30 ms before the conversation with ``lookup.remote``."""
    (conv,) = (c for c in SCENARIO if c.remote == lookup.remote)
    rdtype = dns.rdatatype.AAAA if ":" in lookup.remote else dns.rdatatype.A
    query = dns.message.make_query(lookup.name, rdtype, use_edns=False)
    query.id = 0x5E00 + index
    answer = dns.message.make_response(query)
    owner = lookup.name
    for target in lookup.cnames:
        answer.answer.append(
            dns.rrset.from_text(owner + ".", lookup.ttl, "IN", "CNAME", target + ".")
        )
        owner = target
    answer.answer.append(dns.rrset.from_text(owner + ".", lookup.ttl, "IN", rdtype, lookup.remote))
    port = 53_000 + index
    eth_out = Ether(src="02:00:00:00:00:05", dst="02:00:00:00:00:01")
    eth_in = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:05")
    ask = eth_out / IP(src=REGISTRY_V4, dst=RESOLVER, id=0) / UDP(sport=port, dport=53)
    reply = eth_in / IP(src=RESOLVER, dst=REGISTRY_V4, id=0) / UDP(sport=53, dport=port)
    t = BASE_TS + conv.start
    return [
        (t - 0.05, ask / Raw(query.to_wire())),
        (t - 0.03, reply / Raw(answer.to_wire())),
    ]


def build(out: Path) -> int:
    """Write the capture to ``out``; returns the number of packets written."""
    packets = [(ts, frame, True) for conv in SCENARIO for ts, frame in _packets(conv)]
    for index, lookup in enumerate(LOOKUPS):
        packets += [(ts, frame, False) for ts, frame in _lookup_packets(index, lookup)]
    packets.sort(key=lambda tp: tp[0])
    with PcapWriter(str(out), linktype=1, snaplen=65535, sync=False) as writer:
        writer.write_header(None)
        for ts, frame, cut in packets:
            wire = bytes(frame)
            kept = wire[:SNAPLEN] if cut else wire
            sec = int(ts)
            usec = round((ts - sec) * 1_000_000)
            writer.write_packet(kept, sec=sec, usec=usec, caplen=len(kept), wirelen=len(wire))
    return len(packets)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("registry-egress.pcap")
    print(f"{build(target)} packets written to {target}")
