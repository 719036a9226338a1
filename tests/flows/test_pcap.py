"""The capture reader on every corpus file: counts match tshark (SOURCES.md), damage is typed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from sentinel.errors import CaptureError
from sentinel.flows.pcap import CaptureReader, ReadStats, read_packets

# file → packets tshark counts (SOURCES.md), where our count must equal it
TSHARK_COUNTS = {
    "zeek/http-qinq-0.pcap": 14,
    "zeek/http-vlan-0.pcap": 14,
    "zeek/linux_dlt_sll2.pcap": 6,
    "pcapplusplus/SllPacket.pcap": 1,
    "pcapplusplus/Sll2Packet.pcap": 1,
    "pcapplusplus/null_loopback.pcap": 3,
    "pcapplusplus/raw_ip.pcap": 100,
    "pcapplusplus/four_ipv6_http_streams.pcap": 81,
    "tcpdump/LINKTYPE_IPV4.pcap": 1,
    "tcpdump/LINKTYPE_IPV6.pcap": 1,
    "pcapplusplus/ip4_fragments.pcap": 53,
    "pcapplusplus/ip6_fragments.pcap": 36,
    "zeek/mixed-vlan-mpls.pcap": 47,
    "zeek/pcapng-multi-interface.pcapng": 6,
    "pcapplusplus/many_interfaces-1.pcapng": 64,
    "pcapplusplus/too_many_interfaces.pcapng": 1,
    "pcapplusplus/nanosecs_big_endian.pcap": 10,
    "pcapplusplus/microsecs_big_endian.pcap": 13,
    "pcapplusplus/DnsPackets.pcap": 464,
    "scapy/http_head.pcapng.gz": 10,
    "scapy/macos.pcapng.gz": 1,
    "scapy/netflowv9.pcap": 5,
    "tcpdump/tcp-handshake-nano.pcap": 3,
    "tcpdump/bigtcp-ipv6-hbh.pcap": 1,
    "tcpdump/empty.pcap": 0,
    "tcpdump/empty.pcapng": 0,
    "tcpdump/time_2106_overflow.pcapng": 1,
    "derived/incl-gt-orig.pcap": 12,
}

# pcapng-test-generator: tshark also counts custom blocks (CB/DCB) as frames; we count packets
# (EPB + SPB) only and skip the custom blocks, so the expected packets are tshark's minus those.
GENERATOR_PACKETS = {
    "advanced-test100": 5,
    "advanced-test101": 4,
    "advanced-test102": 5,  # tshark 8 = 5 packets + CB + 2 DCB
    "basic-test001": 4,
    "basic-test002": 0,
    "basic-test003": 0,
    "basic-test004": 4,
    "basic-test005": 4,
    "basic-test006": 5,
    "basic-test007": 1,
    "basic-test008": 4,
    "basic-test009": 2,
    "basic-test010": 4,
    "basic-test011": 4,
    "basic-test012": 4,
    "basic-test013": 0,
    "basic-test014": 0,
    "basic-test015": 0,
    "basic-test016": 4,
    "basic-test017": 0,  # tshark 4 = 4 custom blocks
    "basic-test018": 4,  # tshark 8 = 4 packets + 4 custom blocks
    "difficult-test200": 0,
    "difficult-test201": 4,
    "difficult-test202": 8,  # tshark 11 = 8 packets + 3 custom blocks (3 sections, both orders)
}


def _read(path: Path) -> tuple[list[tuple[int, int, bytes, int]], ReadStats]:
    with CaptureReader(path) as reader:
        packets = list(reader)
    return packets, reader.stats


@pytest.mark.parametrize("name", sorted(TSHARK_COUNTS))
def test_packet_counts_match_tshark(corpus: Path, name: str) -> None:
    packets, stats = _read(corpus / "pcap" / name)
    assert len(packets) == TSHARK_COUNTS[name] == stats.packets
    assert not stats.truncated
    assert stats.bytes == sum(len(p[2]) for p in packets)


@pytest.mark.parametrize("order", ["output_le", "output_be"])
@pytest.mark.parametrize("name", sorted(GENERATOR_PACKETS))
def test_pcapng_generator(corpus: Path, order: str, name: str) -> None:
    packets, stats = _read(corpus / "pcap" / "pcapng-test-generator" / order / f"{name}.pcapng")
    assert len(packets) == GENERATOR_PACKETS[name]
    assert not stats.truncated


def test_big_and_little_endian_pcapng_agree(corpus: Path) -> None:
    base = corpus / "pcap" / "pcapng-test-generator"
    for name in GENERATOR_PACKETS:
        le, _ = _read(base / "output_le" / f"{name}.pcapng")
        be, _ = _read(base / "output_be" / f"{name}.pcapng")
        assert le == be, name


def test_every_corpus_capture_is_read_or_rejected(corpus: Path) -> None:
    files = sorted(p for p in (corpus / "pcap").rglob("*") if ".pcap" in p.name)
    assert len(files) > 100
    rejected = []
    for path in files:
        try:
            with CaptureReader(path) as reader:
                count = sum(1 for _ in reader)
            assert count == reader.stats.packets
        except CaptureError as exc:
            assert str(path) in str(exc)
            rejected.append(path.name)
    assert sorted(rejected) == [
        "bad-magic.pcap",
        "pcapng-example.pcapng.zst",
        "truncated-global-header.pcap",
        "zero-bytes.pcap",
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad-magic.pcap", "not a pcap or pcapng file (magic deadbeef)"),
        ("zero-bytes.pcap", "empty file (0 bytes)"),
        ("truncated-global-header.pcap", "truncated pcap global header (10 of 24 bytes)"),
    ],
)
def test_unreadable_files_raise_capture_error(corpus: Path, name: str, message: str) -> None:
    with pytest.raises(CaptureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CaptureReader(corpus / "pcap" / "derived" / name)


def test_zstd_is_rejected_clearly(corpus: Path) -> None:
    with pytest.raises(CaptureError, match="zstd"):
        CaptureReader(corpus / "pcap" / "pcapplusplus" / "pcapng-example.pcapng.zst")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        CaptureReader(tmp_path / "nope.pcap")


@pytest.mark.parametrize(
    ("name", "packets", "reason"),
    [
        ("truncated-mid-packet.pcap", 1, "record cut mid-packet (37 of 74 bytes)"),
        ("truncated-mid-record-header.pcap", 1, "incomplete record header at end of file (8 of"),
        ("trailing-garbage.pcap", 12, "incomplete record header at end of file (7 of"),
        ("huge-caplen-record.pcap", 1, "record length 2147483647 exceeds the maximum"),
        ("pcapng-truncated-mid-block.pcapng", 49, "block cut short"),
    ],
)
def test_damage_is_a_counted_truncation(corpus: Path, name: str, packets: int, reason: str) -> None:
    got, stats = _read(corpus / "pcap" / "derived" / name)
    assert len(got) == packets == stats.packets
    assert stats.truncated
    assert stats.truncation_reason is not None and reason in stats.truncation_reason
    # no partial packet: what was yielded is exactly the head of the undamaged original
    source = (
        corpus / "pcap" / "pcapplusplus" / "many_interfaces-1.pcapng"
        if name.endswith(".pcapng")
        else corpus / "pcap" / "zeek" / "communityid-tcp.pcap"
    )
    original, _ = _read(source)
    assert got == original[: len(got)]


def test_incl_gt_orig_is_an_anomaly_not_a_stop(corpus: Path) -> None:
    got, stats = _read(corpus / "pcap" / "derived" / "incl-gt-orig.pcap")
    assert len(got) == 12
    assert stats.anomalies == {"incl_gt_orig": 1}


def test_timestamps_us_ns_and_pcapng_resolution(corpus: Path) -> None:
    pcap = corpus / "pcap"
    # nanosecond magic: the fraction is kept exactly
    ns, _ = _read(pcap / "tcpdump" / "tcp-handshake-nano.pcap")
    us, _ = _read(pcap / "pcapplusplus" / "microsecs.pcap")
    assert all(ts % 1000 == 0 for ts, *_ in us)
    assert any(ts % 1000 for ts, *_ in ns)
    # pcapng with two interfaces of different if_tsresol (ns and µs): both land in 2026
    multi, _ = _read(pcap / "zeek" / "pcapng-multi-interface.pcapng")
    years = {ts // 1_000_000_000 // (365 * 86400) + 1970 for ts, *_ in multi}
    assert years == {2026}
    # 2106: a 64-bit pcapng timestamp beyond 2^32 seconds
    got, _ = _read(pcap / "tcpdump" / "time_2106_overflow.pcapng")
    assert got[0][0] // 1_000_000_000 >= 2**32


def test_invalid_nano_fraction_is_counted(corpus: Path) -> None:
    got, stats = _read(corpus / "pcap" / "tcpdump" / "timestamp_invalid_nano.pcap")
    assert len(got) == 3
    assert stats.anomalies["ts_fraction_out_of_range"] == 2


def test_per_packet_link_types_in_multi_interface_pcapng(corpus: Path) -> None:
    got, _ = _read(corpus / "pcap" / "pcapplusplus" / "many_interfaces-1.pcapng")
    assert {lt for _ts, lt, _d, _o in got} == {0, 1}  # NULL/loopback and Ethernet


def test_spb_takes_previous_timestamp_and_is_counted(corpus: Path) -> None:
    got, stats = _read(
        corpus / "pcap" / "pcapng-test-generator" / "output_le" / "basic-test011.pcapng"
    )
    assert stats.anomalies["spb_no_timestamp"] == 2
    assert len(got) == 4


def test_gzip_truncated_stream_is_counted(corpus: Path, tmp_path: Path) -> None:
    raw = (corpus / "pcap" / "zeek" / "communityid-tcp.pcap").read_bytes()
    damaged = tmp_path / "cut.pcap.gz"
    damaged.write_bytes(gzip.compress(raw)[:-40])
    got, stats = _read(damaged)
    assert stats.truncated
    assert len(got) < 12
    original, _ = _read(corpus / "pcap" / "zeek" / "communityid-tcp.pcap")
    assert got == original[: len(got)]


def test_big_endian_written_pcap(tmp_path: Path) -> None:
    # a hand-built big-endian µs pcap with one raw-IPv4 record (LINKTYPE_RAW 101)
    payload = bytes.fromhex("450000140001000040110000c0000201c6336401")
    head = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    rec = struct.pack(">IIII", 1_700_000_000, 250_000, len(payload), len(payload)) + payload
    path = tmp_path / "be.pcap"
    path.write_bytes(head + rec)
    got, stats = _read(path)
    assert got == [(1_700_000_000_250_000_000, 101, payload, len(payload))]
    assert stats.packets == 1


def test_read_packets_merges_stats(corpus: Path) -> None:
    stats = ReadStats()
    n = sum(1 for _ in read_packets(corpus / "pcap" / "derived" / "trailing-garbage.pcap", stats))
    assert n == 12 == stats.packets
    assert stats.truncated and stats.files == 1
