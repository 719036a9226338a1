"""The shipped alert rules pass promtool's checks and unit tests; the exposition lints clean."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel.metrics import Metrics
from sentinel.records import AuditEvent, Flow, Unparsed, Verdict

RULES = Path(__file__).resolve().parents[2] / "rules" / "prometheus"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool missing: install the Debian package `prometheus` (make deps)")
    return path


def test_alert_rules_are_valid() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", str(RULES / "sentinel-alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 18 rules found" in done.stdout


def test_alert_rules_unit_tests_pass() -> None:
    done = subprocess.run(
        [_promtool(), "test", "rules", "sentinel-alerts.test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _populated() -> Metrics:
    m = Metrics()
    t = datetime(2026, 11, 29, 19, 0, tzinfo=UTC)
    flow = Flow(6, "10.20.0.5", 443, "52.95.110.1", 50123, 5, 3, 7000, 300, t, t)
    m.count_verdicts(
        [
            Verdict(flow, "violation", "foreign country", "US", "jurisdiction"),
            Verdict(flow, "allowed", "internal", None, "local_networks"),
        ]
    )
    m.count_audit(
        [
            AuditEvent(t, "registry", "distribution", "pull", "success", "ab" * 32, "f:0"),
            Unparsed("registry", "not JSON", b"garbage", "f:10"),
        ]
    )
    return m


def test_exposition_passes_promtool_check_metrics() -> None:
    text = _populated().exposition()
    done = subprocess.run(
        [_promtool(), "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    body = text.decode()
    assert 'sentinel_egress_violations_total{country="US",reason="foreign country"} 1.0' in body
    assert 'sentinel_egress_bytes_total{country="US"} 7000.0' in body
    assert 'sentinel_unparsed_inputs_total{source="registry"} 1.0' in body
    assert "sentinel_build_info{version=" in body


def test_every_metric_an_alert_uses_is_exported() -> None:
    exported = _populated().exposition().decode()
    rules = (RULES / "sentinel-alerts.yml").read_text()
    for name in (
        "sentinel_egress_violations_total",
        "sentinel_ledger_verification_valid",
        "sentinel_ledger_last_verification_timestamp_seconds",
        "sentinel_audit_events_total",
        "sentinel_source_last_event_timestamp_seconds",
        "sentinel_unparsed_inputs_total",
        "sentinel_capture_drops_total",
        "sentinel_geoip_database_build_timestamp_seconds",
        "sentinel_audit_findings_total",
        "sentinel_geoip_reloads_total",
        "sentinel_ledger_checkpoint_refusals_total",
        "sentinel_ledger_last_checkpoint_timestamp_seconds",
        "sentinel_source_silent",
        "sentinel_conntrack_overruns_total",
        "sentinel_source_losses_total",
        "sentinel_ledger_timestamps_total",
        "sentinel_netflow_exporters_expired_total",
    ):
        assert name in rules
        assert f"# TYPE {name.removesuffix('_total')}" in exported, name
