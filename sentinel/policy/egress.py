"""Egress policy: load the YAML file, judge each ``Flow`` by where its remote endpoint is.

File shape (see ``rules/egress-policy.yaml`` for the commented default)::

    jurisdiction:
      name: EEA data residency
      allow_countries: [EEA]            # ISO 3166-1 alpha-2 codes and the groups EU, EEA
      allow_networks: [203.0.113.0/24]  # in-jurisdiction whatever GeoIP says
      deny_networks: []                 # always a violation
      unknown: violation                # violation (default) | allow
    local_networks: [10.20.0.0/24, "fd00:20::/64"]
    waivers:
      - {id: W-1, network: 192.0.2.0/24, ports: [443], justification: "…", approver: "…",
         expires: "2027-06-30T00:00:00Z"}

    overrides:                          # operator knowledge, before any GeoIP lookup
      - {network: 198.51.100.0/24, country: SE}
      - {network: 192.0.2.128/25, allow: true, justification: "…"}
    geofeeds: [geofeed.csv]             # RFC 8805 files, relative to the policy file

Precedence, first match wins (the remote endpoint decides; direction does not matter — a foreign
client downloading from the registry is data leaving):

1. ``deny_networks`` → violation, reason ``foreign country``, rule ``deny_networks``;
2. a waiver whose network (and ports, when given: the remote or the local port) matches →
   waived, reason ``waiver``; an *expired* waiver no longer applies: the flow is judged by the
   steps below and, if that is a violation, the reason becomes ``expired waiver`` (rule = waiver
   id);
3. ``allow_networks`` → allowed, ``allowed network``;
4. internal addresses — ``local_networks`` and the IANA special-purpose ranges that are not
   globally reachable (``sentinel.geo.special``: private, ULA, loopback, link-local, CGNAT,
   benchmarking, reserved 240/4, multicast, broadcast, unspecified, documentation) → allowed,
   ``internal``, never looked up;
5. ``overrides`` (most specific network first): ``allow: true`` → allowed, ``allowed
   network``; ``country: XX`` → judged as if located in XX; rule ``override:<network>``, no
   GeoIP provenance (the evidence is the policy file, ``policy_sha256``);
6. ``geofeeds`` (most specific prefix over all files): the row's country, or none when the row
   publishes none; rule ``geofeed:<file name>:<line>``, provenance type ``RFC8805-geofeed``
   with the file's SHA-256;
7. GeoIP: an allowed country → allowed, ``allowed country``; another country → violation,
   ``foreign country``; no country (not in the database, no database loaded, an anycast or
   unallocated range) → ``unknown location``, a violation unless ``unknown: allow``. With a
   second database, its answer is attached (``Verdict.secondary``) and flagged when both give a
   country and they differ; it never changes the verdict.

Unknown orientation: a flow marked ``Flow.orientation_unknown`` (a captured or conntrack flow
or a NetFlow/IPFIX record with neither endpoint in ``local_networks``: which end is ours is a
guess) is judged twice, each endpoint taken as the remote one, and the worse verdict is kept
(``severity``: violation over ``unknown location`` over waived over allowed; on a tie, the
exporter's orientation). The verdict's flow is oriented as judged (its ``remote_ip`` is the
endpoint that decided) and keeps the mark, so a record from a foreign server to our unlisted
public address is a violation, not "allowed" because our own address is in an allowed country.

Documentation ranges are internal only after steps 1–3, so a policy may allow or waive them (the
sample does). Errors: ``ConfigError(path, problem, key)`` naming the dotted key; the file is read
with ``yaml.safe_load`` only.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from iso3166 import countries_by_alpha2
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sentinel.errors import ConfigError
from sentinel.geo import GeoSource, current
from sentinel.geo.database import (
    GeoDatabase,
    address_text,
    clean_country,
    embedded_ipv4_int,
    parse_address,
)
from sentinel.geo.geofeed import Geofeed, GeofeedEntry, PrefixTable, load_geofeed
from sentinel.geo.groups import GROUPS, expand
from sentinel.geo.special import IPV4_SPECIAL, IPV6_SPECIAL, classify_int, special_starts
from sentinel.geo.special import is_internal as _special_internal
from sentinel.records import Flow, GeoProvenance, GeoSecondOpinion, Verdict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: largest policy file accepted, bytes
MAX_POLICY_BYTES = 1_048_576

#: Never foreign: every range of ``sentinel.geo.special`` whose scope is ``internal`` (IANA
#: special-purpose registries, *Globally Reachable* False, plus multicast).
INTERNAL_NETWORKS: tuple[Network, ...] = tuple(
    r.network for r in (*IPV4_SPECIAL, *IPV6_SPECIAL) if r.scope == "internal"
)


#: common mistakes: codes people write that ISO 3166-1 assigns to no country (or another one)
_CODE_HINTS = {
    "UK": " — the United Kingdom is GB",
    "EL": " — Greece is GR (EL is the EU's own abbreviation)",
    "XX": " — XX is not a country; GeoIP pseudo-codes never match",
    "ZZ": " — ZZ is not a country; GeoIP pseudo-codes never match",
}


def _network(value: object) -> Network:
    if not isinstance(value, str | int):
        raise ValueError("expected a CIDR network such as 192.0.2.0/24")
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError as exc:
        raise ValueError(f"not a CIDR network: {value!r}") from exc


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Jurisdiction(_Model):
    name: str = "jurisdiction"
    allow_countries: tuple[str, ...] = ()
    allow_networks: tuple[Network, ...] = ()
    deny_networks: tuple[Network, ...] = ()
    unknown: Literal["violation", "allow"] = "violation"

    @field_validator("allow_countries", mode="before")
    @classmethod
    def _codes(cls, value: object) -> object:
        if not isinstance(value, list | tuple):
            raise ValueError("expected a list of ISO 3166-1 alpha-2 codes or EU/EEA")
        for code in value:
            if not isinstance(code, str):
                raise ValueError(f"not a country code: {code!r}")
            if code in GROUPS:
                continue
            if code not in countries_by_alpha2:
                hint = _CODE_HINTS.get(code.upper(), "")
                raise ValueError(
                    f"{code!r} is neither an assigned ISO 3166-1 alpha-2 code (upper case) "
                    f"nor a group ({', '.join(sorted(GROUPS))}){hint}"
                )
        return value

    @field_validator("allow_networks", "deny_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise ValueError("expected a list of CIDR networks")
        return tuple(_network(v) for v in value)


class Waiver(_Model):
    id: Annotated[str, Field(min_length=1)]
    network: Network
    ports: tuple[Annotated[int, Field(ge=0, le=65535)], ...] = ()
    justification: Annotated[str, Field(min_length=1)]
    approver: Annotated[str, Field(min_length=1)]
    expires: AwareDatetime

    @field_validator("network", mode="before")
    @classmethod
    def _net(cls, value: object) -> object:
        return _network(value)

    def matches(self, flow: Flow, remote: IPAddress) -> bool:
        """The remote address is in ``network`` and, when ``ports`` is set, the remote or the
        local port is one of them."""
        return self.holds(remote) and self.matches_ports(flow)

    def holds(self, remote: IPAddress) -> bool:
        """The (normalized) remote address is in ``network``."""
        return remote.version == self.network.version and remote in self.network

    def matches_ports(self, flow: Flow) -> bool:
        """No ``ports``, or the remote or the local port is one of them."""
        return not self.ports or flow.remote_port in self.ports or flow.local_port in self.ports


class Override(_Model):
    """Operator knowledge about a network: where it is (``country``) or that it is allowed
    (``allow: true`` with a ``justification``). Exactly one of the two."""

    network: Network
    country: str | None = None
    allow: bool = False
    justification: str | None = None

    @field_validator("network", mode="before")
    @classmethod
    def _net(cls, value: object) -> object:
        return _network(value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is not None and (clean_country(value) != value):
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 code (upper case)")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Override:
        if (self.country is None) == (not self.allow):
            raise ValueError("give either `country: XX` or `allow: true`, not both or neither")
        if self.allow and not (self.justification or "").strip():
            raise ValueError("`allow: true` needs a `justification`")
        return self


class PolicyModel(_Model):
    jurisdiction: Jurisdiction
    local_networks: tuple[Network, ...] = ()
    waivers: tuple[Waiver, ...] = ()
    overrides: tuple[Override, ...] = ()
    geofeeds: tuple[Annotated[str, Field(min_length=1)], ...] = ()

    @field_validator("overrides", "geofeeds", mode="before")
    @classmethod
    def _optional_list(cls, value: object) -> object:
        return () if value is None else value

    @field_validator("local_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise ValueError("expected a list of CIDR networks")
        return tuple(_network(v) for v in value)

    @field_validator("waivers", mode="before")
    @classmethod
    def _waivers(cls, value: object) -> object:
        return () if value is None else value


#: bound on the per-policy cache of address facts (addresses)
FACTS_CACHE_MAX = 100_000
#: flows whose GeoIP lookups ``evaluate_many`` makes at once (below the caches' bounds)
PREFETCH_FLOWS = 40_000

#: a decision of steps 3–6: (reason when allowed, country, rule, provenance, allowed outright)
_Fixed = tuple[str, str | None, str, GeoProvenance | None, bool]
#: the fields of a ``Verdict`` after ``flow``, in order (verdict … secondary)
_Fields = tuple[
    Literal["allowed", "violation", "waived"],
    str,
    str | None,
    str,
    GeoProvenance | None,
    str | None,
    str | None,
    GeoSecondOpinion | None,
]
#: a network as integers: (IP version, first address, last address)
_Span = tuple[int, int, int]
#: what the policy says about an address whatever the flow: (denied, waivers, steps 3–6)
_Answer = tuple[bool, tuple["Waiver", ...], _Fixed | None]


@dataclass(frozen=True, slots=True)
class _Facts:
    #: the normalized remote address (embedded IPv4 reduced), as text, IP version and integer
    remote: str
    version: int
    value: int
    denied: bool
    waivers: tuple[Waiver, ...]
    fixed: _Fixed | None


def _in_any(addr: IPAddress, networks: Iterable[Network]) -> bool:
    return any(addr.version == n.version and addr in n for n in networks)


def _spans(networks: Iterable[Network]) -> tuple[_Span, ...]:
    return tuple((n.version, int(n.network_address), int(n.broadcast_address)) for n in networks)


def _in_spans(version: int, value: int, spans: tuple[_Span, ...]) -> bool:
    return any(v == version and lo <= value <= hi for v, lo, hi in spans)


class EgressPolicy:
    """A loaded, validated egress policy. ``sha256`` is the policy file's SHA-256 (hex).

    ``geofeeds`` are loaded here, relative to ``base_dir`` (the policy file's directory; the
    current directory when ``None``); each ``Geofeed`` carries its own SHA-256.
    """

    def __init__(
        self,
        model: PolicyModel,
        *,
        path: str = "<memory>",
        sha256: str = "",
        base_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.path = path
        self.sha256 = sha256
        self.allowed_countries = expand(model.jurisdiction.allow_countries)
        waiver_ids = [w.id for w in model.waivers]
        dupes = {i for i in waiver_ids if waiver_ids.count(i) > 1}
        if dupes:
            raise ConfigError(
                path, f"duplicate waiver id(s): {', '.join(sorted(dupes))}", "waivers"
            )
        self._overrides: PrefixTable[Override] = PrefixTable()
        for n, override in enumerate(model.overrides):
            try:
                self._overrides.add(override.network, override)
            except KeyError:
                raise ConfigError(
                    path, f"{override.network} is listed twice", f"overrides.{n}.network"
                ) from None
        self._facts_cache: dict[str, _Facts] = {}
        jur = model.jurisdiction
        self._allow_spans = _spans(jur.allow_networks)
        self._deny_spans = _spans(jur.deny_networks)
        self._local_spans = _spans(model.local_networks)
        self._waiver_spans = tuple((w, *_spans([w.network])[0]) for w in model.waivers)
        base = base_dir or Path.cwd()
        self.geofeeds: tuple[Geofeed, ...] = tuple(
            load_geofeed(base / name) for name in model.geofeeds
        )
        self._geofeed: PrefixTable[tuple[Geofeed, GeofeedEntry]] = PrefixTable()
        for feed in self.geofeeds:
            for entry in feed.entries:
                try:
                    self._geofeed.add(entry.network, (feed, entry))
                except KeyError:
                    raise ConfigError(
                        str(feed.path),
                        f"{entry.network} is also listed in another geofeed",
                        f"line {entry.line}",
                    ) from None
        self._compiled = {4: self._compile(4), 6: self._compile(6)}

    @property
    def name(self) -> str:
        return self.model.jurisdiction.name

    @property
    def local_networks(self) -> tuple[Network, ...]:
        return self.model.local_networks

    @classmethod
    def load(cls, path: str | Path) -> EgressPolicy:
        """Read and validate the YAML policy at ``path``. Raises ``ConfigError``."""
        p = Path(path)
        try:
            if p.stat().st_size > MAX_POLICY_BYTES:
                raise ConfigError(str(p), f"policy file larger than {MAX_POLICY_BYTES} bytes")
            raw = p.read_bytes()
        except OSError as exc:
            raise ConfigError(str(p), f"cannot read policy: {exc.strerror or exc}") from exc
        return cls.from_yaml(raw, path=str(p), base_dir=p.parent)

    @classmethod
    def from_yaml(
        cls, raw: bytes, *, path: str = "<memory>", base_dir: Path | None = None
    ) -> EgressPolicy:
        """Validate policy YAML ``raw`` (bytes); ``path`` is only used in error messages,
        ``base_dir`` resolves relative ``geofeeds`` paths."""
        try:
            data = yaml.safe_load(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(path, f"not UTF-8 text: {exc.reason}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(path, f"not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(path, "expected a mapping with a `jurisdiction` key at the top")
        try:
            model = PolicyModel.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or None
            raise ConfigError(path, first["msg"], key=key) from exc
        return cls(model, path=path, sha256=hashlib.sha256(raw).hexdigest(), base_dir=base_dir)

    def is_internal(self, addr: IPAddress) -> bool:
        """In ``local_networks`` or an internal IANA special-purpose range (``INTERNAL_NETWORKS``;
        the most specific registry row decides, so ``192.0.0.9`` — PCP anycast inside
        ``192.0.0.0/24`` — is not internal)."""
        return _in_any(addr, self.model.local_networks) or _special_internal(addr)

    def evaluate(
        self,
        flow: Flow,
        geo: GeoSource | None,
        now: datetime,
        *,
        secondary: GeoSource | None = None,
    ) -> Verdict:
        """Judge ``flow`` at ``now`` (aware UTC; decides which waivers have expired).

        ``geo`` is a ``GeoDatabase`` or a hot-reloading ``GeoHandle``; ``None`` means no
        database: every address not settled by steps 1–6 is unknown. ``secondary`` is the
        optional second database whose answer is attached to GeoIP verdicts.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        db, second = current(geo), current(secondary)
        verdict = self._evaluate(flow, db, now, second)
        if flow.orientation_unknown:
            return worse(verdict, self._evaluate(flow.swapped(), db, now, second))
        return verdict

    def _facts(self, ip: str) -> _Facts:
        """What the policy says about a remote address whatever the flow (cached per address
        string, bounded): the normalized address, deny, the waivers whose network holds it, and
        the decision of steps 3–6 when one applies (``None``: ask GeoIP). One binary search in
        the policy compiled at load (``_compile``)."""
        facts = self._facts_cache.get(ip)
        if facts is not None:
            return facts
        version, value = embedded_ipv4_int(*parse_address(ip))
        starts, answers = self._compiled[version]
        denied, waivers, fixed = answers[bisect.bisect_right(starts, value) - 1]
        facts = _Facts(address_text(version, value), version, value, denied, waivers, fixed)
        if len(self._facts_cache) >= FACTS_CACHE_MAX:
            self._facts_cache.clear()
        self._facts_cache[ip] = facts
        return facts

    def _compile(self, version: int) -> tuple[list[int], list[_Answer]]:
        """The policy as a step function over the address space of one IP version: sorted
        interval starts and, per interval, (denied, waivers, steps 3–6 decision).

        Every network of the policy, of its overrides and geofeeds and of the IANA registries
        (``classify_int``) starts an interval at its first address and ends one after its
        last, so membership in each of them — hence the answer — is the same for every address
        of an interval: it is computed once, at the interval's first address."""
        bits = 32 if version == 4 else 128
        m = self.model
        nets: list[Network] = [*m.jurisdiction.allow_networks, *m.jurisdiction.deny_networks]
        nets += [*m.local_networks, *(w.network for w in m.waivers)]
        nets += [o.network for o in m.overrides]
        nets += [e.network for feed in self.geofeeds for e in feed.entries]
        cuts = set(special_starts(version))
        for n in nets:
            if n.version == version:
                cuts.add(int(n.network_address))
                cuts.add(int(n.broadcast_address) + 1)
        starts = sorted(c for c in cuts if c < 1 << bits)
        return starts, [self._answer(version, start) for start in starts]

    def _answer(self, version: int, value: int) -> _Answer:
        """Deny, waivers and the decision of steps 3–6 for one (normalized) address."""
        waivers = tuple(
            w for w, v, lo, hi in self._waiver_spans if v == version and lo <= value <= hi
        )
        fixed: _Fixed | None = None
        special = classify_int(version, value)
        if _in_spans(version, value, self._allow_spans):
            fixed = ("allowed network", None, "allow_networks", None, True)
        elif _in_spans(version, value, self._local_spans):
            fixed = ("internal", None, "local_networks", None, True)
        elif special is not None and special.scope == "internal":
            fixed = ("internal", None, "internal-ranges", None, True)
        elif (hit := self._overrides.lookup_int(version, value)) is not None:
            net, override = hit
            if override.allow:
                fixed = ("allowed network", None, f"override:{net}", None, True)
            else:
                fixed = ("", override.country, f"override:{net}", None, False)
        elif (fed := self._geofeed.lookup_int(version, value)) is not None:
            feed, entry = fed[1]
            rule = f"geofeed:{feed.path.name}:{entry.line}"
            fixed = ("", entry.country, rule, feed.provenance, False)
        return _in_spans(version, value, self._deny_spans), waivers, fixed

    def evaluate_many(
        self,
        flows: Iterable[Flow],
        geo: GeoSource | None,
        now: datetime | None = None,
        *,
        secondary: GeoSource | None = None,
    ) -> list[Verdict]:
        """Judge ``flows`` (same order) at ``now`` (aware UTC), or each flow at its own
        ``last_seen`` when ``now`` is ``None``; every flow against the same database (a reload
        during the call does not split the batch between two files).

        The same verdicts as ``evaluate`` flow by flow, decided once per remote address: what
        steps 1 and 3–7 say depends only on the remote address, so flows sharing one reuse
        the decision; a remote address that a waiver's network holds is judged flow by flow
        (ports and expiry differ). A flow marked ``orientation_unknown`` is judged from both
        ends (the module docstring), as ``evaluate`` does.
        """
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        todo = flows if isinstance(flows, list) else list(flows)
        unknown = [i for i, f in enumerate(todo) if f.orientation_unknown]
        if not unknown:
            return self._evaluate_many(todo, geo, now, secondary)
        n = len(todo)
        both = self._evaluate_many(todo + [todo[i].swapped() for i in unknown], geo, now, secondary)
        out = both[:n]
        for j, i in enumerate(unknown):
            out[i] = worse(out[i], both[n + j])
        return out

    def _evaluate_many(
        self,
        todo: list[Flow],
        geo: GeoSource | None,
        now: datetime | None,
        secondary: GeoSource | None,
    ) -> list[Verdict]:
        """``evaluate_many`` for flows taken as oriented (``orientation_unknown`` ignored)."""
        db, second = current(geo), current(secondary)
        sha = self.sha256 or None
        decided: dict[str, _Fields | None] = {}
        out: list[Verdict] = []
        append = out.append
        for start in range(0, len(todo), PREFETCH_FLOWS):
            chunk = todo[start : start + PREFETCH_FLOWS]
            if db is not None or second is not None:
                self._prefetch(chunk, db, second, decided)
            for flow in chunk:
                ip = flow.remote_ip
                try:
                    fields = decided[ip]
                except KeyError:
                    facts = self._facts(ip)
                    if facts.denied:
                        country, prov = self._locate(facts, db)
                        fields = ("violation", "foreign country", country, "deny_networks",
                                  prov, None, sha, None)  # fmt: skip
                    elif facts.waivers:
                        fields = None
                    else:
                        fields = self._decide(facts, db, second, sha)
                    decided[ip] = fields
                if fields is None:
                    append(self._evaluate(flow, db, now or flow.last_seen, second))
                else:
                    append(Verdict(flow, *fields))
        return out

    def _prefetch(
        self,
        flows: list[Flow],
        db: GeoDatabase | None,
        second: GeoDatabase | None,
        decided: dict[str, _Fields | None],
    ) -> None:
        """Look up, all at once, every remote address of ``flows`` that GeoIP will be asked
        about (``GeoDatabase.prefetch``): not yet decided, and not settled by steps 3–6."""
        need: dict[str, tuple[str, int, int]] = {}
        for flow in flows:
            ip = flow.remote_ip
            if ip in decided or ip in need:
                continue
            facts = self._facts(ip)
            if facts.fixed is None or facts.denied:
                need[ip] = (facts.remote, facts.version, facts.value)
        for source in (db, second):
            if source is not None and need:
                source.prefetch(need.values())

    def _evaluate(
        self, flow: Flow, db: GeoDatabase | None, now: datetime, second: GeoDatabase | None
    ) -> Verdict:
        facts = self._facts(flow.remote_ip)
        sha = self.sha256 or None

        if facts.denied:
            country, prov = self._locate(facts, db)
            return Verdict(
                flow,
                "violation",
                "foreign country",
                country,
                "deny_networks",
                geo=prov,
                policy_sha256=sha,
            )

        expired = None
        for waiver in facts.waivers:
            if waiver.matches_ports(flow):
                if now < waiver.expires:
                    return Verdict(
                        flow,
                        "waived",
                        "waiver",
                        None,
                        waiver.id,
                        waiver_id=waiver.id,
                        policy_sha256=sha,
                    )
                expired = expired or waiver

        verdict = Verdict(flow, *self._decide(facts, db, second, sha))
        if expired is not None and verdict.verdict == "violation":
            return Verdict(
                flow,
                "violation",
                "expired waiver",
                verdict.country,
                expired.id,
                geo=verdict.geo,
                waiver_id=expired.id,
                policy_sha256=sha,
                secondary=verdict.secondary,
            )
        return verdict

    def _decide(
        self,
        facts: _Facts,
        db: GeoDatabase | None,
        second: GeoDatabase | None,
        sha: str | None,
    ) -> _Fields:
        """Steps 3–7 for a remote address: the verdict's fields after ``flow``."""
        fixed = facts.fixed
        if fixed is not None:
            reason, country, rule, prov, allowed = fixed
            if allowed:
                return ("allowed", reason, None, rule, None, None, sha, None)
            return self._by_country(country, rule, prov, sha)
        country, prov = None, None
        if db is not None:
            located = db.lookup_normalized(facts.remote, facts.version, facts.value)
            if located.error:
                # a corrupt database is not "no country": fail closed whatever `unknown` says
                return ("violation", "unknown location", None, "geoip-lookup-error",
                        db.provenance, None, sha, None)  # fmt: skip
            country, prov = located.country, db.provenance
        opinion = None
        if second is not None:
            other = second.lookup_normalized(facts.remote, facts.version, facts.value).country
            disagrees = country is not None and other is not None and other != country
            opinion = GeoSecondOpinion(other, second.provenance, disagrees)
        return self._by_country(country, "jurisdiction", prov, sha, opinion)

    def _by_country(
        self,
        country: str | None,
        rule: str,
        prov: GeoProvenance | None,
        sha: str | None,
        opinion: GeoSecondOpinion | None = None,
    ) -> _Fields:
        if country is None:
            kind: Literal["allowed", "violation"] = (
                "allowed" if self.model.jurisdiction.unknown == "allow" else "violation"
            )
            return (kind, "unknown location", None, rule, prov, None, sha, opinion)
        if country in self.allowed_countries:
            kind, reason = "allowed", "allowed country"
        else:
            kind, reason = "violation", "foreign country"
        return (kind, reason, country, rule, prov, None, sha, opinion)

    @staticmethod
    def _locate(facts: _Facts, geo: GeoDatabase | None) -> tuple[str | None, GeoProvenance | None]:
        if geo is None:
            return None, None
        located = geo.lookup_normalized(facts.remote, facts.version, facts.value)
        return located.country, geo.provenance


def severity(verdict: Verdict) -> tuple[int, int]:
    """How bad a verdict is, for keeping the worse of two: a violation for a known reason (3)
    over ``unknown location`` (2; a violation before an allowed one) over waived (1) over
    allowed (0)."""
    is_violation = int(verdict.verdict == "violation")
    if verdict.reason == "unknown location":
        return 2, is_violation
    if is_violation:
        return 3, 1
    return (1 if verdict.verdict == "waived" else 0), 0


def worse(first: Verdict, second: Verdict) -> Verdict:
    """The worse of two verdicts on one flow (``severity``); ``first`` on a tie."""
    return second if severity(second) > severity(first) else first


def evaluate_all(
    flows: Iterable[Flow],
    policy: EgressPolicy,
    geo: GeoSource | None,
    now: datetime,
    *,
    secondary: GeoSource | None = None,
) -> list[Verdict]:
    """``policy.evaluate`` over ``flows`` (same order), every flow against the same database
    (a reload during the call does not split the batch between two files)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return policy.evaluate_many(flows, geo, now, secondary=secondary)


def special_internal(ip: str) -> bool:
    """``ip`` (text) is internal by the IANA special-purpose registries alone (private, ULA,
    loopback, link-local, CGNAT, documentation, broadcast...: ``sentinel.geo.special``, scope
    ``internal``; an embedded IPv4 address — mapped, NAT64, 6to4, Teredo — is classified
    instead). The policy's networks play no part. ``False`` for text that is not an address."""
    try:
        version, value = embedded_ipv4_int(*parse_address(ip))
    except ValueError:
        return False
    hit = classify_int(version, value)
    return hit is not None and hit.scope == "internal"


@dataclass(frozen=True, slots=True)
class UnknownOrientation:
    """Flows marked ``orientation_unknown`` (neither end in ``local_networks``), by how many
    of their ends are internal by the IANA registries (``special_internal``):

    * ``public`` — neither: which end is ours decides the verdict; listing the registry hosts'
      addresses in ``local_networks`` is what orients them;
    * ``one_special`` — one end private/special: the other (public) end decides whichever end
      is ours, as it would if the flow were oriented;
    * ``special`` — both: allowed as internal from either end, not egress at all.
    """

    public: int = 0
    one_special: int = 0
    special: int = 0

    @property
    def total(self) -> int:
        return self.public + self.one_special + self.special

    @classmethod
    def count(cls, flows: Iterable[Flow]) -> UnknownOrientation:
        """Count the marked ``flows`` (others are skipped); addresses classified once each."""
        seen: dict[str, bool] = {}
        tally = [0, 0, 0]
        for f in flows:
            if not f.orientation_unknown:
                continue
            ends = 0
            for ip in (f.local_ip, f.remote_ip):
                hit = seen.get(ip)
                if hit is None:
                    hit = seen[ip] = special_internal(ip)
                ends += hit
            tally[ends] += 1
        return cls(*tally)

    def describe(self, policy: object) -> str:
        """The ``egress check`` summary clause (empty when nothing was marked); ``policy``
        names the file where ``local_networks`` is set."""
        if not self.total:
            return ""
        parts = []
        if self.public:
            parts.append(
                f"{self.public} between public addresses (list the registry hosts' addresses "
                f"in local_networks in {policy})"
            )
        if self.one_special:
            parts.append(
                f"{self.one_special} with one private/special-purpose end (the public end "
                "decides, as if oriented)"
            )
        if self.special:
            parts.append(
                f"{self.special} between private/special-purpose addresses only (internal: "
                "not egress)"
            )
        return (
            f"{self.total} flow(s) with neither endpoint in local_networks, judged from both "
            f"ends: " + ", ".join(parts)
        )
