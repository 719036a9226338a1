"""The decoder beside pmacct's own collector: ``nfacctd -I`` (Debian package ``pmacct``, 1.7.7)
reads the same corpus captures and prints its flows aggregated by 5-tuple; the totals per
5-tuple must be ours. nfacctd drops data that arrives before its template (it does not buffer),
so on ``data+templates.pcap`` it sees a subset of what we decode. Counts are compared as
exported: nfacctd 1.7.7's ``nfacctd_renormalize`` prints 0 packets for pmacct 104's
samplingPopulation/samplingSize options (pmacct's current expected output, which scales them by
256, is checked in ``test_netflow.py``)."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from sentinel.flows.netflow import FlowRecord
from sentinel.flows.netflow_collector import read_export_pcap

FILES = [
    "pmacct/100-IPFIXv10-CISCO.pcap",
    "pmacct/101-NFv9-CISCO-cust_primitives.pcap",
    "pmacct/104-IPFIXv10-IPv6-CISCO-sampling_option.pcap",
    "pmacct/111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources.traffic-00.pcap",
    "pmacct/111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources.traffic-01.pcap",
    "pmacct/112-IPFIXv10-CISCO-options-map-reassignment.pcap",
    "akvorado/nfv5.pcap",
    "scapy/netflowv9.pcap",
    "scapy/ipfix.pcap",
]
Key = tuple[str, str, int, int, int]


def _nfacctd(capture: Path, tmp_path: Path) -> tuple[Counter[Key], Counter[Key]]:
    binary = shutil.which("nfacctd")
    assert binary, "nfacctd missing: `make test` installs the Debian package pmacct"
    out = tmp_path / "nfacctd.csv"
    conf = tmp_path / "nfacctd.conf"
    conf.write_text(
        "daemonize: false\n"
        f"pcap_savefile: {capture}\n"
        "plugins: print\nprint_output: csv\nprint_num_protos: true\n"
        f"print_output_file: {out}\nprint_refresh_time: 600\n"
        "aggregate: src_host,dst_host,src_port,dst_port,proto\n"
    )
    subprocess.run([binary, "-f", str(conf)], check=True, capture_output=True, timeout=60)
    packets: Counter[Key] = Counter()
    octets: Counter[Key] = Counter()
    header, *rows = out.read_text().splitlines()
    assert header == "SRC_IP,DST_IP,SRC_PORT,DST_PORT,PROTOCOL,PACKETS,BYTES"
    for row in rows:
        src, dst, sport, dport, proto, n, size = row.split(",")
        key = (src, dst, int(sport), int(dport), int(proto))
        packets[key] += int(n)
        octets[key] += int(size)
    return packets, octets


def _ours(records: list[FlowRecord]) -> tuple[Counter[Key], Counter[Key]]:
    packets: Counter[Key] = Counter()
    octets: Counter[Key] = Counter()
    for r in records:
        key = (r.src, r.dst, r.src_port, r.dst_port, r.protocol)
        packets[key] += r.packets
        octets[key] += r.bytes
    return packets, octets


@pytest.mark.parametrize("name", FILES)
def test_same_flows_as_nfacctd(corpus: Path, tmp_path: Path, name: str) -> None:
    capture = corpus / "pcap" / name
    records, _stats = read_export_pcap([capture])
    assert records
    assert _ours(records) == _nfacctd(capture, tmp_path)


def test_nfacctd_misses_data_that_precedes_its_template(corpus: Path, tmp_path: Path) -> None:
    capture = corpus / "pcap" / "akvorado" / "data+templates.pcap"
    records, stats = read_export_pcap([capture])
    ours, _ = _ours(records)
    theirs, _ = _nfacctd(capture, tmp_path)
    assert stats.decoder.replayed_sets == 1
    assert ours > theirs  # every flow nfacctd saw, with the same counts or more, and more flows
    assert sum(ours.values()) > sum(theirs.values())
