"""Sensor health as evidence: silences, drops and gaps of every source, in metrics and ledger.

A verdict that no data left the country is only as good as the observation behind it. The
``HealthMonitor`` keeps, for every source the daemon runs (audit tailers and receivers, live
capture, conntrack, NetFlow collectors), how much it saw and what it lost, and records:

* ``sensor_health`` ledger records, never one per packet:

  - ``event: "silent"`` when a source has shown no activity for ``silence_after`` seconds:
    ``period_start`` is its last activity, ``period_end`` the moment the silence was noticed;
  - ``event: "resumed"`` when it shows activity again: ``period_start`` is the start of the
    silence (its last activity), ``period_end`` when activity was seen again;
  - ``event: "summary"`` every ``summary_interval`` seconds and when the daemon stops: the
    period's ``activity`` (events or packets), ``silences`` started, ``silent_seconds`` within
    the period, and each loss counter the source reports (``drops``: packets the kernel
    dropped before capture; ``overruns``: conntrack ENOBUFS; ``lost_destroys``: conntrack ends
    missed in an overrun; ``sequence_gaps``/``missing_templates``: NetFlow/IPFIX;
    ``failed_passes``: audit-tailer passes that failed with an error, the source's records
    late or missing until it recovers).

  Body: ``{"source", "source_kind", "event", "period_start", "period_end" (RFC 3339 UTC),
  "silence_after_seconds", "counts": {name: int}}``; deduplicated by source, event and period.

* metrics: ``sentinel_source_silent{source}`` (1 while silent),
  ``sentinel_source_silences_total{source}``,
  ``sentinel_source_last_activity_timestamp_seconds{source}`` and
  ``sentinel_source_losses_total{source,loss}``.

Sources report in one of two ways: *pull* — a probe returning cumulative counters
(``SensorReading``), read on each ``check``; or *push* — ``touch(source, n)`` from the code
that delivers their records (audit batches). ``check(now)`` runs on the scheduler; the clock is
injected, so tests drive real time windows without sleeping.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sentinel.errors import SentinelError
from sentinel.metrics import Metrics
from sentinel.runtime.recorder import Recorder
from sentinel.timefmt import format_ts, utcnow

log = logging.getLogger(__name__)

SourceKind = Literal["audit", "capture", "conntrack", "netflow"]
#: loss counters a probe may report (``sentinel_source_losses_total{loss}``)
LOSSES = (
    "drops",
    "overruns",
    "lost_destroys",
    "sequence_gaps",
    "missing_templates",
    "failed_passes",
    "unreadable_captures",
)


@dataclass(frozen=True, slots=True)
class SensorReading:
    """Cumulative counters of one source since it started.

    ``activity``: events, packets or flow records seen; ``losses``: loss name (one of
    ``LOSSES``) → count. Both only grow; a smaller value (a restarted source) counts as new.
    """

    activity: int
    losses: Mapping[str, int] = field(default_factory=dict)


Probe = Callable[[], SensorReading]
#: cumulative loss counters of a push source (``add_source(losses=...)``)
LossProbe = Callable[[], Mapping[str, int]]


@dataclass(slots=True)
class _State:
    source: str
    kind: SourceKind
    silence_after: float
    probe: Probe | None
    losses: LossProbe | None
    last_activity_at: datetime
    period_start: datetime
    pushed: int = 0
    pushed_at: datetime | None = None
    seen_activity: int = 0
    seen_losses: dict[str, int] = field(default_factory=dict)
    silent_since: datetime | None = None
    #: counts of the current summary period
    counts: Counter[str] = field(default_factory=Counter)
    #: silent seconds already closed (resumed) in the current period
    silent_seconds: float = 0.0


def _overlap(a0: datetime, a1: datetime, b0: datetime, b1: datetime) -> float:
    return max(0.0, (min(a1, b1) - max(a0, b0)).total_seconds())


class HealthMonitor:
    """Per-source silence and loss tracking; writes ``sensor_health`` records (module doc).

    ``silence_after`` is the default number of seconds without activity after which a source
    is silent (``add_source`` may override it per source); ``summary_interval`` the seconds
    between summaries. Thread-safe. Ledger errors are logged and the records are retried on the
    next ``check`` (their dedup keys make a retry safe).
    """

    def __init__(
        self,
        recorder: Recorder,
        metrics: Metrics,
        *,
        silence_after: float = 300.0,
        summary_interval: float = 3600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if silence_after <= 0 or summary_interval <= 0:
            raise ValueError("silence_after and summary_interval must be positive")
        self.recorder = recorder
        self.metrics = metrics
        self.silence_after = silence_after
        self.summary_interval = summary_interval
        self.clock = clock
        self._sources: dict[str, _State] = {}
        self._pending: list[tuple[dict[str, Any], str]] = []
        self._lock = threading.Lock()

    @property
    def sources(self) -> list[str]:
        return list(self._sources)

    def add_source(
        self,
        source: str,
        kind: SourceKind,
        probe: Probe | None = None,
        *,
        silence_after: float | None = None,
        losses: LossProbe | None = None,
    ) -> None:
        """Watch ``source`` from now on (its silence is measured from this moment).

        ``probe`` (pull) returns cumulative counters; without one, call ``touch``, and
        ``losses`` (optional) returns the push source's cumulative loss counters.
        """
        now = self.clock()
        with self._lock:
            if source in self._sources:
                raise ValueError(f"health: source {source!r} added twice")
            self._sources[source] = _State(
                source,
                kind,
                silence_after or self.silence_after,
                probe,
                losses,
                last_activity_at=now,
                period_start=now,
            )
            self.metrics.source_silent.labels(source).set(0)

    def touch(self, source: str, n: int = 1) -> None:
        """Note ``n`` events from a push source (no-op for an unknown source)."""
        if n <= 0:
            return
        now = self.clock()
        with self._lock:
            state = self._sources.get(source)
            if state is not None:
                state.pushed += n
                state.pushed_at = now

    def _read(self, state: _State) -> SensorReading:
        if state.probe is None:
            losses = state.losses() if state.losses is not None else {}
            return SensorReading(state.pushed, losses)
        return state.probe()

    # -- the periodic job ---------------------------------------------------------------------

    def check(self, now: datetime | None = None) -> int:
        """Read every source, record transitions and due summaries; returns the number of
        records appended. ``now`` defaults to the clock."""
        now = now or self.clock()
        with self._lock:
            for state in self._sources.values():
                try:
                    reading = self._read(state)
                except Exception:  # a broken probe is itself a health problem: silence shows it
                    log.exception("health: probe of %s failed", state.source)
                    reading = SensorReading(state.seen_activity, state.seen_losses)
                self._observe(state, reading, now)
                if (now - state.period_start).total_seconds() >= self.summary_interval:
                    self._summary(state, now)
            return self._flush()

    def close(self, now: datetime | None = None) -> int:
        """Final check and a summary of every source up to ``now`` (at stop)."""
        now = now or self.clock()
        with self._lock:
            for state in self._sources.values():
                try:
                    self._observe(state, self._read(state), now)
                except Exception:
                    log.exception("health: last probe of %s failed", state.source)
                if now > state.period_start:
                    self._summary(state, now)
            return self._flush()

    def _observe(self, state: _State, reading: SensorReading, now: datetime) -> None:
        source = state.source
        delta = reading.activity - state.seen_activity
        if delta < 0:  # the source restarted its counters
            delta = reading.activity
        state.seen_activity = reading.activity
        for loss, value in reading.losses.items():
            lost = value - state.seen_losses.get(loss, 0)
            if lost < 0:
                lost = value
            state.seen_losses[loss] = value
            if lost:
                state.counts[loss] += lost
                self.metrics.source_losses.labels(source, loss).inc(lost)
        if delta > 0:
            seen_at = state.pushed_at if state.probe is None and state.pushed_at else now
            state.counts["activity"] += delta
            state.last_activity_at = seen_at
            self.metrics.source_last_activity.labels(source).set(seen_at.timestamp())
            if state.silent_since is not None:
                start = state.silent_since
                state.silent_seconds += _overlap(start, seen_at, state.period_start, now)
                self._queue(
                    state, "resumed", start, seen_at, {"silent_seconds": _secs(start, seen_at)}
                )
                state.silent_since = None
                self.metrics.source_silent.labels(source).set(0)
                log.info("health: %s is active again", source)
            return
        idle = (now - state.last_activity_at).total_seconds()
        if state.silent_since is None and idle >= state.silence_after:
            state.silent_since = state.last_activity_at
            state.counts["silences"] += 1
            self.metrics.source_silent.labels(source).set(1)
            self.metrics.source_silences.labels(source).inc()
            self._queue(
                state,
                "silent",
                state.silent_since,
                now,
                {"silent_seconds": _secs(state.silent_since, now)},
            )
            log.warning("health: %s silent since %s", source, format_ts(state.silent_since))

    def _summary(self, state: _State, now: datetime) -> None:
        silent = state.silent_seconds
        if state.silent_since is not None:
            silent += _overlap(state.silent_since, now, state.period_start, now)
        counts: dict[str, int] = {"activity": 0, "silences": 0}
        for loss in LOSSES:
            if loss in state.seen_losses:
                counts[loss] = 0
        counts.update({k: int(v) for k, v in state.counts.items()})
        counts["silent_seconds"] = int(silent)
        self._queue(state, "summary", state.period_start, now, counts)
        state.period_start = now
        state.counts = Counter()
        state.silent_seconds = 0.0

    def _queue(
        self,
        state: _State,
        event: str,
        start: datetime,
        end: datetime,
        counts: Mapping[str, int],
    ) -> None:
        body = {
            "source": state.source,
            "source_kind": state.kind,
            "event": event,
            "period_start": format_ts(start),
            "period_end": format_ts(end),
            "silence_after_seconds": int(state.silence_after),
            "counts": dict(sorted(counts.items())),
        }
        key = f"health:{state.source}:{event}:{body['period_start']}:{body['period_end']}"
        self._pending.append(({"kind": "sensor_health", "data": body}, key))

    def _flush(self) -> int:
        if not self._pending:
            return 0
        records = [r for r, _ in self._pending]
        keys: list[str | None] = [k for _, k in self._pending]
        try:
            result = self.recorder.record_records(records, dedup_keys=keys)
        except SentinelError as exc:
            log.error("health: %d record(s) not written yet: %s", len(records), exc.diagnostics())
            return 0
        self._pending.clear()
        return result.appended


def _secs(start: datetime, end: datetime) -> int:
    return max(0, int((end - start) / timedelta(seconds=1)))
