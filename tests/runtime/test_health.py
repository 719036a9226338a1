"""Sensor health: silences, resumptions, summaries and losses in the real ledger and metrics.

Time is an injected clock that the test moves forward: the windows are real (the monitor
compares timestamps), nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sentinel.ledger import Ledger
from sentinel.metrics import Metrics
from sentinel.report.build import build_report
from sentinel.report.render import render_html
from sentinel.runtime.health import HealthMonitor, SensorReading
from sentinel.runtime.recorder import Recorder

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


class CaptureCounters:
    """What a live capture exposes to its probe: cumulative packets and kernel drops."""

    def __init__(self) -> None:
        self.packets = 0
        self.drops = 0

    def read(self) -> SensorReading:
        return SensorReading(self.packets, {"drops": self.drops})


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    value = metrics.registry.get_sample_value(name, labels)
    return value


def _health(ledger: Ledger) -> list[dict[str, Any]]:
    return [r["data"] for r in ledger.query("sensor_health")]


@pytest.fixture
def ledger(ledger_url: str) -> Any:
    led = Ledger.open(ledger_url)
    yield led
    led.close()


def test_silence_resume_and_summary_are_recorded_once(ledger: Ledger) -> None:
    clock = Clock()
    metrics = Metrics()
    monitor = HealthMonitor(
        Recorder(ledger, metrics), metrics, silence_after=60, summary_interval=600, clock=clock
    )
    cap = CaptureCounters()
    monitor.add_source("capture:eth0", "capture", cap.read)
    monitor.add_source("file:registry", "audit", silence_after=300)

    clock.at(30)
    cap.packets = 1000
    monitor.touch("file:registry", 4)
    assert monitor.check() == 0  # activity, no transition
    clock.at(89)
    assert monitor.check() == 0  # 59 s without a packet: not yet silent
    clock.at(90)
    assert monitor.check() == 1  # 60 s: silent since the last activity (t=30)
    assert _sample(metrics, "sentinel_source_silent", source="capture:eth0") == 1
    clock.at(150)
    assert monitor.check() == 0  # still silent: no second record
    clock.at(200)
    cap.packets = 1500
    cap.drops = 7
    assert monitor.check() == 1  # resumed
    assert _sample(metrics, "sentinel_source_silent", source="capture:eth0") == 0
    for t, packets in ((250, 1550), (300, 1580)):
        clock.at(t)
        cap.packets = packets
        assert monitor.check() == 0
    clock.at(330)
    # the audit source was last touched at t=30: silent since then (noticed after 300 s)
    assert monitor.check() == 1
    for t in range(360, 571, 30):  # the capture keeps seeing packets
        clock.at(t)
        cap.packets += 10
        assert monitor.check() == 0
    clock.at(600)
    cap.packets += 10
    first_period = cap.packets
    assert monitor.check() == 2  # one summary per source for [0, 600]
    clock.at(700)
    cap.packets += 5
    monitor.touch("file:registry", 1)
    assert monitor.close() == 3  # the audit source resumed; both summarized up to 700

    records = _health(ledger)
    silent, resumed, audit_silent = records[0], records[1], records[2]
    assert silent == {
        "source": "capture:eth0",
        "source_kind": "capture",
        "event": "silent",
        "period_start": "2026-11-29T12:00:30.000000Z",
        "period_end": "2026-11-29T12:01:30.000000Z",
        "silence_after_seconds": 60,
        "counts": {"silent_seconds": 60},
    }
    assert resumed["event"] == "resumed"
    assert (resumed["period_start"], resumed["period_end"]) == (
        "2026-11-29T12:00:30.000000Z",
        "2026-11-29T12:03:20.000000Z",
    )
    assert resumed["counts"] == {"silent_seconds": 170}
    assert (audit_silent["source"], audit_silent["event"]) == ("file:registry", "silent")
    assert audit_silent["period_start"] == "2026-11-29T12:00:30.000000Z"
    summaries = [r for r in records if r["event"] == "summary"]
    cap_summary = next(r for r in summaries if r["source"] == "capture:eth0")
    assert (cap_summary["period_start"], cap_summary["period_end"]) == (
        "2026-11-29T12:00:00.000000Z",
        "2026-11-29T12:10:00.000000Z",
    )
    assert cap_summary["counts"] == {
        "activity": first_period,
        "drops": 7,
        "silences": 1,
        "silent_seconds": 170,
    }
    audit_first = next(r for r in summaries if r["source"] == "file:registry")
    # a silence starts at the last activity (t=30; noticed at t=330) and lasts to the summary
    assert audit_first["counts"] == {"activity": 4, "silences": 1, "silent_seconds": 570}
    last = [r for r in summaries if r["period_end"] == "2026-11-29T12:11:40.000000Z"]
    assert {r["source"] for r in last} == {"capture:eth0", "file:registry"}
    audit_last = next(r for r in last if r["source"] == "file:registry")
    assert audit_last["counts"] == {"activity": 1, "silences": 0, "silent_seconds": 100}
    assert len(records) == 8  # 2 silent, 2 resumed, 2 + 2 summaries

    assert _sample(metrics, "sentinel_source_silences_total", source="capture:eth0") == 1
    assert (
        _sample(metrics, "sentinel_source_losses_total", source="capture:eth0", loss="drops") == 7
    )
    assert (
        _sample(metrics, "sentinel_source_last_activity_timestamp_seconds", source="capture:eth0")
        == (T0 + timedelta(seconds=700)).timestamp()
    )
    assert _sample(metrics, "sentinel_ledger_appended_records_total", kind="sensor_health") == 8
    assert ledger.verify().ok

    # the report states the coverage of the period
    report = build_report(
        ledger.query(),
        start=T0,
        end=T0 + timedelta(hours=1),
        verification={"status": "valid"},
        generated_at=T0,
    )
    cov = report["coverage"]
    assert cov["status"] == "gaps"
    by_source = {s["source"]: s for s in cov["sources"]}
    cap_cov = by_source["capture:eth0"]
    assert cap_cov["activity"] == cap.packets and cap_cov["silence_count"] == 1
    assert cap_cov["silent_seconds"] == 170 and cap_cov["losses"] == {"drops": 7}
    assert cap_cov["silences"] == [
        {
            "from": "2026-11-29T12:00:30.000000Z",
            "noticed": "2026-11-29T12:01:30.000000Z",
            "to": "2026-11-29T12:03:20.000000Z",
        }
    ]
    assert cap_cov["observed_from"] == "2026-11-29T12:00:00.000000Z"
    assert cap_cov["observed_to"] == "2026-11-29T12:11:40.000000Z"
    assert by_source["file:registry"]["silent_seconds"] == 670
    html = render_html(report)
    assert "Coverage of the evidence" in html
    assert "7 packet(s) dropped by the kernel before capture" in html
    assert "2026-11-29T12:03:20.000000Z" in html


def test_a_source_that_never_stops_is_complete_and_records_only_summaries(
    ledger: Ledger,
) -> None:
    clock = Clock()
    metrics = Metrics()
    monitor = HealthMonitor(
        Recorder(ledger, metrics), metrics, silence_after=60, summary_interval=300, clock=clock
    )
    counters = {"activity": 0}
    monitor.add_source(
        "conntrack", "conntrack", lambda: SensorReading(counters["activity"], {"overruns": 0})
    )
    for t in range(10, 901, 10):  # a flow every 10 s for 15 minutes
        counters["activity"] += 1
        clock.at(t)
        monitor.check()
    records = _health(ledger)
    assert [r["event"] for r in records] == ["summary"] * 3
    assert [r["counts"] for r in records] == [
        {"activity": 30, "overruns": 0, "silences": 0, "silent_seconds": 0}
    ] * 3
    report = build_report(ledger.query(), start=T0, end=T0 + timedelta(hours=1), verification=None)
    assert report["coverage"]["status"] == "complete"
    assert report["coverage"]["sources"][0]["activity"] == 90


def test_report_without_health_records_says_coverage_is_unknown() -> None:
    report = build_report([], start=T0, end=T0 + timedelta(hours=1), verification=None)
    assert report["coverage"]["status"] == "no data"
    assert "not known" in report["coverage"]["summary"]


def test_a_failing_probe_is_logged_and_the_source_goes_silent(ledger: Ledger) -> None:
    clock = Clock()
    metrics = Metrics()
    monitor = HealthMonitor(
        Recorder(ledger, metrics), metrics, silence_after=30, summary_interval=3600, clock=clock
    )

    def broken() -> SensorReading:
        raise OSError("socket gone")

    monitor.add_source("netflow:0.0.0.0:2055", "netflow", broken)
    clock.at(31)
    assert monitor.check() == 1
    (record,) = _health(ledger)
    assert (record["source"], record["event"]) == ("netflow:0.0.0.0:2055", "silent")
    with pytest.raises(ValueError, match="added twice"):
        monitor.add_source("netflow:0.0.0.0:2055", "netflow", broken)
