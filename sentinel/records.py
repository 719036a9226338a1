"""Frozen records that cross stage boundaries (DESIGN.md "Data flow").

``AuditEvent`` (audit/ → ledger), ``Flow`` (flows/ → policy/), ``Verdict`` (policy/ → ledger,
metrics), ``Unparsed`` (any source → ledger, metrics). Input that cannot be parsed becomes an
``Unparsed`` value, never an exception that stops a source.

Each record has ``to_json()`` returning a JSON-ready dict with the DESIGN.md field names: only
``str``, ``int``, ``bool``, ``None``, lists and dicts (no floats), so that it can be canonicalized
with RFC 8785 and hashed into the ledger unchanged.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from sentinel.redact import redact_bytes
from sentinel.timefmt import format_ts

#: DESIGN.md "Normalized audit event": the closed set of actions.
Action = Literal[
    "push",
    "pull",
    "delete",
    "untag",
    "mount",
    "tag",
    "register",
    "stage_change",
    "login",
    "auth_failure",
    "access_denied",
    "config_change",
    "other",
]
Outcome = Literal["success", "failure", "unknown"]
ACTIONS: frozenset[str] = frozenset(get_args(Action))
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
SOURCE_KINDS = frozenset({"distribution", "harbor", "minio", "mlflow", "zot", "k8s", "jsonmap"})
ClientIPSource = Literal["socket", "header"]


#: a file position: ``<path>@<dev>:<ino>.<gen>:<fingerprint>:<offset>`` plus what a parser
#: appends for the n-th record of one line/payload (``#<n>``, ``@<n>``); the path may hold
#: anything, so the pattern is anchored on the end
_FILE_POS = re.compile(r"@[^@:/]+:\d+\.\d+:(?P<fp>[0-9a-f]{16}):(?P<rest>\d+(?:[#@][^/]*)?)$")


def position_key(src_pos: str) -> str:
    """The part of ``src_pos`` that identifies the *content*, not the file it was read from.

    Tailed and ingested files have ``src_pos = "<path>@<dev>:<ino>.<gen>:<fp>:<offset>"``
    (``fp``: ``sentinel.audit.cursor.first_line_fingerprint``, the SHA-256 of the file's first
    line); the key is ``"<fp>:<offset>"`` (plus a parser's ``#<n>`` suffix). So the same bytes
    read under another path, a symlink, a rename, a copy (logrotate ``copytruncate``, a restored
    backup, a log fetched from another host), a ``.gz`` or a new generation of the same inode
    give the same key — the record's hash is the other half of the dedup key. Limit: two
    different files of one source whose first lines are identical share the fingerprint, so a
    line with the same bytes at the same offset in both is taken as one (it is the same
    content). A ``src_pos`` of the earlier form ``<path>@<dev>:<ino>.<gen>:<offset>`` (records
    written before fingerprints) keeps its earlier key ``"<dev>:<ino>.<gen>:<offset>"``. Other
    positions (webhook deliveries, syslog frames) are returned unchanged.
    """
    m = _FILE_POS.search(src_pos)
    if m is not None:
        return f"{m['fp']}:{m['rest']}"
    _path, at, rest = src_pos.rpartition("@")  # the earlier rule, for earlier records
    if at and rest.count(":") >= 2:
        return rest
    return src_pos


def sha256_hex(raw: bytes) -> str:
    """Lower-case hex SHA-256 of ``raw``."""
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One normalized registry audit event (DESIGN.md "Normalized audit event").

    ``ts`` is aware UTC. ``ts_zone_assumed`` names the zone Sentinel assumed when the source
    gave none (``None`` when the source stated its zone). ``src_pos`` is ``"<file id>:<byte
    offset>"`` for log lines or ``"<source id>:<delivery>"`` for webhooks.
    """

    ts: datetime
    source: str
    source_kind: str
    action: Action
    outcome: Outcome
    raw_sha256: str
    src_pos: str
    actor: str | None = None
    actor_verified: bool = False
    artifact: str | None = None
    reference: str | None = None
    digest: str | None = None
    client_ip: str | None = None
    client_ip_source: ClientIPSource | None = None
    user_agent: str | None = None
    request_id: str | None = None
    event_id: str | None = None
    client_country: str | None = None
    ts_zone_assumed: str | None = None
    #: HTTP method and status when the source records them (``HEAD``/``GET``..., 200...)
    http_method: str | None = None
    http_status: int | None = None
    #: what the source did not say and how Sentinel filled or flagged it (e.g. MLflow access
    #: lines that do not name the model); serialized only when set, so older records keep
    #: their canonical bytes
    detail: str | None = None
    #: where Sentinel found what the source did not say (``"mlflow-rest"``: the MLflow
    #: tracking server's REST API; ``detail`` says what matched); serialized only when set
    reconstructed_from: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if self.ts.tzinfo is None:
            raise ValueError("AuditEvent.ts must be timezone-aware (UTC)")
        if self.client_ip is not None:
            self._check_client_ip(self.client_ip)

    def _check_client_ip(self, given: str) -> None:
        """``client_ip`` is an IP address or ``None``: a logged value that is not one (a
        forged ``X-Forwarded-For: not-an-ip``, a host name) is kept in ``detail`` and
        ``client_ip`` left empty with its source still set (``header`` when none was given),
        which location rules treat as an unknown location (fail closed)."""
        ip = normalize_ip(given)
        if ip is not None:
            if ip != given:
                object.__setattr__(self, "client_ip", ip)
            return
        object.__setattr__(self, "client_ip", None)
        if not given.strip():
            return
        note = f"client address {given!r} is not an IP address"
        object.__setattr__(self, "detail", f"{self.detail}; {note}" if self.detail else note)
        if self.client_ip_source is None:
            object.__setattr__(self, "client_ip_source", "header")

    @property
    def dedup_key(self) -> str:
        """Key under which an at-least-once redelivery is recognised.

        The source's own event id when it has one, else the raw line's position and hash.
        """
        if self.event_id:
            return f"{self.source}:event:{self.event_id}"
        return f"{self.source}:pos:{position_key(self.src_pos)}:{self.raw_sha256}"

    def to_json(self) -> dict[str, Any]:
        """DESIGN.md field names, JSON-ready (no floats; ``ts`` as RFC 3339 UTC)."""
        body: dict[str, Any] = {
            "ts": format_ts(self.ts),
            "source": self.source,
            "source_kind": self.source_kind,
            "action": self.action,
            "outcome": self.outcome,
            "actor": self.actor,
            "actor_verified": self.actor_verified,
            "artifact": self.artifact,
            "reference": self.reference,
            "digest": self.digest,
            "client_ip": self.client_ip,
            "client_ip_source": self.client_ip_source,
            "client_country": self.client_country,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
            "event_id": self.event_id,
            "http_method": self.http_method,
            "http_status": self.http_status,
            "raw_sha256": self.raw_sha256,
            "src_pos": self.src_pos,
            "ts_zone_assumed": self.ts_zone_assumed,
        }
        if self.detail is not None:
            body["detail"] = self.detail
        if self.reconstructed_from is not None:
            body["reconstructed_from"] = self.reconstructed_from
        return body


@dataclass(frozen=True, slots=True)
class Unparsed:
    """Input a parser could not turn into a record: counted, kept as evidence, never fatal.

    ``raw`` is kept up to ``MAX_KEPT_BYTES``; ``raw_sha256`` and ``raw_len`` always describe the
    whole input.
    """

    MAX_KEPT = 4096

    source: str
    reason: str
    raw: bytes
    src_pos: str
    raw_sha256: str = ""
    raw_len: int = 0
    #: the kept copy does not cover the whole input (``raw`` cut at ``MAX_KEPT`` or given partial)
    raw_truncated: bool = field(default=False, init=False, compare=False)

    def __post_init__(self) -> None:
        if not self.raw_sha256:
            object.__setattr__(self, "raw_sha256", sha256_hex(self.raw))
            object.__setattr__(self, "raw_len", len(self.raw))
        # The one place every kept copy passes: secrets (sentinel.redact) never reach
        # ``raw`` — hence never the ledger, ``--json`` output or a log — while ``raw_sha256``
        # still names the original bytes. Redaction runs on a bounded window (a secret cut
        # at its end is still removed: the patterns accept a value cut short).
        window = self.raw[: 2 * self.MAX_KEPT]
        truncated = len(window) > self.MAX_KEPT or self.raw_len > len(self.raw)
        object.__setattr__(self, "raw", redact_bytes(window)[: self.MAX_KEPT])
        object.__setattr__(self, "raw_truncated", truncated)

    @property
    def dedup_key(self) -> str:
        """Source, position (without the path, see ``position_key``) and hash of the input."""
        return f"{self.source}:unparsed:{position_key(self.src_pos)}:{self.raw_sha256}"

    def to_json(self) -> dict[str, Any]:
        kept = self.raw
        return {
            "source": self.source,
            "reason": self.reason,
            "src_pos": self.src_pos,
            "raw_sha256": self.raw_sha256,
            "raw_len": self.raw_len,
            "raw_kept": kept.decode("utf-8", errors="backslashreplace"),
            "raw_truncated": self.raw_truncated,
        }


# dotted-quad IPv4 as ipaddress writes it (no leading zeros, each octet ≤ 255): returned as
# is, without parsing (the common case on every audit event)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def normalize_ip(text: str) -> str | None:
    """``text`` as a canonical IP address (RFC 5952 for IPv6; IPv4-mapped IPv6
    ``::ffff:a.b.c.d`` as the IPv4 address), or ``None`` if it is not one."""
    if _CANONICAL_V4.fullmatch(text):
        return text
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


#: IANA "Assigned Internet Protocol Numbers" (keywords, lower case) for the protocols a network
#: flow commonly carries; experimental (253, 254), "any host internal protocol" (61) and other
#: numbers keep the ``ip-<n>`` form
PROTOCOL_NAMES = {
    1: "icmp",
    2: "igmp",
    4: "ipv4",
    6: "tcp",
    17: "udp",
    41: "ipv6",
    46: "rsvp",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "icmpv6",
    88: "eigrp",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    115: "l2tp",
    132: "sctp",
    136: "udplite",
    137: "mpls-in-ip",
}


def protocol_name(number: int) -> str:
    """IANA protocol number → lower-case keyword of the IANA registry (``"ip-<n>"`` when
    ``PROTOCOL_NAMES`` does not name it)."""
    return PROTOCOL_NAMES.get(number, f"ip-{number}")


def join_host_port(host: str, port: int | str) -> str:
    """``host:port``, an IPv6 address in brackets (``[2001:db8::5]:80``), as RFC 3986 §3.2.2
    writes it in a URI authority and RFC 5952 §6 recommends for text: an unbracketed
    ``2001:db8::5:80`` reads as one address. ``host``: an address or name; ``port``: 0–65535."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class RemoteName:
    """A DNS name the flow's remote address was given for (``sentinel.flows.dns``).

    ``name`` is the name the client asked for (lower case, no final dot); ``cnames`` the CNAME
    chain followed from it, in order; ``answered_at`` (aware UTC) when the answer was seen (the
    first of an uninterrupted run of the same answer); ``ttl`` its TTL in seconds (the smallest
    along the chain); ``client`` the address that received the answer, ``resolver`` the one
    that sent it.
    """

    name: str
    cnames: tuple[str, ...]
    answered_at: datetime
    ttl: int
    client: str
    resolver: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cnames": list(self.cnames),
            "answered_at": format_ts(self.answered_at),
            "ttl": self.ttl,
            "client": self.client,
            "resolver": self.resolver,
        }


@dataclass(frozen=True, slots=True)
class Flow:
    """A bidirectional flow between a local endpoint and a remote one.

    "out" is local → remote (data leaving), "in" is remote → local. Byte counts are IP
    lengths (bytes) as captured on the wire, or for NetFlow/IPFIX as the exporter counted
    them times its ``sampling_rate``. ``first_seen``/``last_seen`` are aware UTC.
    Ports are 0 for protocols without ports (ICMP) and for non-first IP fragments whose
    first fragment was not seen. ``remote_names``: DNS names the remote address was given
    for before the flow started (newest first; empty when none was seen).
    ``orientation_unknown``: neither endpoint is in the policy's ``local_networks`` (NetFlow/
    IPFIX records, captured and conntrack flows), so which one is ours is a guess; the policy
    judges both as the remote one and keeps the worse verdict (``EgressPolicy.evaluate``).
    """

    protocol: int
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    packets_out: int
    packets_in: int
    bytes_out: int
    bytes_in: int
    first_seen: datetime
    last_seen: datetime
    #: NetFlow/IPFIX only: the exporter (router) address that reported the flow
    exporter: str | None = None
    #: NetFlow/IPFIX only: the exporter's 1-in-N packet sampling rate when N > 1; packets and
    #: bytes were then multiplied by N (estimates, as pmacct's renormalization)
    sampling_rate: int | None = None
    remote_names: tuple[RemoteName, ...] = ()
    orientation_unknown: bool = False

    @property
    def packets(self) -> int:
        return self.packets_out + self.packets_in

    @property
    def remote_host(self) -> str | None:
        """The newest DNS name of the remote address, ``None`` when none was seen."""
        return self.remote_names[0].name if self.remote_names else None

    def swapped(self) -> Flow:
        """The same flow seen from the other end: local and remote (address, port) exchanged,
        out and in counts exchanged; everything else kept. DNS names (given for the remote
        address) are dropped."""
        return Flow(
            protocol=self.protocol,
            local_ip=self.remote_ip,
            local_port=self.remote_port,
            remote_ip=self.local_ip,
            remote_port=self.local_port,
            packets_out=self.packets_in,
            packets_in=self.packets_out,
            bytes_out=self.bytes_in,
            bytes_in=self.bytes_out,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            exporter=self.exporter,
            sampling_rate=self.sampling_rate,
            orientation_unknown=self.orientation_unknown,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready; ``remote_names`` only when there are some (earlier records keep their
        canonical bytes)."""
        body: dict[str, Any] = {
            "protocol": protocol_name(self.protocol),
            "local_ip": self.local_ip,
            "local_port": self.local_port,
            "remote_ip": self.remote_ip,
            "remote_port": self.remote_port,
            "packets": self.packets,
            "packets_out": self.packets_out,
            "packets_in": self.packets_in,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
            "first_seen": format_ts(self.first_seen),
            "last_seen": format_ts(self.last_seen),
        }
        # absent unless set: records of captured flows keep their canonical bytes
        if self.exporter is not None:
            body["exporter"] = self.exporter
        if self.sampling_rate is not None:
            body["sampling_rate"] = self.sampling_rate
        if self.remote_names:
            body["remote_names"] = [n.to_json() for n in self.remote_names]
        if self.orientation_unknown:
            body["orientation_unknown"] = True
        return body


VerdictKind = Literal["allowed", "violation", "waived"]
#: The reasons a verdict can give (issue #2); stable strings, used as metric label values.
REASONS = (
    "internal",
    "allowed country",
    "allowed network",
    "foreign country",
    "unknown location",
    "waiver",
    "expired waiver",
)


@dataclass(frozen=True, slots=True)
class GeoProvenance:
    """Which GeoIP database produced a location: type, build time (UTC epoch seconds), SHA-256."""

    database_type: str
    build_epoch: int
    sha256: str
    path: str

    def to_json(self) -> dict[str, Any]:
        return {
            "database_type": self.database_type,
            "build_epoch": self.build_epoch,
            "sha256": self.sha256,
            "path": self.path,
        }


@dataclass(frozen=True, slots=True)
class GeoSecondOpinion:
    """A second GeoIP database's answer for the same remote address: its ``country`` (``None``
    when it has none), its provenance, and ``disagrees`` — both databases give a country and
    the countries differ."""

    country: str | None
    geo: GeoProvenance
    disagrees: bool

    def to_json(self) -> dict[str, Any]:
        return {"country": self.country, "disagrees": self.disagrees, "geoip": self.geo.to_json()}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's decision on one flow, with its reason and the evidence behind it.

    ``rule`` names what decided: ``"jurisdiction"``, a waiver id, ``"internal-ranges"``...
    ``country`` is the ISO 3166-1 alpha-2 code of where the remote address *is* (``None`` when
    unknown or internal). ``geo`` is ``None`` when no lookup was made (internal, allowed network).

    A flow marked ``orientation_unknown`` (neither end in ``local_networks``) was judged from
    both ends; ``flow`` is oriented as judged: ``remote_ip`` is the end that decided (the
    *judged end*), ``local_ip`` the other one — not known to be ours — and ``bytes_out``/
    ``packets_out`` count what went from the other end to the judged end. ``to_json`` then adds
    ``"orientation": "unknown"`` and ``"judged_ip"`` (absent for oriented flows).
    """

    flow: Flow
    verdict: VerdictKind
    reason: str
    country: str | None
    rule: str
    geo: GeoProvenance | None = None
    waiver_id: str | None = None
    policy_sha256: str | None = None
    #: the optional second database's answer (only when one is configured and was consulted)
    secondary: GeoSecondOpinion | None = None

    @property
    def location_label(self) -> str:
        """Where the remote endpoint is, as a low-cardinality label.

        The ISO 3166-1 code when GeoIP located it; otherwise why there is none: ``internal``,
        ``allowed-network`` or ``waived`` (decided before any lookup), ``unknown`` (not found).
        """
        if self.country:
            return self.country
        labels = {"internal": "internal", "allowed network": "allowed-network", "waiver": "waived"}
        return labels.get(self.reason, "unknown")

    def to_json(self) -> dict[str, Any]:
        body = self.flow.to_json()
        body.update(
            {
                "verdict": self.verdict,
                "reason": self.reason,
                "country": self.country,
                "rule": self.rule,
                "waiver_id": self.waiver_id,
                "geoip": self.geo.to_json() if self.geo else None,
                "policy_sha256": self.policy_sha256,
            }
        )
        if self.secondary is not None:  # absent otherwise: earlier records keep their bytes
            body["geoip_secondary"] = self.secondary.to_json()
        if self.flow.orientation_unknown:  # absent otherwise, as orientation_unknown
            body["orientation"] = "unknown"
            body["judged_ip"] = self.flow.remote_ip
        return body
