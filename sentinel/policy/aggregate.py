"""Aggregation of repeated violations: the first occurrence at once, then periodic summaries.

DESIGN.md "Egress policy": repeated identical violations are aggregated (first seen, last seen,
count) instead of flooding the ledger and the pager. The key is (remote IP, remote port, IP
protocol, reason); ``Aggregator`` is pure (no clock, no I/O, no threads of its own — callers
pass ``now`` and serialize calls; it holds a lock so that ``add`` from one thread and ``drain``
from another are safe).

* ``add(verdict)``: a violation (other verdicts are ignored). A key never seen — or seen again
  after its aggregate was retired — is a *first occurrence*, emitted by the next ``drain``
  with the verdict itself.
* ``drain(now)``: every pending first occurrence; then, for each key whose last emission is at
  least ``interval`` seconds before ``now`` and that has occurrences since, a *summary* of those
  occurrences (count, bytes, first and last seen in the window, plus running totals). Keys with
  nothing new for ``retire_after`` seconds are retired. ``drain(now, final=True)`` summarizes
  everything pending whatever its age (shutdown).

Bounded memory: at most ``max_keys`` aggregates. When the table is full, the least recently
seen key with nothing pending is retired to make room; if every key has pending data, the
violation is folded into an *overflow* aggregate for its reason (``remote_ip`` ``None``), so it
is still counted and summarized, never dropped. ``overflowed`` counts those violations.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sentinel.records import Verdict, protocol_name
from sentinel.timefmt import format_ts

#: (remote IP, remote port, IP protocol number, reason); remote IP ``None`` = overflow bucket
Key = tuple[str | None, int, int, str]


@dataclass(frozen=True, slots=True)
class Emission:
    """What the ledger gets: ``kind`` ``first`` (with ``verdict``) or ``summary``.

    ``count``, ``bytes_out`` and ``bytes_in`` (bytes) cover the window ``first_seen`` ..
    ``last_seen`` (aware UTC, flow times): for ``first`` the one flow, for ``summary`` the
    occurrences since the previous emission for the key. ``total_count`` and
    ``total_bytes_out`` run since the key's first occurrence. ``remote_ip`` is ``None`` for the
    overflow bucket of ``reason``. ``country`` and ``rule`` are those of the latest occurrence.
    """

    kind: Literal["first", "summary"]
    remote_ip: str | None
    remote_port: int
    protocol: int
    reason: str
    country: str | None
    rule: str
    first_seen: datetime
    last_seen: datetime
    count: int
    bytes_out: int
    bytes_in: int
    total_count: int
    total_bytes_out: int
    verdict: Verdict | None = None
    #: DNS names of the remote address on the latest occurrence (``Flow.remote_names``)
    remote_names: tuple[str, ...] = ()

    @property
    def dedup_key(self) -> str:
        """A stable key for the ledger's duplicate check: kind, key and window."""
        return (
            f"egress-{self.kind}:{self.remote_ip or '*'}:{self.remote_port}:{self.protocol}:"
            f"{self.reason}:{format_ts(self.first_seen)}:{format_ts(self.last_seen)}"
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, no floats, timestamps RFC 3339 UTC (ledger record body)."""
        body: dict[str, Any] = {
            "kind": self.kind,
            "remote_ip": self.remote_ip,
            "remote_port": self.remote_port,
            "protocol": protocol_name(self.protocol),
            "reason": self.reason,
            "country": self.country,
            "rule": self.rule,
            "first_seen": format_ts(self.first_seen),
            "last_seen": format_ts(self.last_seen),
            "count": self.count,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "total_count": self.total_count,
            "total_bytes_out": self.total_bytes_out,
        }
        if self.verdict is not None:
            body["verdict"] = self.verdict.to_json()
        if self.remote_names:  # absent otherwise: earlier records keep their bytes
            body["remote_names"] = list(self.remote_names)
        return body


@dataclass
class _Aggregate:
    key: Key
    country: str | None
    rule: str
    first_seen: datetime
    last_seen: datetime
    total_count: int = 0
    total_bytes_out: int = 0
    #: occurrences not yet emitted (a first occurrence is emitted on its own)
    count: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    win_first: datetime | None = None
    win_last: datetime | None = None
    first: Verdict | None = None
    last_emit: datetime | None = None
    names: tuple[str, ...] = ()

    @property
    def pending(self) -> bool:
        return self.first is not None or self.count > 0


class Aggregator:
    """Aggregate violations per key (module docstring). ``interval`` and ``retire_after`` are
    seconds (``retire_after`` defaults to ``interval``); ``max_keys`` bounds memory.

    Raises ``ValueError`` for a non-positive ``interval`` or ``max_keys``.
    """

    def __init__(
        self, *, interval: float = 300.0, max_keys: int = 10_000, retire_after: float | None = None
    ) -> None:
        if interval <= 0 or max_keys <= 0:
            raise ValueError("interval and max_keys must be positive")
        self.interval = interval
        self.retire_after = interval if retire_after is None else retire_after
        self.max_keys = max_keys
        self.overflowed = 0
        self._table: OrderedDict[Key, _Aggregate] = OrderedDict()  # least recently seen first
        self._overflow: dict[str, _Aggregate] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._table) + len(self._overflow)

    def add(self, verdict: Verdict) -> bool:
        """Record one verdict; ``True`` when it was a violation (and so was aggregated)."""
        if verdict.verdict != "violation":
            return False
        f = verdict.flow
        key: Key = (f.remote_ip, f.remote_port, f.protocol, verdict.reason)
        with self._lock:
            agg = self._table.get(key)
            if agg is not None:
                self._table.move_to_end(key)
                self._count(agg, verdict)
                return True
            if len(self._table) >= self.max_keys and not self._make_room():
                self.overflowed += 1
                bucket = self._overflow.get(verdict.reason)
                if bucket is None:
                    bucket = _Aggregate((None, 0, 0, verdict.reason), verdict.country,
                                        verdict.rule, f.first_seen, f.last_seen)  # fmt: skip
                    self._overflow[verdict.reason] = bucket
                self._count(bucket, verdict)
                return True
            agg = _Aggregate(key, verdict.country, verdict.rule, f.first_seen, f.last_seen)
            agg.first = verdict
            agg.total_count, agg.total_bytes_out = 1, f.bytes_out
            self._table[key] = agg
            return True

    @staticmethod
    def _count(agg: _Aggregate, verdict: Verdict) -> None:
        f = verdict.flow
        agg.country, agg.rule = verdict.country, verdict.rule
        if f.remote_names:
            agg.names = tuple(n.name for n in f.remote_names)
        agg.first_seen = min(agg.first_seen, f.first_seen)
        agg.last_seen = max(agg.last_seen, f.last_seen)
        agg.total_count += 1
        agg.total_bytes_out += f.bytes_out
        agg.count += 1
        agg.bytes_out += f.bytes_out
        agg.bytes_in += f.bytes_in
        agg.win_first = f.first_seen if agg.win_first is None else min(agg.win_first, f.first_seen)
        agg.win_last = f.last_seen if agg.win_last is None else max(agg.win_last, f.last_seen)

    def _make_room(self) -> bool:
        for key, agg in self._table.items():  # least recently seen first
            if not agg.pending:
                del self._table[key]
                return True
        return False

    def drain(self, now: datetime, *, final: bool = False) -> list[Emission]:
        """Emissions due at ``now`` (aware UTC): first occurrences, then summaries (module
        docstring). ``final`` summarizes everything pending. Raises ``ValueError`` for a naive
        ``now``."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        out: list[Emission] = []
        with self._lock:
            for agg in self._table.values():
                if agg.first is not None:
                    out.append(self._first(agg))
                    agg.first = None
                    agg.last_emit = now
            for agg in (*self._table.values(), *self._overflow.values()):
                due = agg.last_emit is None or (now - agg.last_emit).total_seconds() >= (
                    self.interval
                )
                if agg.count and (due or final):
                    out.append(self._summary(agg))
                    agg.last_emit = now
            retired = [
                k
                for k, a in self._table.items()
                if not a.pending
                and (final or (now - (a.last_emit or now)).total_seconds() >= self.retire_after)
            ]
            for k in retired:
                del self._table[k]
            for reason in [r for r, a in self._overflow.items() if not a.pending]:
                del self._overflow[reason]
        return out

    @staticmethod
    def _first(agg: _Aggregate) -> Emission:
        assert agg.first is not None
        v = agg.first
        f = v.flow
        return Emission(
            "first", *agg.key[:2], agg.key[2], agg.key[3], v.country, v.rule,
            f.first_seen, f.last_seen, 1, f.bytes_out, f.bytes_in, 1, f.bytes_out, v,
        )  # fmt: skip

    @staticmethod
    def _summary(agg: _Aggregate) -> Emission:
        assert agg.win_first is not None and agg.win_last is not None
        e = Emission(
            "summary", *agg.key[:2], agg.key[2], agg.key[3], agg.country, agg.rule,
            agg.win_first, agg.win_last, agg.count, agg.bytes_out, agg.bytes_in,
            agg.total_count, agg.total_bytes_out, remote_names=agg.names,
        )  # fmt: skip
        agg.count = agg.bytes_out = agg.bytes_in = 0
        agg.win_first = agg.win_last = None
        return e
