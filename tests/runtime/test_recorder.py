"""The recorder appends durably, then counts only what was new."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sentinel.ledger import Ledger
from sentinel.metrics import Metrics
from sentinel.records import AuditEvent, Unparsed
from sentinel.runtime.recorder import Recorder

T = datetime(2026, 11, 29, 19, 9, 53, tzinfo=UTC)


def _event(event_id: str) -> AuditEvent:
    return AuditEvent(
        T,
        "hook",
        "distribution",
        "push",
        "success",
        "00" * 32,
        f"hook:{event_id}",
        actor="alice",
        actor_verified=True,
        event_id=event_id,
    )


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_redelivery_is_neither_stored_nor_counted_twice(ledger_url: str) -> None:
    metrics = Metrics()
    with Ledger.open(ledger_url) as ledger:
        recorder = Recorder(ledger, metrics)
        first = recorder.record_audit([_event("a"), _event("b")])
        assert first.appended == 2
        # at-least-once delivery: "b" again, with a new "c" and an unparsed payload
        bad = Unparsed("hook", "not JSON", b"{", "hook:3")
        again = recorder.record_audit([_event("b"), _event("c"), bad], cursors={"k": "v"})
        assert (again.appended, again.duplicates, again.accepted) == (2, 1, (1, 2))
        assert ledger.size() == 4 and ledger.get_cursor("k") == "v"
        assert ledger.verify().ok
    labels = {"source": "hook", "action": "push", "outcome": "success"}
    assert _sample(metrics, "sentinel_audit_events_total", **labels) == 3
    assert _sample(metrics, "sentinel_unparsed_inputs_total", source="hook") == 1
    assert _sample(metrics, "sentinel_ledger_duplicates_skipped_total") == 1
    assert _sample(metrics, "sentinel_ledger_appended_records_total", kind="audit_event") == 3
    assert _sample(metrics, "sentinel_ledger_records") == 4


def test_recorder_on_sqlite_file(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        result = Recorder(ledger, Metrics()).record_audit([])
        assert result.appended == 0


def test_repeated_live_violations_are_aggregated(ledger_url: str) -> None:
    from sentinel.policy.aggregate import Aggregator
    from sentinel.records import Flow, Verdict

    def violation(minute: int) -> Verdict:
        t = T.replace(minute=minute)
        flow = Flow(6, "10.20.0.5", 40000 + minute, "52.95.110.1", 443, 3, 2, 1000, 50, t, t)
        return Verdict(flow, "violation", "foreign country", "US", "jurisdiction")

    agg = Aggregator(interval=300)
    with Ledger.open(ledger_url) as ledger:
        recorder = Recorder(ledger, Metrics())
        recorder.record_verdicts(
            [violation(1), violation(2)],
            source="capture:eth0",
            start=T,
            end=T.replace(minute=3),
            aggregator=agg,
        )
        recorder.record_verdicts(
            [violation(4)], source="capture:eth0", start=T, end=T.replace(minute=5), aggregator=agg
        )
        recorder.record_emissions(agg.drain(T.replace(minute=6), final=True), source="capture:eth0")
        kinds = ledger.count_by_kind()
        repeats = [r["data"] for r in ledger.query(kind="egress_violation_repeat")]
        assert ledger.verify().ok
    assert kinds["egress_violation"] == 1  # the first occurrence, as a full verdict
    assert kinds["egress_summary"] == 2  # every window's per-country counts, all flows
    assert sum(r["count"] for r in repeats) == 2 and repeats[-1]["total_count"] == 3
