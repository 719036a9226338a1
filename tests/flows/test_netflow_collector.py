"""The UDP collector: real datagrams (taken from the corpus captures) sent to 127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sentinel.errors import CaptureError
from sentinel.flows.netflow_collector import ExportPcapStats, NetflowCollector, export_datagrams
from tests.waiting import wait_until

SEQUENCE = ["options-template", "options-data", "template", "data"]


def _payloads(corpus: Path, names: list[str]) -> list[bytes]:
    stats = ExportPcapStats()
    out: list[bytes] = []
    for name in names:
        path = corpus / "pcap" / "akvorado" / f"{name}.pcap"
        out.extend(p for _ts, _e, p in export_datagrams(path, stats))
    return out


def test_collector_decodes_datagrams_sent_over_udp(corpus: Path) -> None:
    collector = NetflowCollector(["10.0.0.0/8"], host="127.0.0.1", port=0)
    collector.start()
    try:
        host, port = collector.address
        assert host == "127.0.0.1" and port > 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for payload in _payloads(corpus, SEQUENCE):
                sender.sendto(payload, (host, port))
            sender.sendto(b"\x00\x09garbage", (host, port))
        wait_until(lambda: collector.packets == 5)
        flows = collector.collect()
        unparsed = collector.take_unparsed()
    finally:
        rest = collector.stop()
    collector.stop()  # idempotent
    assert rest == []
    assert len(flows) == 4
    assert {f.exporter for f in flows} == {"127.0.0.1"}
    assert {f.sampling_rate for f in flows} == {30000}
    first = flows[0]
    assert (first.local_ip, first.remote_ip, first.local_port, first.remote_port) == (
        "198.38.121.178",
        "91.170.143.87",
        443,
        19624,
    )
    assert (first.packets_out, first.bytes_out) == (30000, 1500 * 30000)
    assert len(unparsed) == 1
    assert unparsed[0].source == "netflow:127.0.0.1:0"  # the configured address
    assert "truncated header" in unparsed[0].reason
    snap = collector.snapshot()
    assert snap["records"] == 4 and snap["malformed"] == {"truncated header": 1}
    assert collector.kernel_drops == 0


def test_port_in_use_is_a_typed_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        collector = NetflowCollector([], host="127.0.0.1", port=port)
        with pytest.raises(CaptureError, match="cannot listen for NetFlow"):
            collector.start()


def test_data_still_waiting_for_its_template_at_stop_is_counted(corpus: Path) -> None:
    collector = NetflowCollector([], host="127.0.0.1", port=0)
    collector.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for payload in _payloads(corpus, ["data"]):
                sender.sendto(payload, collector.address)
        wait_until(lambda: collector.packets == 1)
        assert collector.snapshot()["pending_sets"] == 1
    finally:
        assert collector.stop() == []
    snap = collector.snapshot()
    assert (snap["pending_sets"], snap["missing_template_sets"]) == (0, 1)
