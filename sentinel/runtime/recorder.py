"""The one gateway from sources to the ledger and the metrics.

Every source (tailer, webhook, capture, pcap directory) hands its output to a ``Recorder``;
the recorder turns it into ledger records, appends them durably (with dedup keys and source
cursors in the same transaction) and only then counts them in the metrics. It is thread-safe:
the ledger serializes appends.

Ledger record kinds written here:

* ``audit_event`` — ``AuditEvent.to_json()``
* ``unparsed`` — ``Unparsed.to_json()``
* ``egress_violation`` — ``Verdict.to_json()`` plus ``observed_by`` (capture source)
* ``egress_summary`` — per observation window: flows, packets and bytes by remote country and
  by verdict (``summarize``), so a report can show allowed traffic without one record per flow
* ``egress_violation_repeat`` — live capture only: repeated violations of one (remote, port,
  protocol, reason) aggregated over an interval (``sentinel.policy.aggregate``); the first
  occurrence is an ``egress_violation`` as above
* ``sensor_health`` — built by ``sentinel.runtime.health`` (a source went silent, came back,
  or a periodic summary of its activity and losses) and appended with ``record_records``
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sentinel.ledger import AppendResult, Ledger
from sentinel.metrics import Metrics
from sentinel.policy.aggregate import Aggregator, Emission
from sentinel.policy.egress import UnknownOrientation
from sentinel.records import AuditEvent, Unparsed, Verdict
from sentinel.timefmt import format_ts


def country_key(v: Verdict) -> str:
    """``Verdict.location_label`` (kept as a function for callers that map over verdicts)."""
    return v.location_label


def summarize(
    verdicts: Sequence[Verdict], *, source: str, start: datetime, end: datetime
) -> dict[str, Any]:
    """An ``egress_summary`` record body: counts by country and verdict for ``[start, end]``;
    ``orientation_unknown`` (flows with neither endpoint in ``local_networks``, judged from
    both ends) and ``orientation_unknown_public`` (those of them between public addresses, not
    internal by the IANA registries: ``UnknownOrientation``) only when there are some, so
    earlier summaries keep their canonical bytes."""
    by_country: dict[str, Counter[str]] = defaultdict(Counter)
    by_verdict: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    for v in verdicts:
        c = by_country[country_key(v)]
        c["flows"] += 1
        c["packets"] += v.flow.packets
        c["bytes_out"] += v.flow.bytes_out
        c["bytes_in"] += v.flow.bytes_in
        if v.verdict == "violation":
            c["violations"] += 1
        by_verdict[v.verdict] += 1
        by_reason[v.reason] += 1
    body: dict[str, Any] = {
        "source": source,
        "period_start": format_ts(start),
        "period_end": format_ts(end),
        "flows": len(verdicts),
        "by_country": {k: dict(v) for k, v in sorted(by_country.items())},
        "by_verdict": dict(sorted(by_verdict.items())),
        "by_reason": dict(sorted(by_reason.items())),
    }
    unknown = sum(1 for v in verdicts if v.flow.orientation_unknown)
    if unknown:
        body["orientation_unknown"] = unknown
        # of which between public addresses: the ones listing local_networks would orient
        ends = UnknownOrientation.count(v.flow for v in verdicts if v.flow.orientation_unknown)
        body["orientation_unknown_public"] = ends.public
    return body


def emission_records(emissions: Sequence[Emission], source: str) -> list[dict[str, Any]]:
    """Ledger records for aggregated violations: a first occurrence is an ordinary
    ``egress_violation`` (the verdict), a summary of repeats an ``egress_violation_repeat``."""
    records: list[dict[str, Any]] = []
    for emission in emissions:
        if emission.kind == "first" and emission.verdict is not None:
            body, kind = emission.verdict.to_json(), "egress_violation"
        else:
            body, kind = emission.to_json(), "egress_violation_repeat"
        body["observed_by"] = source
        records.append({"kind": kind, "data": body})
    return records


def audit_record(item: AuditEvent | Unparsed) -> dict[str, Any]:
    """The ledger record for one audit event or unparsed input."""
    if isinstance(item, Unparsed):
        return {"kind": "unparsed", "data": item.to_json()}
    return {"kind": "audit_event", "data": item.to_json()}


class Recorder:
    """Appends records to ``ledger`` and counts what was appended in ``metrics``."""

    def __init__(self, ledger: Ledger, metrics: Metrics) -> None:
        self.ledger = ledger
        self.metrics = metrics

    def record_audit(
        self,
        items: Sequence[AuditEvent | Unparsed],
        *,
        cursors: Mapping[str, str] | None = None,
    ) -> AppendResult:
        """Append audit events and unparsed inputs; dedup by event id / source position.

        ``cursors`` (source cursor key → value) commit in the same transaction, so a restart
        resumes exactly after the last durable record. Raises the ledger's errors unchanged
        (the caller keeps its cursor and retries).
        """
        records = [audit_record(i) for i in items]
        result = self.ledger.append(
            records, dedup_keys=[i.dedup_key for i in items], cursors=cursors
        )
        # count only what was new: a redelivery or a re-read line is not a second event
        self.metrics.count_audit([items[i] for i in result.accepted])
        self._after_append(result, records)
        return result

    def record_verdicts(
        self,
        verdicts: Sequence[Verdict],
        *,
        source: str,
        start: datetime,
        end: datetime,
        dedup_prefix: str | None = None,
        cursors: Mapping[str, str] | None = None,
        aggregator: Aggregator | None = None,
    ) -> AppendResult:
        """Append one ``egress_violation`` per violation and one ``egress_summary``.

        With ``dedup_prefix`` (e.g. the SHA-256 of a capture file) a second run over the same
        input adds nothing. With ``aggregator`` (live capture) a repeated violation is folded
        into its aggregate: the first occurrence is recorded, repeats become periodic
        ``egress_violation_repeat`` records (``aggregator.drain(end)``). Metrics are counted
        only for a first recording.
        """
        records: list[dict[str, Any]] = []
        keys: list[str | None] = []
        if aggregator is not None:
            for v in verdicts:
                aggregator.add(v)
            emissions = aggregator.drain(end)
            records.extend(emission_records(emissions, source))
            keys.extend(e.dedup_key for e in emissions)
        for index, v in enumerate(verdicts):
            if v.verdict == "violation" and aggregator is None:
                body = v.to_json()
                body["observed_by"] = source
                records.append({"kind": "egress_violation", "data": body})
                keys.append(f"{dedup_prefix}:flow:{index}" if dedup_prefix else None)
        if verdicts:
            records.append(
                {
                    "kind": "egress_summary",
                    "data": summarize(verdicts, source=source, start=start, end=end),
                }
            )
            keys.append(f"{dedup_prefix}:summary" if dedup_prefix else None)
        if not records and not cursors:
            return AppendResult(appended=0, duplicates=0, first_seq=None, last_seq=None)
        result = self.ledger.append(records, dedup_keys=keys, cursors=cursors)
        if result.appended:
            self.metrics.count_verdicts(verdicts)
        self._after_append(result, records)
        return result

    def record_emissions(self, emissions: Sequence[Emission], *, source: str) -> AppendResult:
        """Append aggregated violations (``emission_records``), deduplicated by their keys."""
        if not emissions:
            return AppendResult(0, 0, None, None)
        records = emission_records(emissions, source)
        result = self.ledger.append(records, dedup_keys=[e.dedup_key for e in emissions])
        self._after_append(result, records)
        return result

    def record_records(
        self, records: Sequence[Mapping[str, Any]], *, dedup_keys: Sequence[str | None]
    ) -> AppendResult:
        """Append records built elsewhere (``{"kind": ..., "data": ...}``), deduplicated by
        ``dedup_keys`` (one per record). Raises the ledger's errors unchanged."""
        if not records:
            return AppendResult(0, 0, None, None)
        result = self.ledger.append(list(records), dedup_keys=list(dedup_keys))
        self._after_append(result, records)
        return result

    def _after_append(self, result: AppendResult, records: Sequence[Mapping[str, Any]]) -> None:
        if result.duplicates:
            self.metrics.ledger_duplicates.inc(result.duplicates)
        for kind, n in Counter(str(records[i]["kind"]) for i in result.accepted).items():
            self.metrics.ledger_appends.labels(kind).inc(n)
        if result.last_seq is not None:
            self.metrics.ledger_records.set(result.last_seq + 1)
