"""Compliance report data: the seed's five criteria, each with a status and its evidence.

``build_report`` streams the ledger once (constant memory apart from the aggregates) and returns
a JSON-ready ``dict``; ``sentinel.report.render`` turns it into HTML. A record belongs to the
period ``[start, end)`` by its *event* time: ``data.ts`` for audit events, ``data.last_seen``
for egress verdicts, ``data.period_end`` for egress summaries and sensor-health records,
``recorded_at`` otherwise.

``coverage`` (from ``sensor_health`` records, ``sentinel.runtime.health``) says how complete
the evidence of the period is: per source, its activity, silences (with their times) and what
it lost (kernel drops, conntrack overruns, NetFlow sequence gaps and missing templates).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sentinel import __version__
from sentinel.policy.egress import special_internal
from sentinel.timefmt import format_ts, parse_ts, utcnow

#: the five criteria, in the order the report shows them
CRITERIA = (
    ("data_residency", "Data residency: no model data leaves the jurisdiction"),
    ("access_control", "Access control: who touched which model, and who was refused"),
    ("vulnerability_scanning", "Vulnerability scanning of model artifacts"),
    ("replication", "High availability without cross-border replication"),
    ("audit_logging", "Audit logging: complete, tamper-evident trail"),
)

FAILED_ACTIONS = {"auth_failure", "access_denied"}
MAX_LISTED = 200


def _event_time(kind: str, data: Mapping[str, Any], recorded_at: str) -> datetime:
    key = {
        "audit_event": "ts",
        "egress_violation": "last_seen",
        "egress_violation_repeat": "last_seen",
        "egress_summary": "period_end",
        "audit_finding": "last_seen",
        "sensor_health": "period_end",
    }
    value = data.get(key.get(kind, ""), None) or recorded_at
    try:
        return parse_ts(str(value))
    except ValueError:
        return parse_ts(recorded_at)


#: records of flows that left the jurisdiction (in the period by flow time or by recording)
_VIOLATION_KINDS = frozenset({"egress_violation", "egress_violation_repeat"})


def _recorded(rec: Mapping[str, Any]) -> datetime:
    """When the ledger recorded ``rec`` (``recorded_at``; the epoch if it is unreadable)."""
    try:
        return parse_ts(str(rec.get("recorded_at", "")))
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=UTC)


def build_report(
    records: Iterable[Mapping[str, Any]],
    *,
    start: datetime,
    end: datetime,
    verification: Mapping[str, Any] | None,
    jurisdiction: str | None = None,
    generated_at: datetime | None = None,
) -> dict[str, Any]:
    """Aggregate ledger ``records`` (decoded canonical records) into the report's data.

    ``records`` are mappings with ``kind``, ``recorded_at`` and ``data`` (as stored by the
    ledger). ``verification`` is the ledger verification result as a JSON-ready mapping (status,
    size, first_bad_seq, problem) or ``None`` when it was not run.
    """
    by_country: dict[str, Counter[str]] = defaultdict(Counter)
    by_verdict: Counter[str] = Counter()
    violations: list[dict[str, Any]] = []
    violation_count = 0
    actors: dict[tuple[str, str, bool], Counter[str]] = defaultdict(Counter)
    failures: list[dict[str, Any]] = []
    failure_count = 0
    events_by_source: dict[str, Counter[str]] = defaultdict(Counter)
    unparsed_by_source: Counter[str] = Counter()
    artifacts: Counter[str] = Counter()
    header_sourced = 0
    records_in_period = 0
    egress_sources: set[str] = set()
    repeated = 0  # repeats of a recorded violation, aggregated (live capture)
    orientation = _Orientation()
    findings: list[dict[str, Any]] = []
    finding_hits = 0
    coverage = _Coverage()

    for rec in records:
        kind = str(rec.get("kind", ""))
        data = rec.get("data") or {}
        when = _event_time(kind, data, str(rec.get("recorded_at", "")))
        if not start <= when < end and not (
            # a violation recorded in the period counts whatever time its flow claims: an
            # exporter with a wrong clock (or an old capture judged today) must not hide it
            kind in _VIOLATION_KINDS and start <= _recorded(rec) < end
        ):
            continue
        records_in_period += 1
        if kind == "audit_event":
            source = str(data.get("source"))
            action = str(data.get("action"))
            events_by_source[source][action] += 1
            actor = data.get("actor") or "(anonymous)"
            actors[(source, str(actor), bool(data.get("actor_verified")))][action] += 1
            if data.get("artifact") and action in {"push", "pull", "delete", "untag", "mount"}:
                artifacts[f"{data['artifact']} {action}"] += 1
            if data.get("client_ip_source") == "header":
                header_sourced += 1
            if action in FAILED_ACTIONS:
                failure_count += 1
                if len(failures) < MAX_LISTED:
                    failures.append(dict(data))
        elif kind == "unparsed":
            unparsed_by_source[str(data.get("source"))] += 1
        elif kind == "egress_summary":
            egress_sources.add(str(data.get("source")))
            for country, counts in (data.get("by_country") or {}).items():
                for name, value in counts.items():
                    by_country[country][name] += int(value)
            for verdict, value in (data.get("by_verdict") or {}).items():
                by_verdict[verdict] += int(value)
            orientation.add_summary(data)
        elif kind == "egress_violation":
            violation_count += 1
            row = dict(data)
            orientation.add_violation(row)
            if len(violations) < MAX_LISTED:
                violations.append(row)
        elif kind == "egress_violation_repeat":
            repeated += int(data.get("count") or 0)
        elif kind == "sensor_health":
            coverage.add(data)
        elif kind == "audit_finding":
            finding_hits += int(data.get("count") or 1)
            if len(findings) < MAX_LISTED:
                findings.append(dict(data))

    criteria: dict[str, dict[str, Any]] = {}
    flows_seen = sum(by_verdict.values())
    # the flow summaries count violations too; the criterion fails on either count, so that
    # the verdict can never say "none left" above a table that lists violations
    summarized = by_verdict.get("violation", 0)
    if violation_count or repeated or summarized:
        left = max(violation_count, summarized)
        status, summary = "fail", f"{left} flow(s) left the jurisdiction"
        if summarized != violation_count:
            summary += (
                f" ({summarized} per the flow summaries, {violation_count} violation "
                "record(s) in this period)"
            )
        if repeated:
            summary += f", and {repeated} repeat(s) of them (aggregated)"
    elif flows_seen:
        status, summary = "pass", f"{flows_seen} flow(s) judged, none left the jurisdiction"
    else:
        status, summary = "no data", "no egress observation recorded in this period"
    summary += orientation.sentence()
    criteria["data_residency"] = {
        "status": status,
        "summary": summary,
        "by_country": {c: dict(v) for c, v in sorted(by_country.items())},
        "by_verdict": dict(by_verdict),
        "violations": violations,
        "violation_count": violation_count,
        "repeated_violations": repeated,
        "orientation_unknown": orientation.result(),
        "sources": sorted(egress_sources),
    }
    total_events = sum(sum(c.values()) for c in events_by_source.values())
    if not total_events:
        status, summary = "no data", "no registry audit event recorded in this period"
    elif failure_count or findings:
        status = "attention"
        summary = (
            f"{failure_count} failed or denied access record(s) and {finding_hits} audit-rule "
            f"hit(s) among {total_events} event(s) from {len(events_by_source)} source(s) "
            "(one request may be seen by several sources)"
        )
    else:
        status, summary = "pass", f"{total_events} audited access(es), no failed access"
    criteria["access_control"] = {
        "status": status,
        "summary": summary,
        "actors": [
            {
                "source": s,
                "actor": a,
                "verified": v,
                "actions": dict(c),
                "total": sum(c.values()),
            }
            for (s, a, v), c in sorted(
                actors.items(), key=lambda kv: (kv[0][0], -sum(kv[1].values()))
            )
        ],
        "failures": failures,
        "failure_count": failure_count,
        "findings": findings,
        "finding_hits": finding_hits,
        "artifacts": dict(artifacts.most_common(MAX_LISTED)),
        "header_sourced_addresses": header_sourced,
    }
    criteria["vulnerability_scanning"] = {
        "status": "not checked yet",
        "summary": "Sentinel does not scan model artifacts yet; no evidence either way.",
    }
    criteria["replication"] = {
        "status": "not checked yet",
        "summary": "Replication and storage targets are not checked yet; no evidence either way.",
    }
    ver_status = (verification or {}).get("status")
    if ver_status == "valid" and total_events:
        status = "pass"
    elif ver_status in {"invalid", "unverifiable"}:
        status = "fail"
    elif ver_status is None:
        status = "not checked yet"
    else:  # valid-unpinned: intact, but records after the last signed checkpoint
        status = "attention"
    pinned = {
        "valid": "intact and pinned by a signed checkpoint",
        "valid-unpinned": "intact, but the newest records are not yet covered by a signed "
        "checkpoint (a truncation of them would not be detected)",
        "invalid": "TAMPERED",
        "unverifiable": "cannot be verified (checkpoint key unknown or missing)",
    }.get(str(ver_status), "not verified")
    criteria["audit_logging"] = {
        "status": status,
        "summary": (
            f"ledger {pinned}; {total_events} event(s) from "
            f"{len(events_by_source)} source(s), {sum(unparsed_by_source.values())} "
            "unparsed input(s) kept as evidence"
        ),
        "events_by_source": {s: dict(c) for s, c in sorted(events_by_source.items())},
        "unparsed_by_source": dict(unparsed_by_source),
        "verification": dict(verification) if verification else None,
    }
    return {
        "title": "Sentinel compliance report",
        "jurisdiction": jurisdiction,
        "period": {"from": format_ts(start), "to": format_ts(end)},
        "generated_at": format_ts(generated_at or utcnow()),
        "sentinel_version": __version__,
        "records_in_period": records_in_period,
        "coverage": coverage.result(),
        "criteria": [{"key": key, "title": title, **criteria[key]} for key, title in CRITERIA],
    }


class _Orientation:
    """Flows with neither end in ``local_networks`` (``orientation_unknown``: judged from both
    ends, the worse verdict kept), counted from the flow summaries and the violation records.

    ``public`` counts those between public addresses — the ones listing the registry hosts'
    addresses in ``local_networks`` would orient; a flow with a private or special-purpose end
    (``special_internal``) is decided by its public end anyway. Summaries written before
    ``orientation_unknown_public`` existed count whole (conservative). A violation row gets
    ``orientation_note`` (what its "local" address is) when its orientation is unknown."""

    def __init__(self) -> None:
        self.flows = self.public_flows = self.violations = self.public_violations = 0

    def add_summary(self, data: Mapping[str, Any]) -> None:
        unknown = int(data.get("orientation_unknown") or 0)
        self.flows += unknown
        self.public_flows += int(data.get("orientation_unknown_public", unknown) or 0)

    def add_violation(self, row: dict[str, Any]) -> None:
        if not row.get("orientation_unknown"):
            return
        self.violations += 1
        if special_internal(str(row.get("local_ip"))):
            row["orientation_note"] = (
                "orientation unknown: neither end in local_networks (this end is private or "
                "special-purpose; the remote end decided)"
            )
        else:
            self.public_violations += 1
            row["orientation_note"] = (
                "orientation unknown: neither end in local_networks (both ends judged; the "
                "remote end decided)"
            )

    def sentence(self) -> str:
        """A sentence for the criterion's summary (empty when no flow needs it)."""
        public = max(self.public_flows, self.public_violations)
        if not public:
            return ""
        flows = max(self.flows, self.violations)
        return (
            f". {flows} flow(s) had neither end in local_networks and were judged from both "
            f"ends ({self.violations} of the violation records), {public} of them between "
            "public addresses: list the registry hosts' addresses in local_networks so that "
            "Sentinel knows which end is ours"
        )

    def result(self) -> dict[str, int]:
        return {
            "flows": self.flows,
            "public_flows": self.public_flows,
            "violations": self.violations,
            "public_violations": self.public_violations,
        }


#: loss counters of ``sensor_health`` records, with the words the report uses for them
LOSS_WORDS = {
    "drops": "packet(s) dropped by the kernel before capture",
    "overruns": "conntrack event overrun(s) (events lost, resynced)",
    "lost_destroys": "connection end(s) missed in an overrun",
    "sequence_gaps": "NetFlow/IPFIX record(s) (v9: export packets) missing by sequence number",
    "missing_templates": "NetFlow/IPFIX data set(s) whose template never came",
    "failed_passes": "audit-tailer pass(es) that failed with an error (records late or missing)",
    "unreadable_captures": "capture file(s) in the capture directory that could not be read",
}


class _Coverage:
    """Per-source aggregation of ``sensor_health`` records for the report's coverage."""

    def __init__(self) -> None:
        self.sources: dict[str, dict[str, Any]] = {}

    def add(self, data: Mapping[str, Any]) -> None:
        name = str(data.get("source"))
        src = self.sources.setdefault(
            name,
            {
                "source": name,
                "source_kind": str(data.get("source_kind") or "?"),
                "activity": 0,
                "silences": [],
                "silence_count": 0,
                "silent_seconds": 0,
                "losses": Counter(),
                "observed_from": None,
                "observed_to": None,
                "_watched": [],
            },
        )
        counts = data.get("counts") or {}
        event = data.get("event")
        start, end = str(data.get("period_start")), str(data.get("period_end"))
        if event == "summary":
            src["activity"] += int(counts.get("activity") or 0)
            src["silent_seconds"] += int(counts.get("silent_seconds") or 0)
            for loss in LOSS_WORDS:
                if counts.get(loss):
                    src["losses"][loss] += int(counts[loss])
            src["_watched"].append((start, end))
            if src["observed_from"] is None or start < src["observed_from"]:
                src["observed_from"] = start
            if src["observed_to"] is None or end > src["observed_to"]:
                src["observed_to"] = end
        elif event == "silent":
            src["silence_count"] += 1
            if len(src["silences"]) < MAX_LISTED:
                src["silences"].append({"from": start, "noticed": end, "to": None})
        elif event == "resumed":
            for silence in reversed(src["silences"]):
                if silence["from"] == start and silence["to"] is None:
                    silence["to"] = end
                    break
            else:  # went silent before the period
                src["silence_count"] += 1
                if len(src["silences"]) < MAX_LISTED:
                    src["silences"].append({"from": start, "noticed": None, "to": end})

    def result(self) -> dict[str, Any]:
        sources = []
        silences = lost = 0
        unwatched_total = 0
        for name in sorted(self.sources):
            src = dict(self.sources[name])
            unwatched = _unwatched(src.pop("_watched"))
            unwatched_seconds = sum(g["seconds"] for g in unwatched)
            unwatched_total += len(unwatched)
            losses = dict(sorted(src["losses"].items()))
            complete = not src["silence_count"] and not any(losses.values()) and not unwatched
            silences += src["silence_count"]
            lost += sum(losses.values())
            sources.append(
                {
                    **src,
                    "unwatched": unwatched[:MAX_LISTED],
                    "unwatched_count": len(unwatched),
                    "unwatched_seconds": unwatched_seconds,
                    "losses": losses,
                    "loss_text": [f"{n} {LOSS_WORDS[k]}" for k, n in losses.items() if n],
                    "status": "complete" if complete else "gaps",
                }
            )
        if not sources:
            status = "no data"
            summary = "no sensor-health record in this period: its coverage is not known"
        elif silences or lost or unwatched_total:
            status = "gaps"
            summary = (
                f"{len(sources)} source(s) watched; {silences} silence(s), {unwatched_total} "
                f"stretch(es) not watched (Sentinel not running) and {lost} lost event(s) or "
                "packet(s): the evidence of this period is incomplete where listed"
            )
        else:
            status = "complete"
            summary = f"{len(sources)} source(s) watched, no silence, nothing lost"
        return {"status": status, "summary": summary, "sources": sources}


#: consecutive summaries of one run abut; a gap longer than this between them is time the
#: source was not watched (Sentinel stopped, crashed or restarted)
UNWATCHED_TOLERANCE_S = 1.0


def _unwatched(watched: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Gaps between the summarized periods of one source (RFC 3339 strings), oldest first:
    ``[{"from", "to", "seconds"}]`` — stretches in which no Sentinel watched it."""
    spans: list[tuple[datetime, datetime]] = []
    for start, end in watched:
        try:
            spans.append((parse_ts(start), parse_ts(end)))
        except ValueError:
            continue
    spans.sort()
    gaps: list[dict[str, Any]] = []
    reach: datetime | None = None
    for begun, ended in spans:
        if reach is not None and (begun - reach).total_seconds() > UNWATCHED_TOLERANCE_S:
            seconds = int((begun - reach).total_seconds())
            gaps.append({"from": format_ts(reach), "to": format_ts(begun), "seconds": seconds})
        reach = ended if reach is None or ended > reach else reach
    return gaps
