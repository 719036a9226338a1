"""The daemon with a ``[netflow]`` table: datagrams from the corpus sent over UDP to
127.0.0.1 are judged and recorded like captured flows; NetFlow metrics and unparsed input."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from sentinel.config import load_settings
from sentinel.flows.netflow_collector import ExportPcapStats, export_datagrams
from sentinel.ledger import Ledger
from sentinel.ledger.checkpoint import anchor_from_settings
from sentinel.report.build import build_report
from sentinel.runtime.service import Service
from tests.runtime.test_service import _settings, _wait

START_OF_TIME = datetime(2000, 1, 1, tzinfo=UTC)
END_OF_TIME = datetime(2100, 1, 1, tzinfo=UTC)

NETFLOW_TOML = """
[netflow]
listen = "127.0.0.1:0"
flush_interval = 0.5
"""


def _datagrams(corpus: Path) -> list[bytes]:
    stats = ExportPcapStats()
    folder = corpus / "pcap" / "akvorado"
    return [
        payload
        for name in ("options-template", "options-data", "template", "data")
        for _ts, _exporter, payload in export_datagrams(folder / f"{name}.pcap", stats)
    ]


def test_netflow_datagrams_are_judged_and_recorded(
    tmp_path: Path, corpus: Path, ledger_url: str
) -> None:
    _settings(tmp_path, corpus, ledger_url)
    config = tmp_path / "sentinel.toml"
    config.write_text(config.read_text() + NETFLOW_TOML)
    settings = load_settings(config)
    assert settings.netflow is not None
    service = Service(settings)
    service.start()
    try:
        assert service.netflow is not None
        host, port = service.netflow.address
        assert host == "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for payload in _datagrams(corpus):
                sender.sendto(payload, (host, port))
            sender.sendto(b"\x00\x0a\x00\x10not ipfix", (host, port))
        _wait(lambda: service.netflow is not None and service.netflow.packets == 5)
        _wait(lambda: service.metrics.netflow_records._value.get() == 4)
        malformed = service.metrics.netflow_malformed.labels("truncated header")
        _wait(lambda: malformed._value.get() == 1)
        metrics_port = service.metrics_port
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    finally:
        service.stop()
    text = body.decode()
    assert 'sentinel_netflow_datagrams_total{version="9"} 4.0' in text
    assert "sentinel_netflow_records_total 4.0" in text
    assert 'sentinel_netflow_malformed_total{reason="truncated header"} 1.0' in text

    anchor = anchor_from_settings(settings)
    with Ledger.open(settings.ledger_url, log_id=settings.ledger.log_id, anchor=anchor) as ledger:
        assert ledger.verify().status == "valid"
        summaries = [r["data"] for r in ledger.query(kind="egress_summary")]
        violations = [r["data"] for r in ledger.query(kind="egress_violation")]
        unparsed = [r["data"] for r in ledger.query(kind="unparsed")]
        health_records = list(ledger.query(kind="sensor_health"))
        health = [r["data"] for r in health_records]
    source = "netflow:127.0.0.1:0"  # as configured
    assert sum(s["flows"] for s in summaries) == 4
    assert {s["source"] for s in summaries} == {source}
    # the MaxMind test database knows none of these public addresses: unknown location
    assert violations, "public remotes of unknown location are violations"
    # none of akvorado's addresses is in local_networks: judged from both ends, marked, counted
    assert sum(s.get("orientation_unknown", 0) for s in summaries) == 4
    assert service.metrics.orientation_unknown._value.get() == 4
    for v in violations:
        assert v["orientation_unknown"] is True
        assert v["observed_by"] == source
        assert v["exporter"] == "127.0.0.1"
        assert v["sampling_rate"] == 30000
    assert len(unparsed) == 1 and unparsed[0]["source"] == source
    # the sensor-health summary written at stop: records seen and the export loss the
    # sequence numbers show (these four captures were taken apart: 143 export packets between)
    (summary,) = [h for h in health if h["source"] == source and h["event"] == "summary"]
    assert summary["source_kind"] == "netflow"
    assert summary["counts"]["activity"] == 4
    assert summary["counts"]["sequence_gaps"] == 143
    assert summary["counts"].get("missing_templates", 0) == 0
    # and the report says how complete the NetFlow evidence was
    report = build_report(health_records, start=START_OF_TIME, end=END_OF_TIME, verification=None)
    (cov,) = [c for c in report["coverage"]["sources"] if c["source"] == source]
    assert cov["status"] == "gaps" and cov["losses"]["sequence_gaps"] == 143
    assert report["coverage"]["status"] == "gaps"
