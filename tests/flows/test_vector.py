"""The vectorized path (numpy) gives exactly the scalar path's flows and counters."""

from __future__ import annotations

import gzip
import ipaddress
import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from sentinel.flows import read_flows
from sentinel.flows import vector as vec

LOCALS = ([], ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"], ["10.20.0.0/24", "fd00:20::/64"])


def _captures(corpus: Path) -> list[Path]:
    return sorted(p for p in (corpus / "pcap").rglob("*") if ".pcap" in p.name)


def _both(paths: list[Path], local: list[str], **kw: int) -> None:
    vector = read_flows(paths, local, engine="vector", **kw)
    scalar = read_flows(paths, local, engine="scalar", **kw)
    assert vector[1] == scalar[1]
    assert vector[0] == scalar[0]


def test_every_corpus_capture_agrees(corpus: Path) -> None:
    files = _captures(corpus)
    assert len(files) > 100
    compared = 0
    for path in files:
        if path.name in {"bad-magic.pcap", "truncated-global-header.pcap", "zero-bytes.pcap"}:
            continue
        if path.name.endswith(".zst"):
            continue
        for local in LOCALS[:2]:
            _both([path], local)
            compared += 1
    assert compared > 200


def test_names_agree_on_every_capture_with_dns(corpus: Path) -> None:
    """The comparison above covers ``remote_names`` and ``stats.dns``; it is not vacuous."""
    named = 0
    counted: dict[str, int] = {}
    for path in _captures(corpus):
        if path.name.endswith(".zst") or path.parent.name == "derived":
            continue
        flows, stats = read_flows([path], LOCALS[1], engine="vector")
        named += sum(1 for f in flows if f.remote_names)
        for kind, n in stats.dns.items():
            counted[kind] = counted.get(kind, 0) + n
    assert named >= 3
    assert counted.keys() >= {"responses", "addresses", "malformed", "truncated", "evicted"}


def test_all_corpus_captures_in_one_read_agree(corpus: Path) -> None:
    files = [
        p for p in _captures(corpus) if not p.name.endswith(".zst") and p.parent.name != "derived"
    ]
    _both(files, LOCALS[1])


def _frames(seed: int, count: int) -> list[bytes]:
    """Mixed traffic: every link-layer/IP/tunnel shape the decoders know, plus damage."""
    rnd = random.Random(seed)
    local4 = [f"10.20.0.{i}" for i in range(1, 6)] + ["192.168.1.9"]
    remote4 = ["81.2.69.142", "175.16.199.1", "89.160.20.112", "8.8.8.8", "10.9.9.9"]
    local6 = ["fd00:20::5", "fd00:20::6", "fe80::1"]
    remote6 = ["2001:218::1", "2a02:cf40::1", "2001:db8::7", "::ffff:81.2.69.142", "ff02::fb"]
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    out: list[object] = []
    names = ["a.example", "b.example", "c.example"]
    while len(out) < count:
        kind = rnd.randrange(19)
        sport, dport = rnd.choice([1234, 40000, 53, 443]), rnd.choice([443, 53, 80, 4789, 9999])
        payload = b"x" * rnd.choice([0, 10, 300, 1200])
        l4 = rnd.choice([TCP(sport=sport, dport=dport), UDP(sport=sport, dport=dport), ICMP()])
        a4, b4 = rnd.choice(local4), rnd.choice(remote4)
        a6, b6 = rnd.choice(local6), rnd.choice(remote6)
        if rnd.random() < 0.5:
            a4, b4 = b4, a4
            a6, b6 = b6, a6
        ip4 = IP(src=a4, dst=b4, id=rnd.randrange(65536))
        ip6 = IPv6(src=a6, dst=b6)
        l6 = l4 if not isinstance(l4, ICMP) else UDP(sport=sport, dport=dport)
        if kind <= 4:
            out.append(eth / ip4 / l4 / payload)
        elif kind <= 7:
            out.append(eth / ip6 / l6 / payload)
        elif kind == 8:
            out.append(eth / Dot1Q(vlan=7) / rnd.choice([ip4 / l4, ip6 / l6]) / payload)
        elif kind == 9:
            out.append(eth / Dot1AD(vlan=5) / Dot1Q(vlan=7) / ip4 / l4 / payload)
        elif kind == 10:
            big = ip4 / UDP(sport=sport, dport=dport) / (b"z" * 2500)
            out.extend(eth / f for f in fragment(big, fragsize=1000))
        elif kind == 11:
            tunnel = rnd.choice(
                [
                    IP(src="10.20.0.1", dst="10.30.0.1") / GRE() / ip4 / l4,
                    IP(src="10.20.0.1", dst="10.30.0.1") / ip6 / l6,
                    IPv6(src="fd00:20::5", dst="fd00:30::1") / ip4 / l4,
                    IP(src="10.20.0.1", dst="10.30.0.1")
                    / UDP(sport=5555, dport=4789)
                    / VXLAN(vni=42)
                    / eth
                    / ip4
                    / l4,
                    IP(src="10.20.0.1", dst="10.30.0.1") / GRE(proto=0x6558) / eth / ip6 / l6,
                ]
            )
            out.append(eth / tunnel / payload)
        elif kind == 12:
            out.append(eth / ip6 / IPv6ExtHdrDestOpt() / l6 / payload)
        elif kind == 13:
            frag6 = ip6 / IPv6ExtHdrFragment(id=rnd.randrange(1 << 32), m=1) / l6
            out.append(eth / frag6 / payload)
        elif kind == 14:
            out.append(eth / ARP(psrc="10.20.0.1", pdst="10.20.0.2"))
        elif kind in (16, 17):
            # a DNS answer naming one of the remote addresses, to one of the local ones, in
            # the shapes both paths decode (plain, VLAN, IPv6, TCP) and the slow ones
            # (QinQ, an IPv6 extension header, GRE), sometimes cut short or damaged
            name = rnd.choice(names)
            ip, ans = (IP(src="10.20.0.53", dst=rnd.choice(local4)), rnd.choice(remote4))
            if rnd.random() < 0.4:
                ip, ans = IPv6(src="fd00:20::53", dst=rnd.choice(local6)), rnd.choice(remote6)
            rr = [DNSRR(rrname=name, type="CNAME", rdata="cdn.example", ttl=rnd.choice([0, 30]))]
            rr.append(DNSRR(rrname="cdn.example", type="AAAA" if ":" in ans else "A", rdata=ans))
            wire = bytes(DNS(qr=1, qd=DNSQR(qname=name), an=rr))
            if rnd.random() < 0.2:
                wire = wire[: rnd.randrange(len(wire))] + b"\xff" * rnd.randrange(3)
            if rnd.random() < 0.3:
                l4s = TCP(sport=53, dport=40000, flags="PA") / (len(wire).to_bytes(2, "big") + wire)
            else:
                l4s = UDP(sport=53, dport=40000) / wire
            shape = rnd.randrange(5)
            if shape == 1:
                out.append(eth / Dot1Q(vlan=7) / ip / l4s)
            elif shape == 2:
                out.append(eth / Dot1AD(vlan=5) / Dot1Q(vlan=7) / ip / l4s)
            elif shape == 3 and isinstance(ip, IPv6):
                out.append(eth / ip / IPv6ExtHdrDestOpt() / l4s)
            elif shape == 3:
                out.append(eth / IP(src="10.20.0.1", dst="10.30.0.1") / GRE() / ip / l4s)
            else:
                frame = bytes(eth / ip / l4s)
                out.append(frame[: -rnd.randrange(1, 8)] if rnd.random() < 0.1 else frame)
        else:
            # damage: a header cut short or a bad version/IHL
            good = bytes(eth / rnd.choice([ip4 / l4, ip6 / l6]) / payload)
            cut = rnd.randrange(1, min(len(good), 80))
            bad = bytearray(good[:cut] if rnd.random() < 0.6 else good)
            if rnd.random() < 0.5 and len(bad) > 14:
                bad[14] = rnd.randrange(256)
            out.append(bytes(bad))
    return [bytes(f) for f in out]  # type: ignore[call-overload]


def _write(path: Path, frames: list[bytes], seed: int) -> None:
    rnd = random.Random(seed)
    ts = 1_767_225_600_000_000
    records = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for frame in frames:
        ts += rnd.randrange(1, 20_000)
        head = struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame))
        records += [head, frame]
    path.write_bytes(b"".join(records))


@pytest.mark.parametrize("seed", [1, 2])
def test_seeded_mixed_capture_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    path = tmp_path / "mixed.pcap"
    _write(path, _frames(seed, 900), seed)
    flows, stats = read_flows([path], LOCALS[2], engine="scalar")
    # the capture does exercise both paths and every counter
    assert stats.tunnels.keys() >= {"gre", "ip6ip", "ipip", "vxlan"}
    assert stats.not_ip and stats.malformed
    assert any(f.remote_port == 0 for f in flows) and len(flows) > 100
    assert any(f.remote_names for f in flows)
    assert stats.dns.keys() >= {"responses", "addresses", "malformed", "truncated"}
    for local in LOCALS:
        _both([path], local)
    # many small batches: flows that span batches merge as in one table
    monkeypatch.setattr(vec, "BATCH_BYTES", 4096)
    _both([path], LOCALS[2])
    # the same capture gzip-compressed (read through the gzip stream)
    gz = tmp_path / "mixed.pcap.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    _both([gz], LOCALS[2])
    assert read_flows([gz], LOCALS[2])[0] == flows
    # cut half-way through the compressed stream: the same packets before the damage
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    _both([cut], LOCALS[2])
    assert read_flows([cut], LOCALS[2])[1].truncated


def test_hash_collisions_fall_back_to_an_exact_sort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mixed.pcap"
    _write(path, _frames(3, 600), 3)
    expected = read_flows([path], LOCALS[2], engine="scalar")
    # every key hashes alike: grouping must still be exact
    monkeypatch.setattr(vec, "_mix", lambda h, v: h & vec.np.uint64(0))
    assert read_flows([path], LOCALS[2], engine="vector") == expected


def test_more_flows_than_max_flows_reads_on_the_scalar_path(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pcap"
    _write(path, _frames(4, 400), 4)
    assert read_flows([path], LOCALS[2], engine="vector", max_flows=5) is not None
    auto = read_flows([path], LOCALS[2], max_flows=5)
    assert auto == read_flows([path], LOCALS[2], engine="scalar", max_flows=5)
    assert len(auto[0]) > 5  # evicted flows are returned, not dropped


def test_damaged_files_are_cut_at_the_same_record(corpus: Path, tmp_path: Path) -> None:
    derived = corpus / "pcap" / "derived"
    for name in ("truncated-mid-packet.pcap", "huge-caplen-record.pcap", "trailing-garbage.pcap"):
        flows, stats = read_flows([derived / name], [], engine="vector")
        assert stats.truncated and stats.notes
        assert (flows, stats) == read_flows([derived / name], [], engine="scalar")
    raw = (corpus / "pcap" / "zeek" / "communityid-tcp.pcap").read_bytes()
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(gzip.compress(raw)[:-40])
    vector = read_flows([cut], [], engine="vector")
    assert vector[1].truncated
    assert vector == read_flows([cut], [], engine="scalar")


_TRICKY = [
    "::",
    "::1",
    "::ffff:1.2.3.4",
    "::1.2.3.4",
    "64:ff9b::1.2.3.4",
    "2001:db8::1:0:0:1",
    "2001:0:0:1::1",
    "1:0:0:0:0:0:0:8",
    "fe80::",
    "1::",
    "0:0:1::",
]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**128 - 1) | st.integers(0, 2**32 - 1).map(lambda v: v + (0xFFFF << 32)))
def test_address_text_matches_ipaddress(value: int) -> None:
    packed = value.to_bytes(16, "big")
    assert vec.addr_text(packed) == str(ipaddress.IPv6Address(packed))
    packed4 = (value & 0xFFFFFFFF).to_bytes(4, "big")
    assert vec.addr_text(packed4) == str(ipaddress.IPv4Address(packed4))


def test_address_text_tricky_forms() -> None:
    for text in _TRICKY:
        packed = ipaddress.IPv6Address(text).packed
        assert vec.addr_text(packed) == str(ipaddress.IPv6Address(packed))


def test_special_buckets_cover_every_private_and_multicast_range() -> None:
    """Every network ``ipaddress`` calls private or multicast falls in a special bucket, so an
    address outside the buckets is public for ``FlowTable`` too."""
    v4c = ipaddress.IPv4Address._constants  # type: ignore[attr-defined]
    v6c = ipaddress.IPv6Address._constants  # type: ignore[attr-defined]
    checks = [
        ([*v4c._private_networks, v4c._multicast_network], vec._SPECIAL4, 16),
        ([*v6c._private_networks, v6c._multicast_network], vec._SPECIAL6, 112),
    ]
    for networks, table, shift in checks:
        for net in networks:
            first = int(net.network_address) >> shift
            last = int(net.broadcast_address) >> shift
            assert table[first : last + 1].all(), net


def test_oversized_record_inside_a_batch_stops_the_file_there(tmp_path: Path) -> None:
    """A damaged length that still points inside the data read so far: same cut as scalar."""
    frame = bytes(Ether() / IP(src="10.20.0.1", dst="81.2.69.142") / UDP() / (b"q" * 150))
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack("<IIII", 1_767_225_600, 0, len(frame), len(frame)) + frame
    data = bytearray(head + rec * 3000)
    struct.pack_into("<I", data, 24 + 10 * len(rec) + 8, 300_000)  # record 10: > 262,144
    path = tmp_path / "damaged.pcap"
    path.write_bytes(bytes(data))
    flows, stats = read_flows([path], LOCALS[2], engine="vector")
    assert stats.packets == 10 and flows[0].packets_out == 10
    assert stats.notes == [
        f"{path} @ byte {24 + 10 * len(rec)}: record length 300000 exceeds the maximum of "
        "262144 bytes; file damaged, rest ignored"
    ]
    assert (flows, stats) == read_flows([path], LOCALS[2], engine="scalar")
