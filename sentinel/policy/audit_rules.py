"""Audit rules: YAML files validated against a schema at load, compiled once into typed
objects, evaluated on normalized ``AuditEvent`` s into aggregated ``Finding`` s.

One rule per file (``rules/audit/*.yaml``)::

    id: foreign-client-pull        # [a-z0-9][a-z0-9._-]*, unique across the loaded files
    description: A model was pulled by a client outside the jurisdiction.
    severity: high                 # info | low | medium | high | critical
    enabled: true                  # optional
    match:                         # optional; each listed field must match, a list is "any of"
      actions: [pull]
      outcomes: [success]
      sources: [registry-hook]
      source_kinds: [distribution, harbor]
    aggregate_seconds: 3600        # same rule + same subject within this → one finding, counted
    kind: foreign_client           # then the kind's own keys:

``kind: foreign_client`` — the event's ``client_ip`` is outside the jurisdiction. By default
the egress policy judges the address exactly as it judges a flow's remote endpoint (deny and
allow networks, internal ranges, overrides, geofeeds, waivers, GeoIP; unknown location fails
closed unless the policy says ``unknown: allow``); ``allow_countries: [EEA, CH]`` judges by
GeoIP country alone instead. A ``socket`` address is evidence; a ``header`` address
(``X-Forwarded-For``) is forgeable: it is reported with ``address_source: header``,
``proof: false`` and ``header_severity`` (default ``low``), or not at all with
``header_addresses: ignore``. Events whose source logs no client address are skipped; a
logged address that is not an IP address (``client_ip`` empty, ``client_ip_source`` set, the
value in ``detail``) is an unknown location and fails closed. Subject: the address.

``kind: actor_policy`` — for matching events (typically ``actions: [delete, untag]``): the
actor must be in ``allowed_actors`` or a member of one of ``allowed_groups`` (``groups:``
maps a group name to its members, in the file), authenticated by the source when
``require_verified`` (default true), and the event time must fall inside one of
``change_windows`` — ``{days: [mon, …, sun], start: "HH:MM", end: "HH:MM"}`` in UTC, start
inclusive, end exclusive (``"24:00"`` allowed); a window over midnight is written as two. Each
check is optional (no allow-lists: any actor; no windows: any time). Subject: the actor.

``kind: threshold`` — at least ``count`` matching events (typically ``actions:
[auth_failure, access_denied]``) with the same ``group_by`` value (``client_ip`` or
``actor``) within ``window_seconds`` (a sliding window on event time; out-of-order events are
placed where they belong). Memory is bounded: at most ``max_keys`` keys (least recently seen
dropped) of at most ``count`` timestamps each. Every event that completes a window is a hit.

Aggregation: the first hit of a (rule, subject) is a finding at once (``status: open``,
``count: 1``); further hits within ``aggregate_seconds`` of it are counted, and when that period
ends (``flush(now)``, or the next hit after it, or ``flush()`` at shutdown) one ``status:
aggregated`` finding carries ``count``, ``first_seen``, ``last_seen`` — nothing when the count
stayed 1. Engine state lives in memory: a restart starts new windows.

Loading never evaluates anything: ``yaml.safe_load`` (no tags, no Python objects), pydantic
models with ``extra="forbid"``, files over ``MAX_RULE_BYTES`` refused. ``load_rules`` reports
each bad file as a ``ConfigError`` (file, dotted key, problem) and keeps the good ones.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from sentinel.errors import ConfigError
from sentinel.geo import GeoSource
from sentinel.geo.groups import expand
from sentinel.policy.egress import EgressPolicy
from sentinel.records import ACTIONS, OUTCOMES, SOURCE_KINDS, AuditEvent, Flow
from sentinel.timefmt import format_ts, parse_ts

#: largest rule file accepted, bytes
MAX_RULE_BYTES = 65_536
RULE_SUFFIXES = (".yaml", ".yml")
SEVERITIES = ("info", "low", "medium", "high", "critical")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: event dedup keys kept per finding (the rest are counted)
MAX_EVIDENCE = 10
FINDING_KIND = "audit_finding"

Severity = Literal["info", "low", "medium", "high", "critical"]
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


# -- schema -------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Model):
    """Event filter: every listed field must match; an empty list matches anything."""

    actions: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    source_kinds: tuple[str, ...] = ()

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _closed(value, ACTIONS, "action")

    @field_validator("outcomes")
    @classmethod
    def _outcomes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _closed(value, OUTCOMES, "outcome")

    @field_validator("source_kinds")
    @classmethod
    def _kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _closed(value, SOURCE_KINDS, "source kind")

    def matches(self, e: AuditEvent) -> bool:
        return (
            (not self.actions or e.action in self.actions)
            and (not self.outcomes or e.outcome in self.outcomes)
            and (not self.sources or e.source in self.sources)
            and (not self.source_kinds or e.source_kind in self.source_kinds)
        )


def _closed(values: tuple[str, ...], known: frozenset[str], what: str) -> tuple[str, ...]:
    bad = [v for v in values if v not in known]
    if bad:
        raise ValueError(f"unknown {what}(s) {bad}; known: {sorted(known)}")
    return values


class _RuleBase(_Model):
    id: str
    description: str = ""
    severity: Severity
    enabled: bool = True
    match: Match = Match()
    aggregate_seconds: Annotated[int, Field(ge=0, le=7 * 86400)] = 3600

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("rule id must match [a-z0-9][a-z0-9._-]* (at most 64 characters)")
        return value


class ForeignClientRule(_RuleBase):
    kind: Literal["foreign_client"]
    #: ISO 3166-1 alpha-2 codes and groups (EU, EEA); empty: judge with the egress policy
    allow_countries: tuple[str, ...] = ()
    header_addresses: Literal["report", "ignore"] = "report"
    header_severity: Severity = "low"

    @field_validator("allow_countries")
    @classmethod
    def _codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            if not (len(code) == 2 and code.isalpha() and code.isupper()) and code not in (
                "EU",
                "EEA",
            ):
                raise ValueError(f"not an ISO 3166-1 alpha-2 code or group: {code!r}")
        return value


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ALL_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ChangeWindow(_Model):
    days: tuple[Day, ...] = _ALL_DAYS
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError('expected "HH:MM" (UTC, 00:00 to 24:00)')
        return value

    @model_validator(mode="after")
    def _order(self) -> ChangeWindow:
        if _minutes(self.start) >= _minutes(self.end):
            raise ValueError("start must be before end (split a window over midnight in two)")
        if not self.days:
            raise ValueError("a change window needs at least one day")
        return self

    def contains(self, ts: datetime) -> bool:
        ts = ts.astimezone(UTC)
        minute = ts.hour * 60 + ts.minute
        return DAYS[ts.weekday()] in self.days and _minutes(self.start) <= minute < _minutes(
            self.end
        )


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class ActorPolicyRule(_RuleBase):
    kind: Literal["actor_policy"]
    allowed_actors: tuple[str, ...] = ()
    allowed_groups: tuple[str, ...] = ()
    groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    require_verified: bool = True
    change_windows: tuple[ChangeWindow, ...] = ()

    @model_validator(mode="after")
    def _groups_defined(self) -> ActorPolicyRule:
        missing = [g for g in self.allowed_groups if g not in self.groups]
        if missing:
            raise ValueError(f"allowed_groups names groups not defined under groups: {missing}")
        return self


class ThresholdRule(_RuleBase):
    kind: Literal["threshold"]
    count: Annotated[int, Field(ge=1, le=10_000)]
    window_seconds: Annotated[int, Field(ge=1, le=7 * 86400)]
    group_by: Literal["client_ip", "actor"] = "client_ip"
    max_keys: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000


RuleModel = Annotated[
    ForeignClientRule | ActorPolicyRule | ThresholdRule, Field(discriminator="kind")
]
_ADAPTER: TypeAdapter[ForeignClientRule | ActorPolicyRule | ThresholdRule] = TypeAdapter(RuleModel)


def rule_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, as pydantic writes it) of one rule file."""
    return _ADAPTER.json_schema()


# -- findings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One audit-rule finding (a ledger record of kind ``audit_finding``).

    ``status`` is ``open`` (first hit of a subject, ``count`` 1) or ``aggregated`` (the end of
    an aggregation period: ``count`` hits between ``first_seen`` and ``last_seen``, UTC).
    ``events`` holds the dedup keys of up to ``MAX_EVIDENCE`` triggering events. ``details``
    holds JSON-ready scalars (no floats).
    """

    rule: str
    kind: str
    severity: str
    status: Literal["open", "aggregated"]
    subject: str
    message: str
    first_seen: datetime
    last_seen: datetime
    count: int
    events: tuple[str, ...]
    details: dict[str, str | int | bool | None] = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        """Stable across a re-evaluation of the same events (restart, re-read)."""
        anchor = self.events[0] if self.events else format_ts(self.first_seen)
        tail = "" if self.status == "open" else f":agg:{self.count}:{format_ts(self.last_seen)}"
        return f"{FINDING_KIND}:{self.rule}:{self.subject}:{anchor}{tail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "severity": self.severity,
            "status": self.status,
            "subject": self.subject,
            "message": self.message,
            "first_seen": format_ts(self.first_seen),
            "last_seen": format_ts(self.last_seen),
            "count": self.count,
            "events": list(self.events),
            "details": dict(self.details),
        }

    def to_ledger_record(self) -> dict[str, Any]:
        """``{"kind": "audit_finding", "data": …}`` for ``Ledger.append``."""
        return {"kind": FINDING_KIND, "data": self.to_json()}


@dataclass(frozen=True, slots=True)
class Hit:
    """One time a rule's condition held, before aggregation."""

    rule: str
    kind: str
    severity: str
    subject: str
    message: str
    ts: datetime
    event_key: str
    details: dict[str, str | int | bool | None]


# -- compiled rules -----------------------------------------------------------------------------


@dataclass
class CompiledRule:
    """A validated rule ready to evaluate. ``path`` is the file it came from."""

    model: ForeignClientRule | ActorPolicyRule | ThresholdRule
    path: str
    _allowed_actors: frozenset[str] = field(default_factory=frozenset)
    _countries: frozenset[str] = field(default_factory=frozenset)
    _stamps: OrderedDict[str, list[datetime]] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        m = self.model
        if isinstance(m, ActorPolicyRule):
            members = {a for g in m.allowed_groups for a in m.groups[g]}
            self._allowed_actors = frozenset(m.allowed_actors) | frozenset(members)
        elif isinstance(m, ForeignClientRule):
            self._countries = expand(m.allow_countries)

    @property
    def id(self) -> str:
        return self.model.id

    def evaluate(
        self,
        e: AuditEvent,
        *,
        geo: GeoSource | None,
        policy: EgressPolicy | None,
    ) -> Hit | None:
        m = self.model
        if not m.enabled or not m.match.matches(e):
            return None
        if isinstance(m, ForeignClientRule):
            return self._foreign(m, e, geo, policy)
        if isinstance(m, ActorPolicyRule):
            return self._actor(m, e)
        return self._threshold(m, e)

    def _hit(
        self, e: AuditEvent, subject: str, message: str, severity: str | None = None, **details: Any
    ) -> Hit:
        m = self.model
        base: dict[str, str | int | bool | None] = {
            "source": e.source,
            "action": e.action,
            "outcome": e.outcome,
            "actor": e.actor,
            "artifact": e.artifact,
            "reference": e.reference,
            "client_ip": e.client_ip,
        }
        base.update(details)
        return Hit(m.id, m.kind, severity or m.severity, subject, message, e.ts, e.dedup_key, base)

    def _no_ip(
        self, m: ForeignClientRule, e: AuditEvent, policy: EgressPolicy | None, header: bool
    ) -> Hit | None:
        """A client address was logged but is not an IP address (``AuditEvent`` kept it in
        ``detail``): its location is unknown, which fails closed like an address GeoIP cannot
        place — unless the egress policy (without ``allow_countries``) says ``unknown:
        allow``."""
        if not m.allow_countries:
            if policy is None:
                raise ConfigError(self.path, "needs the egress policy (or allow_countries)")
            if policy.model.jurisdiction.unknown == "allow":
                return None
        message = (
            f"{e.action} by a client whose logged address is not an IP address "
            f"(an unknown location): {e.detail or '-'}"
        )
        return self._hit(
            e,
            "(not an IP address)",
            message,
            m.header_severity if header else None,
            country=None,
            reason="unknown location (not an IP address)",
            address_source="header" if header else "socket",
            proof=not header,
        )

    def _foreign(
        self,
        m: ForeignClientRule,
        e: AuditEvent,
        geo: GeoSource | None,
        policy: EgressPolicy | None,
    ) -> Hit | None:
        if not e.client_ip and e.client_ip_source is None:
            return None  # the source logs no client address at all (webhooks)
        header = e.client_ip_source != "socket"
        if header and m.header_addresses == "ignore":
            return None
        try:
            addr = ipaddress.ip_address(e.client_ip or "")
        except ValueError:
            return self._no_ip(m, e, policy, header)
        if m.allow_countries:
            if policy is not None and policy.is_internal(addr):
                return None
            if policy is None and not addr.is_global:
                return None
            country = _country(addr, geo) or e.client_country
            if country in self._countries:
                return None
            reason = "foreign country" if country else "unknown location"
            db = geo.provenance.sha256 if geo is not None else None
        else:
            if policy is None:
                raise ConfigError(self.path, "needs the egress policy (or allow_countries)")
            flow = Flow(6, "0.0.0.0", 0, str(addr), 0, 0, 0, 0, 0, e.ts, e.ts)  # noqa: S104
            verdict = policy.evaluate(flow, geo, e.ts)
            if verdict.verdict != "violation":
                return None
            country, reason = verdict.country, verdict.reason
            db = verdict.geo.sha256 if verdict.geo is not None else None
        where = country or "an unknown location"
        if header:
            message = (
                f"{e.action} by {e.client_ip} ({where}) — address from a forwarded header, "
                "forgeable: not proof of access from there"
            )
        else:
            message = f"{e.action} by a client in {where} ({e.client_ip}, socket address)"
        return self._hit(
            e,
            str(addr),
            message,
            m.header_severity if header else None,
            country=country,
            reason=reason,
            address_source="header" if header else "socket",
            proof=not header,
            geoip_sha256=db,
        )

    def _actor(self, m: ActorPolicyRule, e: AuditEvent) -> Hit | None:
        problems: list[str] = []
        if self._allowed_actors or m.require_verified:
            if e.actor is None:
                problems.append("no actor recorded")
            elif m.require_verified and not e.actor_verified:
                problems.append("actor not authenticated by the source")
            elif self._allowed_actors and e.actor not in self._allowed_actors:
                problems.append("actor not in an allowed group")
        if m.change_windows and not any(w.contains(e.ts) for w in m.change_windows):
            problems.append("outside every change window (UTC)")
        if not problems:
            return None
        what = f"{e.artifact}:{e.reference}" if e.reference else (e.artifact or "?")
        message = f"{e.action} of {what} by {e.actor or 'unknown actor'}: " + "; ".join(problems)
        return self._hit(
            e,
            e.actor or "unknown",
            message,
            problems=", ".join(problems),
            actor_verified=e.actor_verified,
            weekday=DAYS[e.ts.astimezone(UTC).weekday()],
        )

    def _threshold(self, m: ThresholdRule, e: AuditEvent) -> Hit | None:
        key = e.client_ip if m.group_by == "client_ip" else e.actor
        if not key:
            return None
        keys = self._stamps
        stamps = keys.pop(key, [])
        keys[key] = stamps
        while len(keys) > m.max_keys:
            keys.popitem(last=False)
        bisect.insort(stamps, e.ts)
        window = timedelta(seconds=m.window_seconds)
        newest = stamps[-1]
        # keep what can still matter: within the window of the newest, at most `count`
        while stamps and (newest - stamps[0] > window or len(stamps) > m.count):
            stamps.pop(0)
        if len(stamps) < m.count or stamps[-1] - stamps[0] > window:
            return None
        if e.ts not in stamps:
            return None
        return self._hit(
            e,
            key,
            f"{len(stamps)} {'/'.join(m.match.actions) or 'events'} from {m.group_by} {key} "
            f"within {m.window_seconds} s",
            group_by=m.group_by,
            threshold=m.count,
            window_seconds=m.window_seconds,
            window_start=format_ts(stamps[0]),
        )


def _country(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address, geo: GeoSource | None
) -> str | None:
    return geo.lookup(addr).country if geo is not None else None


# -- loading ------------------------------------------------------------------------------------


def parse_rule(raw: bytes, *, path: str = "<memory>") -> CompiledRule:
    """Validate and compile one rule file's bytes. Raises ``ConfigError(path, problem, key)``."""
    if len(raw) > MAX_RULE_BYTES:
        raise ConfigError(path, f"rule file larger than {MAX_RULE_BYTES} bytes")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 text: {exc.reason}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(path, "expected a mapping (one rule: id, severity, kind, …)")
    if "kind" not in data:
        raise ConfigError(path, "missing (foreign_client | actor_policy | threshold)", "kind")
    try:
        model = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = [(_error_key(e), e["msg"]) for e in exc.errors()]
        key, problem = problems[0]
        if len(problems) > 1:  # every problem at once, not one per edit-and-retry
            rest = "; ".join(f"{k or '(file)'}: {m}" for k, m in problems[1:])
            problem = f"{problem} (and {len(problems) - 1} more: {rest})"
        raise ConfigError(path, problem, key) from exc
    return CompiledRule(model, path)


def _error_key(error: Any) -> str | None:
    """The dotted rule-file key a pydantic error is about (without pydantic's union tag)."""
    loc = [str(p) for p in error["loc"]]
    if error["type"] == "union_tag_invalid":
        loc = ["kind"]
    if len(loc) > 1 and loc[0] in ("foreign_client", "actor_policy", "threshold"):
        loc = loc[1:]  # drop the union tag pydantic puts first
    return ".".join(loc) or None


def load_rule_file(path: Path) -> CompiledRule:
    """Read and compile one rule file. Raises ``ConfigError``."""
    try:
        if path.stat().st_size > MAX_RULE_BYTES:
            raise ConfigError(str(path), f"rule file larger than {MAX_RULE_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    return parse_rule(raw, path=str(path))


def rule_files(paths: Iterable[Path]) -> list[Path]:
    """Files named by ``paths``: a file as is, a directory's ``*.yaml``/``*.yml`` (not
    recursive, sorted). A missing path is kept so that loading reports it. A file named twice
    (``rules/audit rules/audit/x.yaml``) is listed once."""
    out: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        found = (
            sorted(c for c in p.iterdir() if c.is_file() and c.suffix in RULE_SUFFIXES)
            if p.is_dir()
            else [p]
        )
        for f in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append(f)
    return out


@dataclass
class RuleSet:
    """What ``load_rules`` found: compiled rules, and one ``ConfigError`` per bad file."""

    rules: list[CompiledRule]
    errors: list[ConfigError]

    @property
    def ok(self) -> bool:
        return not self.errors


def load_rules(paths: Iterable[Path]) -> RuleSet:
    """Load every rule file under ``paths`` (files or directories). A bad file (unreadable,
    invalid, or a duplicate id) is reported in ``errors`` and skipped; the others load."""
    rules: list[CompiledRule] = []
    errors: list[ConfigError] = []
    seen: dict[str, str] = {}
    for path in rule_files(paths):
        try:
            rule = load_rule_file(path)
        except ConfigError as exc:
            errors.append(exc)
            continue
        if rule.id in seen:
            problem = f"duplicate rule id (also in {seen[rule.id]})"
            errors.append(ConfigError(str(path), problem, "id"))
            continue
        seen[rule.id] = str(path)
        rules.append(rule)
    return RuleSet(rules, errors)


# -- the engine ---------------------------------------------------------------------------------


@dataclass
class _Group:
    first: Hit
    last: Hit
    count: int
    events: list[str]


class AuditRuleEngine:
    """Evaluate ``rules`` on events and aggregate their hits (thread-safe).

    ``geo`` and ``policy`` serve ``foreign_client`` rules. ``observe(events)`` returns the
    findings to record now and the hits (for metrics: one per time a condition held).
    ``flush(now)`` closes aggregation periods that ended before ``now`` (``None``: all).
    """

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        *,
        geo: GeoSource | None = None,
        policy: EgressPolicy | None = None,
    ) -> None:
        self.rules = list(rules)
        self.geo = geo
        self.policy = policy
        self._groups: dict[tuple[str, str], _Group] = {}
        self._lock = threading.Lock()
        self._aggregate = {r.id: timedelta(seconds=r.model.aggregate_seconds) for r in rules}

    def observe(self, events: Iterable[AuditEvent]) -> tuple[list[Finding], list[Hit]]:
        findings: list[Finding] = []
        hits: list[Hit] = []
        with self._lock:
            for e in sorted(events, key=lambda ev: ev.ts):
                for rule in self.rules:
                    hit = rule.evaluate(e, geo=self.geo, policy=self.policy)
                    if hit is not None:
                        hits.append(hit)
                        findings += self._aggregate_hit(hit)
        return findings, hits

    def flush(self, now: datetime | None = None) -> list[Finding]:
        """Close aggregation periods that ended before ``now`` (aware UTC; ``None``: all)."""
        out: list[Finding] = []
        with self._lock:
            for key, group in list(self._groups.items()):
                span = self._aggregate[group.first.rule]
                if now is None or now - group.first.ts > span:
                    del self._groups[key]
                    out += _close(group)
        return out

    def _aggregate_hit(self, hit: Hit) -> list[Finding]:
        key = (hit.rule, hit.subject)
        out: list[Finding] = []
        group = self._groups.get(key)
        if group is not None and hit.ts - group.first.ts > self._aggregate[hit.rule]:
            out += _close(group)
            group = None
        if group is None:
            self._groups[key] = _Group(hit, hit, 1, [hit.event_key])
            out.append(_finding(hit, hit, 1, [hit.event_key], "open"))
            return out
        group.count += 1
        if hit.ts >= group.last.ts:
            group.last = hit
        if len(group.events) < MAX_EVIDENCE:
            group.events.append(hit.event_key)
        return out


def _finding(
    first: Hit, last: Hit, count: int, events: list[str], status: Literal["open", "aggregated"]
) -> Finding:
    return Finding(
        rule=first.rule,
        kind=first.kind,
        severity=first.severity,
        status=status,
        subject=first.subject,
        message=last.message if status == "aggregated" else first.message,
        first_seen=first.ts,
        last_seen=last.ts,
        count=count,
        events=tuple(events),
        details=dict(last.details),
    )


def _close(group: _Group) -> list[Finding]:
    if group.count <= 1:
        return []
    return [_finding(group.first, group.last, group.count, group.events, "aggregated")]


# -- events from JSON (samples, dry runs) -------------------------------------------------------

_EVENT_FIELDS = frozenset(AuditEvent.__dataclass_fields__) - {"ts"}


def event_from_json(data: dict[str, Any]) -> AuditEvent:
    """An ``AuditEvent`` from its ``to_json()`` shape (a ledger record's ``data``). Missing
    ``raw_sha256``/``src_pos`` get placeholders. Raises ``ValueError`` on a bad value."""
    if not isinstance(data, dict) or "ts" not in data:
        raise ValueError("an audit event needs at least ts, source, source_kind, action, outcome")
    kwargs = {k: v for k, v in data.items() if k in _EVENT_FIELDS}
    kwargs.setdefault("raw_sha256", "")
    kwargs.setdefault("src_pos", "")
    try:
        return AuditEvent(ts=parse_ts(str(data["ts"])), **kwargs)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc


def iter_events_jsonl(lines: Iterable[bytes]) -> Iterator[AuditEvent]:
    """Events from JSON lines (blank lines and ``#`` comments skipped). ``ValueError`` names
    the line number of a bad line."""
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith(b"#"):
            continue
        try:
            yield event_from_json(json.loads(text))
        except ValueError as exc:
            raise ValueError(f"line {n}: {exc}") from exc
