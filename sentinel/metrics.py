"""Prometheus metrics (DESIGN.md "Metrics").

Names follow the Prometheus conventions: base units (seconds, bytes), ``_total`` for counters,
labels with low cardinality (verdict, reason, ISO country code, source id, action, outcome).
One ``Metrics`` object owns one ``CollectorRegistry`` — injected, never the global default — so
tests and several daemons in one process never share counters. The exposition is the classic
text format (``promtool check metrics`` rejects OpenMetrics).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, generate_latest
from prometheus_client.exposition import start_http_server

from sentinel import __version__
from sentinel.records import AuditEvent, Unparsed, Verdict

if TYPE_CHECKING:
    from sentinel.flows.netflow import NetflowStats


class Metrics:
    """Every metric Sentinel exports, on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build_info = Info("sentinel_build", "Sentinel build information.", registry=r)
        self.build_info.info({"version": __version__})
        self.flows = Counter(
            "sentinel_flows",
            "Flows judged by the egress policy, by verdict and reason.",
            ["verdict", "reason"],
            registry=r,
        )
        self.egress_bytes = Counter(
            "sentinel_egress_bytes",
            "Bytes sent from local hosts to remote endpoints, by remote country "
            "(ISO 3166-1 alpha-2; else internal, allowed-network, waived or unknown).",
            ["country"],
            registry=r,
        )
        self.violations = Counter(
            "sentinel_egress_violations",
            "Flows judged a violation, by reason and remote country.",
            ["reason", "country"],
            registry=r,
        )
        self.orientation_unknown = Counter(
            "sentinel_egress_orientation_unknown",
            "Flows judged with neither endpoint in the policy's local_networks (captured or "
            "NetFlow/IPFIX): "
            "both endpoints judged as the remote one, the worse verdict kept. Set "
            "local_networks to your own address ranges.",
            registry=r,
        )
        self.audit_events = Counter(
            "sentinel_audit_events",
            "Normalized registry audit events, by source, action and outcome.",
            ["source", "action", "outcome"],
            registry=r,
        )
        self.unparsed = Counter(
            "sentinel_unparsed_inputs",
            "Input lines or payloads that could not be parsed (kept in the ledger), by source.",
            ["source"],
            registry=r,
        )
        self.capture_packets = Counter(
            "sentinel_capture_packets",
            "Packets read from captures (live or files).",
            registry=r,
        )
        self.capture_drops = Counter(
            "sentinel_capture_drops",
            "Packets the kernel dropped before live capture could read them.",
            registry=r,
        )
        self.capture_truncations = Counter(
            "sentinel_capture_truncations",
            "Capture files that ended in a damaged or cut-off record.",
            registry=r,
        )
        self.capture_dns = Counter(
            "sentinel_capture_dns",
            "DNS answers read from captures for flow names, and problems with them, by kind "
            "(responses, addresses, malformed, truncated, ignored, evicted).",
            ["kind"],
            registry=r,
        )
        self.ledger_records = Gauge(
            "sentinel_ledger_records",
            "Records in the ledger.",
            registry=r,
        )
        self.ledger_appends = Counter(
            "sentinel_ledger_appended_records",
            "Records appended to the ledger by this process.",
            ["kind"],
            registry=r,
        )
        self.ledger_duplicates = Counter(
            "sentinel_ledger_duplicates_skipped",
            "Records not appended because their dedup key was already in the ledger.",
            registry=r,
        )
        self.ledger_verify_valid = Gauge(
            "sentinel_ledger_verification_valid",
            "1 when the last ledger verification was valid, 0 when it was not.",
            registry=r,
        )
        self.ledger_verify_time = Gauge(
            "sentinel_ledger_last_verification_timestamp_seconds",
            "Unix time of the last ledger verification.",
            registry=r,
        )
        self.ledger_checkpoint_time = Gauge(
            "sentinel_ledger_last_checkpoint_timestamp_seconds",
            "Unix time of the last signed ledger checkpoint.",
            registry=r,
        )
        self.ledger_checkpoint_size = Gauge(
            "sentinel_ledger_last_checkpoint_size",
            "Tree size (records) covered by the last signed ledger checkpoint.",
            registry=r,
        )
        self.ledger_checkpoint_refused = Counter(
            "sentinel_ledger_checkpoint_refusals",
            "Checkpoints refused because the ledger no longer extends the last one (rewritten, "
            "truncated or rolled back).",
            registry=r,
        )
        self.ledger_timestamps = Counter(
            "sentinel_ledger_timestamps",
            "RFC 3161 time-stamps of ledger checkpoints, by result (ok: verified and stored; "
            "unreachable, rejected, invalid: the TSA was down, refused or answered wrongly, "
            "the checkpoint is kept without a token and retried; error: a local problem).",
            ["result"],
            registry=r,
        )
        for result in ("ok", "unreachable", "rejected", "invalid", "error"):
            self.ledger_timestamps.labels(result)  # exported at 0, so increase() sees the first
        self.geoip_build_time = Gauge(
            "sentinel_geoip_database_build_timestamp_seconds",
            "Build time (Unix seconds) of the loaded GeoIP database.",
            registry=r,
        )
        self.webhook_rejected = Counter(
            "sentinel_webhook_rejected_requests",
            "Requests the webhook receiver refused, by HTTP status (401 bad credentials, 413 too "
            "large, 429 rate limited, 503 the ledger could not take the records...).",
            ["status"],
            registry=r,
        )
        self.geoip_reloads = Counter(
            "sentinel_geoip_reloads",
            "GeoIP database file changes seen, by database (primary, secondary) and result "
            "(ok: swapped in; refused: broken or wrong type, the previous file keeps serving).",
            ["database", "result"],
            registry=r,
        )
        self.source_last_event = Gauge(
            "sentinel_source_last_event_timestamp_seconds",
            "Unix time of the last event received from each audit source.",
            ["source"],
            registry=r,
        )
        self.source_errors = Counter(
            "sentinel_source_errors",
            "Errors a source hit while reading (it keeps going), by source.",
            ["source"],
            registry=r,
        )
        self.mlflow_reconstructions = Counter(
            "sentinel_mlflow_reconstructions",
            "MLflow access events that needed the REST API, by source and result "
            "(reconstructed, unmatched, unavailable).",
            ["source", "result"],
            registry=r,
        )
        self.audit_findings = Counter(
            "sentinel_audit_findings",
            "Times an audit rule's condition held (before aggregation), by rule id and severity.",
            ["rule", "severity"],
            registry=r,
        )
        # conntrack (sentinel.flows.conntrack) and sensor health (sentinel.runtime.health)
        self.conntrack_events = Counter(
            "sentinel_conntrack_events",
            "Conntrack events read from netlink, by event (new, destroy).",
            ["event"],
            registry=r,
        )
        self.conntrack_overruns = Counter(
            "sentinel_conntrack_overruns",
            "Times the kernel dropped conntrack events because Sentinel's socket buffer was full "
            "(ENOBUFS); each is followed by a resync from a full dump.",
            registry=r,
        )
        self.conntrack_lost_destroys = Counter(
            "sentinel_conntrack_lost_destroys",
            "Connections whose destroy event was lost in an overrun, reported with their last "
            "known counters.",
            registry=r,
        )
        self.conntrack_accounting = Gauge(
            "sentinel_conntrack_accounting",
            "1 when conntrack events carry packet and byte counters "
            "(net.netfilter.nf_conntrack_acct=1), 0 when they do not, by source.",
            ["source"],
            registry=r,
        )
        self.source_silent = Gauge(
            "sentinel_source_silent",
            "1 while a source (audit, capture, conntrack, netflow) has shown no event or packet "
            "for longer than its configured silence, else 0.",
            ["source"],
            registry=r,
        )
        self.source_silences = Counter(
            "sentinel_source_silences",
            "Times a source went silent.",
            ["source"],
            registry=r,
        )
        self.source_last_activity = Gauge(
            "sentinel_source_last_activity_timestamp_seconds",
            "Unix time Sentinel last saw an event or packet from a source.",
            ["source"],
            registry=r,
        )
        self.source_losses = Counter(
            "sentinel_source_losses",
            "Evidence a source lost, by source and loss: drops (kernel capture drops), overruns "
            "(conntrack ENOBUFS), lost_destroys (conntrack ends missed in an overrun), "
            "sequence_gaps and missing_templates (NetFlow/IPFIX).",
            ["source", "loss"],
            registry=r,
        )
        self.netflow_datagrams = Counter(
            "sentinel_netflow_datagrams",
            "NetFlow/IPFIX datagrams decoded, by export version (5, 9, 10).",
            ["version"],
            registry=r,
        )
        self.netflow_records = Counter(
            "sentinel_netflow_records",
            "NetFlow/IPFIX data records decoded (flows handed to the egress policy).",
            registry=r,
        )
        self.netflow_sequence_lost = Counter(
            "sentinel_netflow_sequence_lost",
            "Export loss seen in sequence numbers, by version: records for 5 and 10 (IPFIX), "
            "export packets for 9.",
            ["version"],
            registry=r,
        )
        self.netflow_missing_template = Counter(
            "sentinel_netflow_missing_template_sets",
            "Data sets dropped because their template never arrived (buffer limit, older than "
            "pending_max_age, exporter forgotten, or stop).",
            registry=r,
        )
        self.netflow_pending_expired = Counter(
            "sentinel_netflow_pending_expired_sets",
            "Data sets dropped after waiting pending_max_age seconds for their template (also "
            "in sentinel_netflow_missing_template_sets_total).",
            registry=r,
        )
        self.netflow_exporters_expired = Counter(
            "sentinel_netflow_exporters_expired",
            "Exporter addresses forgotten after exporter_idle_timeout seconds without a "
            "datagram (their templates, options data and sequence positions dropped).",
            registry=r,
        )
        self.netflow_templates_expired = Counter(
            "sentinel_netflow_templates_expired",
            "Templates and options templates dropped with a forgotten exporter.",
            registry=r,
        )
        self.netflow_malformed = Counter(
            "sentinel_netflow_malformed",
            "NetFlow/IPFIX datagrams or sets that could not be decoded, by reason.",
            ["reason"],
            registry=r,
        )
        self.netflow_refused = Counter(
            "sentinel_netflow_refused_datagrams",
            "NetFlow/IPFIX datagrams refused by a limit (too large, too many exporters).",
            ["reason"],
            registry=r,
        )
        self.netflow_drops = Counter(
            "sentinel_netflow_kernel_drops",
            "Datagrams the kernel dropped because the collector's socket buffer was full.",
            registry=r,
        )
        self.netflow_pending = Gauge(
            "sentinel_netflow_pending_sets",
            "Data sets buffered now, waiting for their template.",
            registry=r,
        )
        self._lock = threading.Lock()
        self._netflow_seen: dict[tuple[str, str], int] = {}

    def observe_netflow(self, stats: NetflowStats, kernel_drops: int | None = None) -> None:
        """Advance the NetFlow counters to the cumulative values in ``stats`` (a collector's
        ``NetflowStats``; read it under the collector's lock)."""
        with self._lock:
            seen = self._netflow_seen

            def advance(counter: Counter, key: tuple[str, str], value: int) -> None:
                delta = value - seen.get(key, 0)
                if delta > 0:
                    (counter.labels(key[1]) if key[1] else counter).inc(delta)
                    seen[key] = value

            for version, n in stats.datagrams.items():
                advance(self.netflow_datagrams, ("datagrams", version), n)
            advance(self.netflow_records, ("records", ""), stats.records)
            lost: dict[str, int] = {}
            for (_exporter, number, _domain), seq in stats.sequences.items():
                lost[str(number)] = lost.get(str(number), 0) + seq.lost
            for label, n in lost.items():
                advance(self.netflow_sequence_lost, ("lost", label), n)
            advance(self.netflow_missing_template, ("missing", ""), stats.missing_template_sets)
            advance(
                self.netflow_pending_expired, ("pending_expired", ""), stats.pending_expired_sets
            )
            advance(
                self.netflow_exporters_expired, ("exporters_expired", ""), stats.exporters_expired
            )
            advance(
                self.netflow_templates_expired, ("templates_expired", ""), stats.templates_expired
            )
            for reason, n in stats.malformed.items():
                advance(self.netflow_malformed, ("malformed", reason), n)
            for reason, n in stats.refused.items():
                advance(self.netflow_refused, ("refused", reason), n)
            if kernel_drops is not None:
                advance(self.netflow_drops, ("drops", ""), kernel_drops)
            self.netflow_pending.set(stats.pending_sets)

    def count_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        """Count flows, egress bytes per country, violations and flows of unknown
        orientation."""
        unknown = 0
        for v in verdicts:
            self.flows.labels(v.verdict, v.reason).inc()
            unknown += v.flow.orientation_unknown
            country = v.location_label
            if v.flow.bytes_out:
                self.egress_bytes.labels(country).inc(v.flow.bytes_out)
            if v.verdict == "violation":
                self.violations.labels(v.reason, country).inc()
        if unknown:
            self.orientation_unknown.inc(unknown)

    def count_audit(self, items: Iterable[AuditEvent | Unparsed]) -> None:
        """Count audit events by source/action/outcome and unparsed input by source."""
        for item in items:
            if isinstance(item, Unparsed):
                self.unparsed.labels(item.source).inc()
                continue
            self.audit_events.labels(item.source, item.action, item.outcome).inc()
            self.source_last_event.labels(item.source).set(item.ts.timestamp())

    def exposition(self) -> bytes:
        """The classic Prometheus text exposition of every metric (bytes, UTF-8)."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> MetricsServer:
        """Start the ``/metrics`` HTTP endpoint on ``host:port``; returns a stoppable handle."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)


class MetricsServer:
    """A running metrics endpoint; ``stop()`` shuts it down and joins its thread."""

    def __init__(self, server: object, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._server.shutdown()  # type: ignore[attr-defined]
        self._server.server_close()  # type: ignore[attr-defined]
        self._thread.join(timeout=5)
