"""Conntrack flows through the live judging path (``FlowJudge``), with their own counters.

``ConntrackJudge`` is a ``FlowJudge`` whose source is a ``ConntrackSource``: the flows it
reports are judged and recorded exactly like captured ones (``egress_violation``,
``egress_summary`` with ``observed_by``/``source`` ``conntrack[:NETNS]``), and each flush
counts the events, overruns and lost destroy events in the ``sentinel_conntrack_*`` metrics.
``conntrack_probe`` feeds the sensor-health monitor.
"""

from __future__ import annotations

from sentinel.flows.conntrack import ConntrackSource
from sentinel.geo import GeoSource
from sentinel.policy.egress import EgressPolicy
from sentinel.runtime.egress import FlowJudge
from sentinel.runtime.health import SensorReading
from sentinel.runtime.recorder import Recorder


class ConntrackJudge(FlowJudge):
    """``FlowJudge`` over conntrack events (see the module docstring)."""

    def __init__(
        self,
        source: ConntrackSource,
        policy: EgressPolicy,
        geo: GeoSource | None,
        recorder: Recorder,
        *,
        active_timeout: float,
        secondary: GeoSource | None = None,
    ) -> None:
        super().__init__(
            source,
            policy,
            geo,
            recorder,
            idle_timeout=active_timeout,  # unused: the kernel ends connections
            active_timeout=active_timeout,
            secondary=secondary,
            source=source.name,
        )
        self.conntrack = source
        self._seen = {"new": 0, "destroy": 0, "overruns": 0, "lost": 0}

    def _account(self) -> None:
        stats = self.conntrack.stats
        m = self.recorder.metrics
        now = {
            "new": stats.new,
            "destroy": stats.destroy,
            "overruns": stats.overruns,
            "lost": stats.lost_destroys,
        }
        m.conntrack_events.labels("new").inc(now["new"] - self._seen["new"])
        m.conntrack_events.labels("destroy").inc(now["destroy"] - self._seen["destroy"])
        m.conntrack_overruns.inc(now["overruns"] - self._seen["overruns"])
        m.conntrack_lost_destroys.inc(now["lost"] - self._seen["lost"])
        self._seen = now
        if self.conntrack.accounting is not None:
            m.conntrack_accounting.labels(self.source).set(1 if self.conntrack.accounting else 0)


def conntrack_probe(source: ConntrackSource) -> SensorReading:
    """Health reading of a conntrack source: events read, overruns, destroys lost."""
    s = source.stats
    return SensorReading(s.events, {"overruns": s.overruns, "lost_destroys": s.lost_destroys})
