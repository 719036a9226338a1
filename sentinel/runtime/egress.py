"""Egress observation → verdicts → ledger, shared by the daemon, ``sentinel demo`` and CLI.

``judge_capture_file`` reads a finished capture file once, judges each flow at the time it was
seen (so a waiver that expired later still covered it), and records the violations and a
summary keyed by the file's SHA-256: feeding the same file twice adds nothing.
``FlowJudge`` is the live path: packets from a capture go into a ``FlowTable``; ``flush`` judges
the flows that went idle or ran too long.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sentinel.flows import Decoder, FlowTable, ReadStats, read_flows
from sentinel.geo.database import GeoDatabase
from sentinel.ledger import AppendResult
from sentinel.policy.egress import EgressPolicy
from sentinel.records import Flow, Verdict
from sentinel.runtime.recorder import Recorder
from sentinel.timefmt import utcnow

log = logging.getLogger(__name__)


def judge_flows(
    flows: list[Flow], policy: EgressPolicy, geo: GeoDatabase | None
) -> list[Verdict]:
    """Judge each flow at its own ``last_seen`` time (waiver expiry is decided then)."""
    return [policy.evaluate(f, geo, f.last_seen) for f in flows]


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
    path: Path, policy: EgressPolicy, geo: GeoDatabase | None, recorder: Recorder
) -> CaptureOutcome:
    """Read ``path`` (pcap/pcapng, optionally gzip), judge its flows, record them.

    Raises ``CaptureError`` for an unreadable file; a truncated one is judged as far as it
    goes and counted in ``stats`` and the ``sentinel_capture_truncations_total`` metric.
    """
    digest = file_sha256(path)
    flows, stats = read_flows([path], policy.local_networks)
    verdicts = judge_flows(flows, policy, geo)
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
        if stats.truncated:
            recorder.metrics.capture_truncations.inc()
    return CaptureOutcome(path, digest, stats, verdicts, result)


class FlowJudge:
    """Live path: packets → flow table → periodic verdicts recorded in the ledger.

    ``add_packet`` is called from the capture thread; ``flush`` from the scheduler. Both take
    the same lock, so a flow is judged exactly once.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        geo: GeoDatabase | None,
        recorder: Recorder,
        *,
        source: str,
        idle_timeout: float,
        active_timeout: float,
        max_flows: int,
    ) -> None:
        self.policy = policy
        self.geo = geo
        self.recorder = recorder
        self.source = source
        self.idle_timeout = idle_timeout
        self.active_timeout = active_timeout
        self._table = FlowTable(policy.local_networks, max_flows=max_flows)
        self._decoder = Decoder()
        self._lock = threading.Lock()
        self._window_start: datetime = utcnow()
        self.packets = 0

    def add_packet(self, ts_ns: int, linktype: int, data: bytes) -> None:
        """Decode one captured frame and account it to its flow."""
        summary = self._decoder.decode(linktype, data)
        with self._lock:
            self.packets += 1
            if summary is not None:
                self._table.add(ts_ns, summary)

    def flush(self, *, everything: bool = False) -> list[Verdict]:
        """Judge flows that are idle or too long (all of them with ``everything``) and record.

        Returns the verdicts recorded. A ledger failure is logged and the flows are lost only
        from memory, never silently: the error propagates to the caller's error counter.
        """
        now = utcnow()
        with self._lock:
            if everything:
                flows = self._table.drain()
            else:
                flows = self._table.expire(
                    int(now.timestamp() * 1e9), self.idle_timeout, self.active_timeout
                )
            packets, self.packets = self.packets, 0
            start, self._window_start = self._window_start, now
        self.recorder.metrics.capture_packets.inc(packets)
        if not flows:
            return []
        verdicts = judge_flows(flows, self.policy, self.geo)
        self.recorder.record_verdicts(verdicts, source=self.source, start=start, end=now)
        return verdicts
