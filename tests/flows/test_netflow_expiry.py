"""NetFlow/IPFIX state ages out (RFC 7011 §10.3.7): idle exporters are forgotten and data
buffered before its template is dropped after ``pending_max_age`` — counted, never silent.
Receive times are fed explicitly (seconds on the caller's clock); nothing sleeps."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

from sentinel.config import load_settings
from sentinel.flows.netflow import Limits, NetflowDecoder
from sentinel.metrics import Metrics
from tests.flows.test_netflow import V4, _ipfix, _set, _template, _v4_record

A, B = "192.0.2.1", "192.0.2.2"
REC = _v4_record("10.0.0.1", "8.8.8.8", 17, 100, 2)
SAMPLING = [(302, 4), (34, 4)]  # selectorId, samplingInterval (options: scope 1)


def test_defaults_follow_rfc_7011() -> None:
    limits = Limits()
    assert (limits.exporter_idle_timeout, limits.pending_max_age) == (1800.0, 1800.0)


def test_idle_exporter_is_forgotten_and_its_slot_freed() -> None:
    d = NetflowDecoder(Limits(max_exporters=1, exporter_idle_timeout=600.0))
    r = d.feed(_ipfix(0, _set(2, _template(300, V4)), _set(300, REC)), A, now=1000.0)
    assert len(r.records) == 1
    assert d.feed(_ipfix(1, _set(300, REC)), A, now=1599.0).records  # not yet idle
    assert d.feed(_ipfix(0, _set(300, REC)), B, now=1700.0).problems == ["too many exporters"]
    # A silent for 600 s: forgotten, B takes its place
    r = d.feed(_ipfix(0, _set(2, _template(300, V4)), _set(300, REC)), B, now=2200.0)
    assert r.problems == [] and len(r.records) == 1
    assert (d.stats.exporters_expired, d.stats.templates_expired) == (1, 1)
    assert d.stats.refused == {"too many exporters": 1}
    # A again (after B went idle too): its old template is gone, its data waits and is counted
    r = d.feed(_ipfix(2, _set(300, REC)), A, now=2900.0)
    assert r.records == [] and d.stats.pending_sets == 1
    assert d.stats.exporters_expired == 2
    # its sequence position was forgotten too: no gap counted across the silence
    assert d.stats.sequences[(A, 10, 7)].lost == 0
    assert d.finish() == 1 and d.stats.missing_template_sets == 1


def test_forgotten_exporter_loses_its_sampling_options() -> None:
    d = NetflowDecoder(Limits(exporter_idle_timeout=60.0))
    options = struct.pack("!HHH", 400, 2, 1) + b"".join(struct.pack("!HH", *f) for f in SAMPLING)
    d.feed(_ipfix(0, _set(3, options), _set(400, struct.pack("!II", 5, 100))), A, now=0.0)
    assert d.sampling_rate(A, 10, 7, 5) == 100
    d.expire(61.0)
    assert d.sampling_rate(A, 10, 7, 5) == 1 and d.stats.templates_expired == 1


def test_buffered_data_older_than_the_limit_is_dropped_and_counted() -> None:
    d = NetflowDecoder(Limits(pending_max_age=300.0, exporter_idle_timeout=10_000.0))
    d.feed(_ipfix(0, _set(300, REC)), A, now=0.0)
    d.feed(_ipfix(1, _set(300, REC)), A, now=200.0)
    assert d.stats.pending_sets == 2
    assert d.expire(299.0) == 0  # nothing old enough yet
    assert d.expire(300.0) == 1  # the first set is 300 s old: dropped
    assert d.stats.pending_expired_sets == 1 and d.stats.missing_template_sets == 1
    assert d.stats.missing_template_bytes == len(REC)
    # the template comes: only the young set is decoded
    r = d.feed(_ipfix(2, _set(2, _template(300, V4))), A, now=450.0)
    assert len(r.records) == 1 and d.stats.replayed_sets == 1
    assert d.stats.pending_sets == 0 and d.stats.to_json()["pending_expired_sets"] == 1


def test_without_times_nothing_ages() -> None:
    d = NetflowDecoder(Limits(pending_max_age=1.0, exporter_idle_timeout=1.0))
    d.feed(_ipfix(0, _set(300, REC)), A)
    d.feed(_ipfix(1, _set(2, _template(300, V4))), A)
    assert d.stats.replayed_sets == 1 and d.stats.exporters_expired == 0


def test_config_options(tmp_path: Path) -> None:
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text("[netflow]\nexporter_idle_timeout = 120\npending_max_age = 60.5\n")
    section = load_settings(cfg).netflow
    assert section is not None
    assert (section.exporter_idle_timeout, section.pending_max_age) == (120.0, 60.5)
    cfg.write_text("[netflow]\n")
    section = load_settings(cfg).netflow
    assert section is not None and section.exporter_idle_timeout == 1800.0


def _sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_expiry_counters_are_exported_as_metrics() -> None:
    """The decoder driven with explicit receive times; the counters read from the registry
    and the text exposition (which promtool lints)."""
    d = NetflowDecoder(Limits(pending_max_age=300.0, exporter_idle_timeout=600.0))
    m = Metrics()
    d.feed(_ipfix(0, _set(2, _template(300, V4)), _set(2, _template(301, V4))), A, now=0.0)
    d.feed(_ipfix(0, _set(302, REC)), B, now=10.0)  # B's template never comes
    m.observe_netflow(d.stats)
    assert _sample(m, "sentinel_netflow_exporters_expired_total") == 0
    d.expire(400.0)  # B's set is 390 s old; nobody idle yet
    d.expire(700.0)  # A silent 700 s, B 690 s: both forgotten, A with 2 templates
    m.observe_netflow(d.stats)
    m.observe_netflow(d.stats)  # cumulative: observing twice adds nothing
    assert _sample(m, "sentinel_netflow_pending_expired_sets_total") == 1
    assert _sample(m, "sentinel_netflow_missing_template_sets_total") == 1
    assert _sample(m, "sentinel_netflow_exporters_expired_total") == 2
    assert _sample(m, "sentinel_netflow_templates_expired_total") == 2
    text = m.exposition().decode()
    assert (
        "# HELP sentinel_netflow_exporters_expired_total Exporter addresses forgotten after "
        in text
    )
    assert "sentinel_netflow_templates_expired_total 2.0" in text
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: install the Debian package `prometheus`"
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
