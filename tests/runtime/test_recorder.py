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
