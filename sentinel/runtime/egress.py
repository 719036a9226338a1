"""Egress observation → verdicts → ledger, shared by the daemon, ``sentinel demo`` and CLI.

``judge_capture_file`` reads a finished capture file once, judges each flow at the time it was
seen (so a waiver that expired later still covered it), and records the violations and a
summary keyed by the file's SHA-256: feeding the same file twice adds nothing.
``FlowJudge`` is the live path: a ``LiveCapture`` keeps the flow table; ``flush`` judges the
flows that went idle or ran too long.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sentinel.flows import DEFAULT_DNS, DnsOptions, ReadStats, read_flows
from sentinel.flows.live import LiveCapture
from sentinel.geo import GeoSource
from sentinel.ledger import AppendResult
from sentinel.policy.aggregate import Aggregator
from sentinel.policy.egress import EgressPolicy
from sentinel.records import Flow, Verdict
from sentinel.runtime.recorder import Recorder
from sentinel.timefmt import utcnow

log = logging.getLogger(__name__)


def judge_flows(
    flows: list[Flow],
    policy: EgressPolicy,
    geo: GeoSource | None,
    secondary: GeoSource | None = None,
) -> list[Verdict]:
    """Judge each flow at its own ``last_seen`` time (waiver expiry is decided then), every
    flow against the same database (``EgressPolicy.evaluate_many``).

    ``secondary`` is the optional second GeoIP database whose disagreement is flagged.
    """
    return policy.evaluate_many(flows, geo, None, secondary=secondary)


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class CaptureOutcome:
    """What judging one capture file produced."""

    path: Path
    sha256: str
    stats: ReadStats
    verdicts: list[Verdict]
    result: AppendResult

    @property
    def violations(self) -> int:
        return sum(1 for v in self.verdicts if v.verdict == "violation")


def judge_capture_file(
    path: Path,
    policy: EgressPolicy,
    geo: GeoSource | None,
    recorder: Recorder,
    *,
    secondary: GeoSource | None = None,
    dns: DnsOptions | None = DEFAULT_DNS,
) -> CaptureOutcome:
    """Read ``path`` (pcap/pcapng, optionally gzip), judge its flows, record them; ``dns``
    names flows from the capture's DNS answers (``None``: off).

    Raises ``CaptureError`` for an unreadable file; a truncated one is judged as far as it
    goes and counted in ``stats`` and the ``sentinel_capture_truncations_total`` metric.
    """
    digest = file_sha256(path)
    flows, stats = read_flows([path], policy.local_networks, dns=dns)
    verdicts = judge_flows(flows, policy, geo, secondary)
    if flows:
        start = min(f.first_seen for f in flows)
        end = max(f.last_seen for f in flows)
    else:
        start = end = utcnow()
    result = recorder.record_verdicts(
        verdicts,
        source=f"pcap:{path.name}",
        start=start,
        end=end,
        dedup_prefix=f"pcap:{digest}",
        cursors={f"pcap:{digest}": path.name},
    )
    if result.appended:
        recorder.metrics.capture_packets.inc(stats.packets)
        for kind, n in stats.dns.items():
            recorder.metrics.capture_dns.labels(kind).inc(n)
        if stats.truncated:
            recorder.metrics.capture_truncations.inc()
    return CaptureOutcome(path, digest, stats, verdicts, result)


class FlowSource(Protocol):
    """What ``FlowJudge`` drives: a live capture, or conntrack events
    (``sentinel.flows.conntrack.ConntrackSource``)."""

    def start(self) -> None: ...

    def collect(
        self, now_ns: int, idle_timeout_s: float, active_timeout_s: float
    ) -> list[Flow]: ...

    def stop(self) -> list[Flow]: ...


class FlowJudge:
    """Live path: a ``LiveCapture`` (or another ``FlowSource``) feeds its flows; ``flush``
    judges and records.

    ``flush`` runs on the scheduler: it takes the flows that went idle (``idle_timeout``
    seconds) or ran too long (``active_timeout``), judges them and appends the violations and
    one ``egress_summary`` for the window since the previous flush. ``stop`` stops the capture
    and judges every flow still open, so nothing seen is left unjudged. Kernel drops reported
    by the capture socket go to ``sentinel_capture_drops_total``.
    """

    def __init__(
        self,
        capture: FlowSource,
        policy: EgressPolicy,
        geo: GeoSource | None,
        recorder: Recorder,
        *,
        idle_timeout: float,
        active_timeout: float,
        secondary: GeoSource | None = None,
        source: str | None = None,
    ) -> None:
        self.capture = capture
        self.policy = policy
        self.geo = geo
        self.secondary = secondary
        self.recorder = recorder
        #: ``observed_by`` of the records: ``capture:<interface>`` unless given
        self.source = source or f"capture:{getattr(capture, 'interface', '?')}"
        self.idle_timeout = idle_timeout
        self.active_timeout = active_timeout
        self._lock = threading.Lock()
        self._window_start: datetime = utcnow()
        #: repeated violations (same remote, port, protocol, reason) fold into one record per
        #: ``active_timeout`` seconds instead of one per flow
        self.aggregator = Aggregator(interval=max(active_timeout, 60.0))
        self._packets_seen = 0
        self._drops_seen = 0
        self._dns_seen: dict[str, int] = {}

    def start(self) -> None:
        """Open the capture socket (``CaptureError`` when it cannot) and start capturing."""
        self.capture.start()

    def flush(self) -> list[Verdict]:
        """Judge and record the flows that are due; returns their verdicts."""
        now = utcnow()
        flows = self.capture.collect(
            int(now.timestamp() * 1e9), self.idle_timeout, self.active_timeout
        )
        return self._record(flows, now)

    def stop(self) -> None:
        """Stop capturing, then judge and record every flow still open and every pending
        aggregate of repeated violations."""
        now = utcnow()
        self._record(self.capture.stop(), now)
        with self._lock:
            self.recorder.record_emissions(
                self.aggregator.drain(now, final=True), source=self.source
            )

    def _record(self, flows: list[Flow], now: datetime) -> list[Verdict]:
        with self._lock:
            self._account()
            start, self._window_start = self._window_start, now
            if not flows:
                return []
            verdicts = judge_flows(flows, self.policy, self.geo, self.secondary)
            self.recorder.record_verdicts(
                verdicts, source=self.source, start=start, end=now, aggregator=self.aggregator
            )
            return verdicts

    def _account(self) -> None:
        """Count what the source saw since the last flush (live capture: packets, kernel
        drops). Called under the lock."""
        if not isinstance(self.capture, LiveCapture):
            return
        metrics = self.recorder.metrics
        packets, drops = self.capture.packets, self.capture.kernel_drops or 0
        metrics.capture_packets.inc(max(0, packets - self._packets_seen))
        metrics.capture_drops.inc(max(0, drops - self._drops_seen))
        self._packets_seen, self._drops_seen = packets, drops
        dns = self.capture.dns_counts()
        for kind, n in dns.items():
            metrics.capture_dns.labels(kind).inc(max(0, n - self._dns_seen.get(kind, 0)))
        self._dns_seen = dns
