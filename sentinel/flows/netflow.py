"""NetFlow v5, NetFlow v9 and IPFIX export decoding: UDP payloads in, ``FlowRecord`` values out.

Pure: no sockets, no clocks (the caller passes the receive time), no I/O. One
``NetflowDecoder`` holds the state a collector needs across datagrams: templates, options data
(sampling rates, exporter boot time), buffered data sets waiting for their template, sequence
numbers. ``sentinel.flows.netflow_collector`` feeds it from a UDP socket or a pcap file.

Formats (sources):

* NetFlow v5 — Cisco, "NetFlow Export Datagram Format", version 5: a 24-byte header (version,
  count ≤ 30, SysUptime ms, unix_secs, unix_nsecs, flow_sequence, engine_type, engine_id,
  sampling_interval: 2-bit mode, 14-bit interval) and ``count`` 48-byte records.
* NetFlow v9 — RFC 3954: 20-byte header (sequence = export packets of the Source ID), FlowSet
  id 0 templates, id 1 options templates (scope and option lengths in bytes), ids ≥ 256 data.
* IPFIX — RFC 7011: 16-byte message header (length, export time, sequence = data records of the
  Observation Domain), Set id 2 templates, id 3 options templates, ids ≥ 256 data; enterprise
  bit and Private Enterprise Numbers; variable-length fields (length 65535: a 1-byte length, or
  255 then a 2-byte length); template withdrawal (field count 0; template id 2 or 3 with count
  0 withdraws every template of that kind). Information Element numbers are IANA's "IPFIX
  Information Elements" registry (the NetFlow v9 field types below 128 are the same numbers).
  RFC 5103 biflows: reverse counters (enterprise 29305) are kept as ``rev_packets``/``rev_bytes``.

Why not a library. Tried against the corpus (``../shared/corpus/pcap``): scapy 2.8.0's
``NetflowHeader`` + ``netflowv9_defragment`` raises ``ValueError: duplicate parameter name`` on
templates that list an element twice (pmacct 104 and 111, the ipfixprobe templates), keys
templates by template id alone (two exporters or two domains overwrite each other), decodes only
the first record of an options data set and has no variable-length fields; PyPI ``netflow``
0.12.2 raises ``PaddingCalculationError`` on the Cisco IPFIX captures (pmacct 104, 112), fails on
scapy's ``netflowv9.pcap`` (``unpack requires a buffer``), also keys templates by id alone,
abandons a whole datagram at its first unknown template (so the templates that follow in that
datagram are never learnt) and reads no sampling options. Neither buffers data for a late
template. Hence this decoder, which handles exactly those cases and is tested against pmacct's
expected output.

Templates are keyed by ``(exporter address, version, observation domain / source id, template
id)``. Data that arrives before its template is buffered (bounded by ``Limits``) and replayed,
in arrival order, when the template arrives; what is still waiting when evicted or at
``finish()`` is counted as dropped for a missing template (sets and bytes: the record count of a
set is unknowable without its template).

Expiry (UDP has no session end, so state must age out). When ``feed`` is given the receive time
``now`` (seconds, any monotonic clock; ``expire(now)`` for the idle periods between datagrams):
a buffered set older than ``Limits.pending_max_age`` is dropped (counted as missing its template
and in ``pending_expired_sets``), and an exporter address silent for
``Limits.exporter_idle_timeout`` is forgotten — its templates, options data (sampling rates, boot
time), sequence positions (the counters stay) and buffered sets (counted as above) — and frees
its slot under ``max_exporters`` (``exporters_expired``, ``templates_expired``). RFC 7011 §10.3.7
(UDP) requires a collector to give each template a lifetime of at least three times the
exporter's template refresh timeout; exporters refresh every 10-600 s (Junos
``template-refresh-rate seconds``: default 60, at most 600), hence 1,800 s (3 × 600) for both
defaults. Data whose template did not come within three refresh periods is not expected to get
it. Without ``now`` nothing ages (offline reads: templates carry over between files).

A template that is redefined replaces the old one (counted in ``templates_replaced``); options
data that re-assigns a key (sampler id, exporter boot time) replaces the old value.

Sampling: the rate applied to a data record is, in order, the rate in the record itself
(``samplerRandomInterval`` 50, ``samplingInterval`` 34, ``samplingPopulation`` /
``samplingSize`` 310/309 — Cisco IOS XR — , ``samplingPacketInterval`` +
``samplingPacketSpace`` over the interval 305/306, or the interval alone), else the rate
options data gave for the record's sampler (``FLOW_SAMPLER_ID``/``samplerId`` 48,
``selectorId`` 302), else the rate options data gave for the whole exporter and domain, else the
NetFlow v5 header's interval, else 1 (unsampled, or not said). ``FlowRecord`` keeps the counts as
exported plus ``sampling_rate``; ``FlowRecord.to_flow`` multiplies packets and bytes by the rate
(as pmacct's ``nfacctd_renormalize: true`` does) and states the rate in ``Flow.sampling_rate``,
so a verdict and a report always say when a count is an estimate.

Sequence numbers (per exporter and domain): NetFlow v5 and IPFIX count records, NetFlow v9
counts export packets. A jump forward is counted in ``SequenceStats.lost`` (records for v5 and
IPFIX, export packets for v9); an older number within ``REORDER_WINDOW`` is counted as
``reordered``; a larger step back is an exporter restart (``resets``). When a datagram holds a
data set whose template is unknown its record count is unknown, so the next IPFIX/v5 datagram
re-synchronises without counting a gap.

Bad input never raises: a datagram that cannot be decoded is counted (``NetflowStats.malformed``
by reason) and reported in ``FeedResult.problems``. Damage inside a well-framed set (a reserved
set id, a template or variable-length field overrunning its set) spoils that set only; a set
length that breaks the framing stops the datagram there. What was decoded before is kept.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sentinel.records import Flow

_log = logging.getLogger(__name__)

# -- Information Element numbers (IANA IPFIX registry; NetFlow v9 uses the same below 128) ------
IE_OCTETS = 1
IE_PACKETS = 2
IE_PROTOCOL = 4
IE_TOS = 5
IE_TCP_FLAGS = 6
IE_SRC_PORT = 7
IE_SRC_V4 = 8
IE_IN_IF = 10
IE_DST_PORT = 11
IE_DST_V4 = 12
IE_OUT_IF = 14
IE_LAST_SWITCHED = 21
IE_FIRST_SWITCHED = 22
IE_SRC_V6 = 27
IE_DST_V6 = 28
IE_SAMPLING_INTERVAL = 34
IE_SAMPLER_ID = 48
IE_SAMPLER_RANDOM_INTERVAL = 50
IE_DIRECTION = 61
IE_OCTETS_TOTAL = 85
IE_PACKETS_TOTAL = 86
IE_START_S = 150
IE_END_S = 151
IE_START_MS = 152
IE_END_MS = 153
IE_START_US = 154
IE_END_US = 155
IE_START_NS = 156
IE_END_NS = 157
IE_START_DELTA_US = 158
IE_END_DELTA_US = 159
IE_SYSTEM_INIT_MS = 160
IE_INITIATOR_OCTETS = 231
IE_RESPONDER_OCTETS = 232
IE_INITIATOR_PACKETS = 298
IE_RESPONDER_PACKETS = 299
IE_SELECTOR_ID = 302
IE_SAMPLING_PACKET_INTERVAL = 305
IE_SAMPLING_PACKET_SPACE = 306
IE_SAMPLING_SIZE = 309
IE_SAMPLING_POPULATION = 310
#: RFC 5103 reverse Information Elements: enterprise number 29305, same element numbers
REVERSE_PEN = 29305

VARIABLE_LENGTH = 65535
#: sequence numbers this far behind the expected one are late packets, not a restart
REORDER_WINDOW = 1 << 16
_U32 = 1 << 32
#: NTP era 0 (1900-01-01) → Unix epoch, seconds (RFC 7011 section 6.1.8)
_NTP_OFFSET = 2_208_988_800
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_V5_HEADER = struct.Struct("!HHIIIIBBH")
_V5_RECORD = struct.Struct("!4s4s4sHHIIIIHHxBBBHHBBxx")
_V9_HEADER = struct.Struct("!HHIIII")
_IPFIX_HEADER = struct.Struct("!HHIII")
_SET_HEADER = struct.Struct("!HH")
_HH = struct.Struct("!HH")
_HHH = struct.Struct("!HHH")
_I = struct.Struct("!I")
_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


class NetflowError(ValueError):
    """A datagram (or part of one) that is not a valid NetFlow v5/v9 or IPFIX export.

    ``reason`` is a short stable label (``"truncated header"``, ``"bad set length"``...) used
    as the key of ``NetflowStats.malformed``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class Limits:
    """Bounds on everything a remote exporter can make the decoder hold.

    ``max_datagram`` (bytes): larger datagrams are refused. ``max_exporters``: distinct exporter
    addresses with state. ``max_templates_per_exporter``: templates (all domains) per address;
    a new one beyond it is refused and counted. ``max_pending_sets`` / ``max_pending_bytes``:
    data sets buffered while waiting for their template (oldest evicted first, counted).
    ``exporter_idle_timeout`` (seconds): an exporter silent this long is forgotten;
    ``pending_max_age`` (seconds): a buffered set older than this is dropped (counted). Both
    apply only when ``feed``/``expire`` are given the time (module docstring: RFC 7011 §10.3.7).
    """

    max_datagram: int = 65_535
    max_exporters: int = 1_024
    max_templates_per_exporter: int = 4_096
    max_pending_sets: int = 10_000
    max_pending_bytes: int = 16 * 1024 * 1024
    exporter_idle_timeout: float = 1_800.0
    pending_max_age: float = 1_800.0


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One decoded flow record, as the exporter reported it (unidirectional ``src`` → ``dst``).

    ``packets``/``bytes`` are the exported counts (not scaled); ``rev_packets``/``rev_bytes``
    the reverse direction of an RFC 5103 biflow or a NSEL initiator/responder pair (0
    otherwise). ``sampling_rate`` is the 1-in-N packet sampling that applied (1: unsampled or
    not said). ``first_ns``/``last_ns`` are UTC nanoseconds since the epoch (the export time
    when the record carries no time). ``domain`` is the IPFIX Observation Domain ID, the v9
    Source ID, or ``engine_type << 8 | engine_id`` for v5. ``direction``: ``flowDirection``
    (0 ingress, 1 egress) when exported, else ``None``.
    """

    exporter: str
    version: int
    domain: int
    template_id: int
    protocol: int
    src: str
    dst: str
    src_port: int
    dst_port: int
    packets: int
    bytes: int
    first_ns: int
    last_ns: int
    sampling_rate: int = 1
    rev_packets: int = 0
    rev_bytes: int = 0
    tos: int = 0
    tcp_flags: int = 0
    in_if: int = 0
    out_if: int = 0
    direction: int | None = None

    def to_flow(self, orient: Orienter) -> Flow:
        """This record as a ``Flow``: local/remote decided by ``orient``, packets and bytes
        multiplied by ``sampling_rate`` (estimates when > 1, stated in ``Flow.sampling_rate``),
        ``Flow.exporter`` set to the exporter address. When neither end is in
        ``local_networks`` the flow is marked ``orientation_unknown`` (the policy then judges
        both ends as the remote one)."""
        rate = self.sampling_rate
        fwd_p, fwd_b = self.packets * rate, self.bytes * rate
        rev_p, rev_b = self.rev_packets * rate, self.rev_bytes * rate
        src_rank, dst_rank = orient.rank(self.src), orient.rank(self.dst)
        if src_rank >= dst_rank:
            lip, lport, rip, rport = self.src, self.src_port, self.dst, self.dst_port
            p_out, b_out, p_in, b_in = fwd_p, fwd_b, rev_p, rev_b
        else:
            lip, lport, rip, rport = self.dst, self.dst_port, self.src, self.src_port
            p_out, b_out, p_in, b_in = rev_p, rev_b, fwd_p, fwd_b
        first = min(self.first_ns, self.last_ns)
        return Flow(
            protocol=self.protocol,
            local_ip=lip,
            local_port=lport,
            remote_ip=rip,
            remote_port=rport,
            packets_out=p_out,
            packets_in=p_in,
            bytes_out=b_out,
            bytes_in=b_in,
            first_seen=_EPOCH + timedelta(microseconds=first // 1000),
            last_seen=_EPOCH + timedelta(microseconds=self.last_ns // 1000),
            exporter=self.exporter,
            sampling_rate=rate if rate > 1 else None,
            orientation_unknown=src_rank < 2 and dst_rank < 2,
        )


class Orienter:
    """Decides which end of a record is local, as ``sentinel.flows.table.FlowTable`` does.

    Rank: 2 inside ``local_networks``, 1 a private or special range (``ipaddress``
    ``is_private`` or ``is_multicast``: RFC 1918, ULA, link-local, loopback, documentation...),
    0 public. The higher-ranked end is local; on a tie the source is (an exporter reports the
    direction it saw). Addresses whose first byte lies outside every private and multicast
    range of any Python version skip the ``ipaddress`` check. Cached, bounded. When neither end
    ranks 2 the guess may be wrong (an ingress-only exporter reports foreign → our unlisted
    public address): ``FlowRecord.to_flow`` then marks the flow ``orientation_unknown``.
    """

    _CACHE_MAX = 65_536
    #: first bytes of every IPv4 / IPv6 ``is_private`` or multicast network (Python 3.11-3.13)
    _V4_MAYBE = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203, *range(224, 256)})
    _V6_MAYBE = frozenset({0x00, 0x01, 0x20, 0x3F, 0x5F, *range(0xFC, 0x100)})

    def __init__(
        self, local_networks: Iterable[str | ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in local_networks)
        self._nets = tuple(
            (n.version, int(n.network_address), int(n.netmask)) for n in self.networks
        )
        self._rank: dict[str, int] = {}

    def rank(self, address: str) -> int:
        """2 local network, 1 private/special, 0 public (``ValueError`` for a non-address)."""
        hit = self._rank.get(address)
        if hit is None:
            try:
                if ":" in address:
                    version, packed = 6, socket.inet_pton(socket.AF_INET6, address)
                    maybe = self._V6_MAYBE
                else:
                    version, packed = 4, socket.inet_pton(socket.AF_INET, address)
                    maybe = self._V4_MAYBE
            except OSError as exc:
                raise ValueError(f"not an IP address: {address!r}") from exc
            value = int.from_bytes(packed, "big")
            if any(v == version and value & mask == net for v, net, mask in self._nets):
                hit = 2
            elif packed[0] in maybe:
                addr = ipaddress.ip_address(packed)
                hit = 1 if addr.is_private or addr.is_multicast else 0
            else:
                hit = 0
            if len(self._rank) >= self._CACHE_MAX:
                self._rank.clear()
            self._rank[address] = hit
        return hit

    def src_is_local(self, src: str, dst: str) -> bool:
        return self.rank(src) >= self.rank(dst)


@dataclass
class SequenceStats:
    """Sequence tracking for one (exporter, version, domain).

    ``lost``: records (v5, IPFIX) or export packets (v9) missing between consecutive datagrams;
    ``gaps``: how many jumps forward; ``reordered``: datagrams older than expected;
    ``resets``: steps back beyond ``REORDER_WINDOW`` (exporter restart).
    """

    unit: str
    expected: int | None = None
    datagrams: int = 0
    lost: int = 0
    gaps: int = 0
    reordered: int = 0
    resets: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "datagrams": self.datagrams,
            "lost": self.lost,
            "gaps": self.gaps,
            "reordered": self.reordered,
            "resets": self.resets,
        }


@dataclass
class NetflowStats:
    """Counters of one decoder, for metrics and sensor-health records.

    ``datagrams`` by version (``"5"``, ``"9"``, ``"10"``); ``records`` data records decoded
    (replayed ones included); ``options_records`` options data records read; ``templates``
    learnt, ``templates_replaced`` (same key redefined), ``templates_withdrawn``,
    ``templates_refused`` (over ``max_templates_per_exporter``); ``pending_sets`` /
    ``pending_bytes`` buffered now, ``buffered_sets`` ever buffered, ``replayed_sets`` decoded
    after their template arrived; ``missing_template_sets`` / ``missing_template_bytes``
    dropped because the template never came (evicted over the limits or still waiting at
    ``finish``, or expired); ``pending_expired_sets`` of those dropped for age
    (``pending_max_age``); ``exporters_expired`` idle exporters forgotten and
    ``templates_expired`` their templates; ``malformed`` datagrams or sets by reason;
    ``refused`` datagrams by reason (too large, too many exporters); ``sequences`` by
    ``(exporter, version, domain)``.
    """

    datagrams: dict[str, int] = field(default_factory=dict)
    records: int = 0
    options_records: int = 0
    templates: int = 0
    templates_replaced: int = 0
    templates_withdrawn: int = 0
    templates_refused: int = 0
    pending_sets: int = 0
    pending_bytes: int = 0
    buffered_sets: int = 0
    replayed_sets: int = 0
    missing_template_sets: int = 0
    missing_template_bytes: int = 0
    pending_expired_sets: int = 0
    exporters_expired: int = 0
    templates_expired: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    sequences: dict[tuple[str, int, int], SequenceStats] = field(default_factory=dict)

    @property
    def sequence_lost(self) -> int:
        """Sum of ``lost`` over every exporter and domain (mixed units: see ``SequenceStats``)."""
        return sum(s.lost for s in self.sequences.values())

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def to_json(self) -> dict[str, Any]:
        """JSON-ready snapshot (ints, strings, dicts only)."""
        return {
            "datagrams": dict(sorted(self.datagrams.items())),
            "records": self.records,
            "options_records": self.options_records,
            "templates": self.templates,
            "templates_replaced": self.templates_replaced,
            "templates_withdrawn": self.templates_withdrawn,
            "templates_refused": self.templates_refused,
            "pending_sets": self.pending_sets,
            "pending_bytes": self.pending_bytes,
            "buffered_sets": self.buffered_sets,
            "replayed_sets": self.replayed_sets,
            "missing_template_sets": self.missing_template_sets,
            "missing_template_bytes": self.missing_template_bytes,
            "pending_expired_sets": self.pending_expired_sets,
            "exporters_expired": self.exporters_expired,
            "templates_expired": self.templates_expired,
            "malformed": dict(sorted(self.malformed.items())),
            "refused": dict(sorted(self.refused.items())),
            "sequences": {
                f"{exp}/v{ver}/{dom}": s.to_json()
                for (exp, ver, dom), s in sorted(self.sequences.items())
            },
        }


@dataclass
class FeedResult:
    """What one datagram produced: its records (and any buffered ones it released) and the
    problems met (``NetflowError`` reasons; the datagram's good parts are still decoded)."""

    records: list[FlowRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# -- templates -------------------------------------------------------------------------------

TemplateKey = tuple[str, int, int, int]  # exporter, version, domain, template id


@dataclass(frozen=True)
class _Field:
    element: int
    length: int
    enterprise: int = 0


class _Template:
    """A compiled (options) template: where each element of interest sits in a record.

    Fixed-length templates unpack a record with one ``struct`` call; a template with a
    variable-length field is walked field by field into the same value list.
    """

    __slots__ = (
        "fields",
        "idx",
        "is_options",
        "min_length",
        "record_length",
        "rev_idx",
        "scope_count",
        "struct",
    )

    def __init__(
        self,
        fields: list[_Field],
        *,
        is_options: bool,
        scope_count: int = 0,
        scope_types: bool = False,
    ) -> None:
        self.fields = tuple(fields)
        self.is_options = is_options
        self.scope_count = scope_count
        variable = any(f.length == VARIABLE_LENGTH for f in fields)
        self.min_length = sum(1 if f.length == VARIABLE_LENGTH else f.length for f in fields)
        self.record_length = 0 if variable else self.min_length
        self.struct: struct.Struct | None = None
        if not variable:
            codes = "".join(_INT_CODES.get(f.length, f"{f.length}s") for f in fields)
            self.struct = struct.Struct("!" + codes)
        #: element → index of its first occurrence (standard elements only)
        self.idx: dict[int, int] = {}
        #: RFC 5103 reverse elements → index
        self.rev_idx: dict[int, int] = {}
        for i, f in enumerate(fields):
            if scope_types and i < scope_count:
                continue  # NetFlow v9 scope field types (1 system, 2 interface...) are not IEs
            if f.enterprise == 0:
                self.idx.setdefault(f.element, i)
            elif f.enterprise == REVERSE_PEN:
                self.rev_idx.setdefault(f.element, i)

    def same_as(self, other: _Template) -> bool:
        return (
            self.fields == other.fields
            and self.is_options == other.is_options
            and self.scope_count == other.scope_count
        )

    def records(self, body: bytes) -> list[tuple[Any, ...]]:
        """Split a data set body into value tuples; trailing bytes shorter than a record are
        padding. Raises ``NetflowError`` for a variable-length field that overruns the set."""
        if self.struct is not None:
            size = self.record_length
            unpack = self.struct.unpack_from
            return [unpack(body, off) for off in range(0, len(body) - size + 1, size)]
        out: list[tuple[Any, ...]] = []
        off, end = 0, len(body)
        while end - off >= self.min_length:
            values: list[Any] = []
            for f in self.fields:
                n = f.length
                if n == VARIABLE_LENGTH:
                    n = body[off]
                    off += 1
                    if n == 255:
                        if off + 2 > end:
                            raise NetflowError("bad variable-length field", "length overruns set")
                        n = (body[off] << 8) | body[off + 1]
                        off += 2
                if off + n > end:
                    raise NetflowError("bad variable-length field", "value overruns set")
                chunk = body[off : off + n]
                off += n
                values.append(int.from_bytes(chunk, "big") if n in (1, 2, 4, 8) else chunk)
            out.append(tuple(values))
        return out


def _int(value: Any) -> int:
    return value if value.__class__ is int else int.from_bytes(value, "big")


def _rate_from(values: tuple[Any, ...], idx: dict[int, int]) -> int | None:
    """A 1-in-N packet sampling rate stated by a record's own elements, else ``None``."""
    i = idx.get(IE_SAMPLER_RANDOM_INTERVAL)
    if i is not None and (v := _int(values[i])) > 0:
        return v
    i = idx.get(IE_SAMPLING_INTERVAL)
    if i is not None and (v := _int(values[i])) > 0:
        return v
    i, j = idx.get(IE_SAMPLING_SIZE), idx.get(IE_SAMPLING_POPULATION)
    if i is not None and j is not None and (size := _int(values[i])) > 0:
        return max(1, _int(values[j]) // size)
    i = idx.get(IE_SAMPLING_PACKET_INTERVAL)
    if i is not None and (interval := _int(values[i])) > 0:
        j = idx.get(IE_SAMPLING_PACKET_SPACE)
        space = _int(values[j]) if j is not None else 0
        return (interval + space) // interval if space else interval
    return None


def _address(raw: Any) -> str | None:
    if raw.__class__ is int:  # a 4-byte field unpacked as an integer
        return socket.inet_ntop(socket.AF_INET, raw.to_bytes(4, "big"))
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return None


@dataclass
class _Context:
    """Header values a data set needs to be decoded (also kept with a buffered set)."""

    exporter: str
    version: int
    domain: int
    export_s: int
    uptime_ms: int  # v9 only


@dataclass
class _Pending:
    key: TemplateKey
    body: bytes
    ctx: _Context
    #: receive time (seconds, the caller's clock), ``None`` when not given
    at: float | None = None


class NetflowDecoder:
    """Stateful NetFlow v5/v9/IPFIX decoder (see the module docstring). Not thread-safe.

    ``feed(datagram, exporter)`` → ``FeedResult``; ``finish()`` at the end of an offline input
    counts what still waits for a template; ``stats`` holds every counter.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.stats = NetflowStats()
        self._templates: dict[TemplateKey, _Template] = {}
        self._template_count: dict[str, int] = {}
        #: (exporter, version, domain, sampler id or None) → rate
        self._samplers: dict[tuple[str, int, int, int | None], int] = {}
        #: (exporter, version, domain) → exporter boot time, ms since the epoch (IE 160)
        self._boot_ms: dict[tuple[str, int, int], int] = {}
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._pending_by_key: dict[TemplateKey, deque[int]] = {}
        self._pending_seq = 0
        #: exporter → last receive time (``None``: fed without a time)
        self._exporters: dict[str, float | None] = {}
        self._now: float | None = None
        self._next_sweep = float("-inf")

    # -- public API ---------------------------------------------------------------------------

    def feed(self, data: bytes, exporter: str, now: float | None = None) -> FeedResult:
        """Decode one export datagram received from ``exporter`` (its IP address as text) at
        ``now`` (seconds, any monotonic clock; ``None``: no expiry, see the module docstring)."""
        result = FeedResult()
        stats = self.stats
        if now is not None:
            self.expire(now)
        if len(data) > self.limits.max_datagram:
            self._refuse("too large", result)
            return result
        if exporter not in self._exporters and len(self._exporters) >= self.limits.max_exporters:
            self._refuse("too many exporters", result)
            return result
        self._exporters[exporter] = now
        if len(data) < 2:
            self._malformed(NetflowError("truncated header"), result)
            return result
        version = (data[0] << 8) | data[1]
        key = str(version)
        try:
            if version == 5:
                stats.datagrams[key] = stats.datagrams.get(key, 0) + 1
                self._v5(data, exporter, result)
            elif version == 9:
                stats.datagrams[key] = stats.datagrams.get(key, 0) + 1
                self._v9(data, exporter, result)
            elif version == 10:
                stats.datagrams[key] = stats.datagrams.get(key, 0) + 1
                self._ipfix(data, exporter, result)
            else:
                raise NetflowError("unknown version", str(version))
        except NetflowError as exc:
            self._malformed(exc, result)
        return result

    def finish(self) -> int:
        """Drop every buffered set still waiting for its template (end of an offline input);
        returns how many sets that was (counted in ``missing_template_*``)."""
        dropped = len(self._pending)
        for seq in list(self._pending):
            self._drop_pending(seq)
        return dropped

    def expire(self, now: float) -> int:
        """Age out state at ``now`` (seconds, the clock given to ``feed``): buffered sets older
        than ``pending_max_age``, then exporters silent for ``exporter_idle_timeout`` (swept at
        most every 1/16 of it). Returns the buffered sets dropped (all counted in ``stats``)."""
        self._now = now
        limits, dropped = self.limits, 0
        oldest = now - limits.pending_max_age
        while self._pending:
            seq, item = next(iter(self._pending.items()))
            if item.at is None or item.at > oldest:
                break
            self._drop_pending(seq)
            self.stats.pending_expired_sets += 1
            dropped += 1
        if now < self._next_sweep:
            return dropped
        self._next_sweep = now + limits.exporter_idle_timeout / 16
        idle_before = now - limits.exporter_idle_timeout
        for exporter in [
            e for e, at in self._exporters.items() if at is not None and at <= idle_before
        ]:
            dropped += self._forget(exporter)
        return dropped

    def _forget(self, exporter: str) -> int:
        """Drop every piece of state of ``exporter``; returns its buffered sets dropped."""
        del self._exporters[exporter]
        self.stats.exporters_expired += 1
        templates = [k for k in self._templates if k[0] == exporter]
        _log.warning(
            "netflow: exporter %s sent nothing for %.0f s: forgotten with its %d templates",
            exporter,
            self.limits.exporter_idle_timeout,
            len(templates),
        )
        for key in templates:
            del self._templates[key]
        self.stats.templates_expired += len(templates)
        self._template_count.pop(exporter, None)
        for skey in [k for k in self._samplers if k[0] == exporter]:
            del self._samplers[skey]
        for bkey in [k for k in self._boot_ms if k[0] == exporter]:
            del self._boot_ms[bkey]
        for (exp, _v, _d), seqs in self.stats.sequences.items():
            if exp == exporter:
                seqs.expected = None  # a returning exporter resynchronises; counts are kept
        waiting = [seq for seq, item in self._pending.items() if item.key[0] == exporter]
        for seq in waiting:
            self._drop_pending(seq)
        return len(waiting)

    def expire_pending(self, keep: int) -> int:
        """Drop the oldest buffered sets until at most ``keep`` remain; returns how many."""
        dropped = 0
        while len(self._pending) > keep:
            self._drop_pending(next(iter(self._pending)))
            dropped += 1
        return dropped

    def sampling_rate(self, exporter: str, version: int, domain: int, sampler: int | None) -> int:
        """The rate options data set for ``sampler`` (``None``: the exporter-wide rate), or 1."""
        return self._samplers.get((exporter, version, domain, sampler), 1)

    # -- bookkeeping --------------------------------------------------------------------------

    def _refuse(self, reason: str, result: FeedResult) -> None:
        self.stats.refused[reason] = self.stats.refused.get(reason, 0) + 1
        result.problems.append(reason)

    def _malformed(self, exc: NetflowError, result: FeedResult) -> None:
        self.stats.malformed[exc.reason] = self.stats.malformed.get(exc.reason, 0) + 1
        result.problems.append(str(exc))

    def _sequence(self, exporter: str, version: int, domain: int, seq: int, unit: str) -> None:
        key = (exporter, version, domain)
        s = self.stats.sequences.get(key)
        if s is None:
            if len(self.stats.sequences) >= self.limits.max_exporters * 16:
                return
            s = self.stats.sequences[key] = SequenceStats(unit)
        s.datagrams += 1
        if s.expected is None:
            return
        delta = (seq - s.expected) % _U32
        if delta == 0:
            return
        if delta < _U32 // 2:
            s.lost += delta
            s.gaps += 1
        elif _U32 - delta <= REORDER_WINDOW:
            s.reordered += 1
        else:
            s.resets += 1

    def _advance(
        self, exporter: str, version: int, domain: int, seq: int, step: int | None
    ) -> None:
        """Set the next expected sequence number (``step`` ``None``: unknown, resync)."""
        s = self.stats.sequences.get((exporter, version, domain))
        if s is None:
            return
        if step is None:
            s.expected = None
            return
        nxt = (seq + step) % _U32
        if s.expected is not None and 0 < (s.expected - nxt) % _U32 <= REORDER_WINDOW:
            return  # a late datagram: the newer position stands
        s.expected = nxt

    # -- NetFlow v5 ---------------------------------------------------------------------------

    def _v5(self, data: bytes, exporter: str, result: FeedResult) -> None:
        if len(data) < _V5_HEADER.size:
            raise NetflowError("truncated header", "NetFlow v5 header is 24 bytes")
        _v, count, uptime, secs, nsecs, seq, etype, eid, sampling = _V5_HEADER.unpack_from(data)
        if not 1 <= count <= 30:
            raise NetflowError("bad record count", f"NetFlow v5 count {count} (1..30)")
        if len(data) < _V5_HEADER.size + count * _V5_RECORD.size:
            raise NetflowError(
                "truncated records", f"{count} records need more than {len(data)} bytes"
            )
        domain = (etype << 8) | eid
        self._sequence(exporter, 5, domain, seq, "records")
        self._advance(exporter, 5, domain, seq, count)
        rate = sampling & 0x3FFF or 1
        export_ms = secs * 1000 + nsecs // 1_000_000
        out = result.records
        off = _V5_HEADER.size
        for _ in range(count):
            (src, dst, _nh, in_if, out_if, pkts, octets, first, last, sport, dport, flags, proto,
             tos, _sas, _das, _sm, _dm) = _V5_RECORD.unpack_from(data, off)  # fmt: skip
            off += _V5_RECORD.size
            if proto in (1, 58):
                sport = dport = 0
            first_ms = export_ms - ((uptime - first) % _U32)
            last_ms = export_ms - ((uptime - last) % _U32)
            out.append(
                FlowRecord(
                    exporter,
                    5,
                    domain,
                    0,
                    proto,
                    socket.inet_ntop(socket.AF_INET, src),
                    socket.inet_ntop(socket.AF_INET, dst),
                    sport,
                    dport,
                    pkts,
                    octets,
                    first_ms * 1_000_000,
                    last_ms * 1_000_000,
                    rate,
                    0,
                    0,
                    tos,
                    flags,
                    in_if,
                    out_if,
                    None,
                )
            )
        self.stats.records += count

    # -- NetFlow v9 ---------------------------------------------------------------------------

    def _v9(self, data: bytes, exporter: str, result: FeedResult) -> None:
        if len(data) < _V9_HEADER.size:
            raise NetflowError("truncated header", "NetFlow v9 header is 20 bytes")
        _v, _count, uptime, secs, seq, source_id = _V9_HEADER.unpack_from(data)
        ctx = _Context(exporter, 9, source_id, secs, uptime)
        self._sequence(exporter, 9, source_id, seq, "export packets")
        self._advance(exporter, 9, source_id, seq, 1)
        self._sets(data, _V9_HEADER.size, len(data), ctx, result)

    # -- IPFIX ----------------------------------------------------------------------------------

    def _ipfix(self, data: bytes, exporter: str, result: FeedResult) -> None:
        if len(data) < _IPFIX_HEADER.size:
            raise NetflowError("truncated header", "IPFIX message header is 16 bytes")
        _v, length, export_s, seq, domain = _IPFIX_HEADER.unpack_from(data)
        if length < _IPFIX_HEADER.size or length > len(data):
            raise NetflowError("bad message length", f"header says {length}, got {len(data)}")
        ctx = _Context(exporter, 10, domain, export_s, 0)
        self._sequence(exporter, 10, domain, seq, "records")
        before = self.stats.records + self.stats.options_records
        unknown = self._sets(data, _IPFIX_HEADER.size, length, ctx, result, replay=False)
        decoded = self.stats.records + self.stats.options_records - before
        self._advance(exporter, 10, domain, seq, None if unknown else decoded)
        self._release_ready(ctx, result)

    # -- sets (v9 FlowSets and IPFIX Sets share the layout) --------------------------------------

    def _sets(
        self,
        data: bytes,
        off: int,
        end: int,
        ctx: _Context,
        result: FeedResult,
        *,
        replay: bool = True,
    ) -> bool:
        """Walk the sets of one datagram; returns whether a data set waited for its template.

        With ``replay`` (v9) buffered sets are released as soon as their template is read;
        IPFIX releases them after the whole message so its sequence accounting sees only the
        message's own records.
        """
        unknown = False
        v9 = ctx.version == 9
        while off + 4 <= end:
            set_id, length = _SET_HEADER.unpack_from(data, off)
            if length < 4 or off + length > end:
                raise NetflowError("bad set length", f"set {set_id} length {length} at {off}")
            body = data[off + 4 : off + length]
            off += length
            try:  # the set's framing is sound: damage inside it spoils this set only
                if set_id == (0 if v9 else 2):
                    self._templates_set(body, ctx, options=False)
                elif set_id == (1 if v9 else 3):
                    self._templates_set(body, ctx, options=True)
                elif set_id >= 256:
                    key = (ctx.exporter, ctx.version, ctx.domain, set_id)
                    tpl = self._templates.get(key)
                    if tpl is None:
                        self._buffer(key, body, ctx)
                        unknown = True
                    else:
                        self._data(tpl, key, body, ctx, result.records)
                else:
                    raise NetflowError("reserved set id", str(set_id))
            except NetflowError as exc:
                self._malformed(exc, result)
            if replay:
                self._release_ready(ctx, result)
        if not v9 and off != end:
            raise NetflowError("bad message length", f"{end - off} bytes after the last set")
        return unknown

    def _templates_set(self, body: bytes, ctx: _Context, *, options: bool) -> None:
        off, end = 0, len(body)
        v9 = ctx.version == 9
        while end - off >= 4:
            if v9 and options:
                if end - off < 6:
                    break
                tid, scope_len, opt_len = _HHH.unpack_from(body, off)
                off += 6
                if scope_len % 4 or opt_len % 4:
                    raise NetflowError("bad options template", f"template {tid}")
                n_scope, n_opt = scope_len // 4, opt_len // 4
                if off + (n_scope + n_opt) * 4 > end:
                    raise NetflowError("bad options template", f"template {tid} overruns set")
                fields = [
                    _Field(*_HH.unpack_from(body, off + 4 * i)) for i in range(n_scope + n_opt)
                ]
                off += (n_scope + n_opt) * 4
                if tid < 256:
                    raise NetflowError("bad template id", str(tid))
                self._learn(
                    ctx,
                    tid,
                    _Template(fields, is_options=True, scope_count=n_scope, scope_types=True),
                )
                continue
            if options:
                if end - off < 6:
                    break
                tid, count, scope_count = _HHH.unpack_from(body, off)
                off += 6
            else:
                tid, count = _HH.unpack_from(body, off)
                off += 4
                scope_count = 0
            if tid == 0:
                break  # padding
            if count == 0 and not v9:
                self._withdraw(ctx, tid, options=options)
                continue
            fields = []
            for _ in range(count):
                if off + 4 > end:
                    raise NetflowError("bad template", f"template {tid} overruns set")
                element, length = _HH.unpack_from(body, off)
                off += 4
                enterprise = 0
                if element & 0x8000 and not v9:
                    if off + 4 > end:
                        raise NetflowError("bad template", f"template {tid} overruns set")
                    enterprise = _I.unpack_from(body, off)[0]
                    element &= 0x7FFF
                    off += 4
                if length == VARIABLE_LENGTH and v9:
                    raise NetflowError("bad template", f"template {tid}: variable length in v9")
                fields.append(_Field(element, length, enterprise))
            if tid < 256:
                raise NetflowError("bad template id", str(tid))
            if options and not 0 < scope_count <= count:
                raise NetflowError("bad options template", f"template {tid} scope count")
            self._learn(ctx, tid, _Template(fields, is_options=options, scope_count=scope_count))

    def _learn(self, ctx: _Context, tid: int, tpl: _Template) -> None:
        if tpl.min_length == 0:
            raise NetflowError("bad template", f"template {tid} has zero-length records")
        key = (ctx.exporter, ctx.version, ctx.domain, tid)
        old = self._templates.get(key)
        if old is None:
            count = self._template_count.get(ctx.exporter, 0)
            if count >= self.limits.max_templates_per_exporter:
                self.stats.templates_refused += 1
                return
            self._template_count[ctx.exporter] = count + 1
            self.stats.templates += 1
        elif not old.same_as(tpl):
            self.stats.templates_replaced += 1
        self._templates[key] = tpl

    def _withdraw(self, ctx: _Context, tid: int, *, options: bool) -> None:
        if tid in (2, 3):  # all (options) templates of this domain
            keys = [
                k
                for k, t in self._templates.items()
                if k[:3] == (ctx.exporter, ctx.version, ctx.domain) and t.is_options == options
            ]
        else:
            keys = [(ctx.exporter, ctx.version, ctx.domain, tid)]
        for key in keys:
            if self._templates.pop(key, None) is not None:
                self._template_count[ctx.exporter] -= 1
                self.stats.templates_withdrawn += 1

    # -- buffering ---------------------------------------------------------------------------

    def _buffer(self, key: TemplateKey, body: bytes, ctx: _Context) -> None:
        stats, limits = self.stats, self.limits
        seq = self._pending_seq
        self._pending_seq += 1
        self._pending[seq] = _Pending(key, body, ctx, self._exporters.get(ctx.exporter))
        self._pending_by_key.setdefault(key, deque()).append(seq)
        stats.buffered_sets += 1
        stats.pending_sets += 1
        stats.pending_bytes += len(body)
        while self._pending and (
            stats.pending_sets > limits.max_pending_sets
            or stats.pending_bytes > limits.max_pending_bytes
        ):
            self._drop_pending(next(iter(self._pending)))

    def _take_pending(self, seq: int) -> _Pending:
        item = self._pending.pop(seq)
        queue = self._pending_by_key[item.key]
        queue.remove(seq)
        if not queue:
            del self._pending_by_key[item.key]
        self.stats.pending_sets -= 1
        self.stats.pending_bytes -= len(item.body)
        return item

    def _drop_pending(self, seq: int) -> None:
        item = self._take_pending(seq)
        self.stats.missing_template_sets += 1
        self.stats.missing_template_bytes += len(item.body)

    def _release_ready(self, ctx: _Context, result: FeedResult) -> None:
        """Decode the buffered sets of ``ctx``'s exporter whose template is now known."""
        if not self._pending_by_key:
            return
        prefix = (ctx.exporter, ctx.version, ctx.domain)
        for key in [k for k in self._pending_by_key if k[:3] == prefix and k in self._templates]:
            for seq in list(self._pending_by_key.get(key, ())):
                item = self._take_pending(seq)
                self.stats.replayed_sets += 1
                try:
                    self._data(self._templates[key], key, item.body, item.ctx, result.records)
                except NetflowError as exc:
                    self._malformed(exc, result)

    # -- data ---------------------------------------------------------------------------------

    def _data(
        self,
        tpl: _Template,
        key: TemplateKey,
        body: bytes,
        ctx: _Context,
        out: list[FlowRecord],
    ) -> None:
        rows = tpl.records(body)
        if tpl.is_options:
            self.stats.options_records += len(rows)
            for values in rows:
                self._options(tpl, values, ctx)
            return
        self.stats.records += len(rows)
        idx = tpl.idx
        ridx = tpl.rev_idx
        exporter, version, domain = ctx.exporter, ctx.version, ctx.domain
        tid = key[3]
        i_src4, i_dst4 = idx.get(IE_SRC_V4), idx.get(IE_DST_V4)
        i_src6, i_dst6 = idx.get(IE_SRC_V6), idx.get(IE_DST_V6)
        i_proto = idx.get(IE_PROTOCOL)
        i_sport, i_dport = idx.get(IE_SRC_PORT), idx.get(IE_DST_PORT)
        i_bytes = _first(idx, IE_OCTETS, IE_OCTETS_TOTAL, IE_INITIATOR_OCTETS)
        i_pkts = _first(idx, IE_PACKETS, IE_PACKETS_TOTAL, IE_INITIATOR_PACKETS)
        i_rbytes = ridx.get(IE_OCTETS, ridx.get(IE_OCTETS_TOTAL, idx.get(IE_RESPONDER_OCTETS)))
        i_rpkts = ridx.get(IE_PACKETS, ridx.get(IE_PACKETS_TOTAL, idx.get(IE_RESPONDER_PACKETS)))
        i_tos, i_flags = idx.get(IE_TOS), idx.get(IE_TCP_FLAGS)
        i_in, i_out, i_dir = idx.get(IE_IN_IF), idx.get(IE_OUT_IF), idx.get(IE_DIRECTION)
        i_sampler = _first(idx, IE_SAMPLER_ID, IE_SELECTOR_ID)
        own_rate = any(
            e in idx
            for e in (
                IE_SAMPLING_INTERVAL,
                IE_SAMPLER_RANDOM_INTERVAL,
                IE_SAMPLING_PACKET_INTERVAL,
                IE_SAMPLING_POPULATION,
            )
        )
        samplers = self._samplers
        default_rate = samplers.get((exporter, version, domain, None), 1)
        timer = self._timer(tpl, ctx)
        for values in rows:
            src = dst = None
            if i_src4 is not None and i_dst4 is not None:
                src, dst = _address(values[i_src4]), _address(values[i_dst4])
            if (src is None or src == "0.0.0.0") and i_src6 is not None and i_dst6 is not None:  # noqa: S104
                src, dst = _address(values[i_src6]), _address(values[i_dst6])
            if src is None or dst is None:
                self.stats.malformed["record without addresses"] = (
                    self.stats.malformed.get("record without addresses", 0) + 1
                )
                continue
            proto = _int(values[i_proto]) if i_proto is not None else 0
            if proto in (1, 58) or i_sport is None or i_dport is None:
                sport = dport = 0
            else:
                sport, dport = _int(values[i_sport]), _int(values[i_dport])
            rate = None
            if own_rate:
                rate = _rate_from(values, idx)
            if rate is None and i_sampler is not None:
                rate = samplers.get((exporter, version, domain, _int(values[i_sampler])))
            first_ns, last_ns = timer(values)
            out.append(
                FlowRecord(
                    exporter,
                    version,
                    domain,
                    tid,
                    proto,
                    src,
                    dst,
                    sport,
                    dport,
                    _int(values[i_pkts]) if i_pkts is not None else 0,
                    _int(values[i_bytes]) if i_bytes is not None else 0,
                    first_ns,
                    last_ns,
                    rate or default_rate,
                    _int(values[i_rpkts]) if i_rpkts is not None else 0,
                    _int(values[i_rbytes]) if i_rbytes is not None else 0,
                    _int(values[i_tos]) if i_tos is not None else 0,
                    _int(values[i_flags]) if i_flags is not None else 0,
                    _int(values[i_in]) if i_in is not None else 0,
                    _int(values[i_out]) if i_out is not None else 0,
                    _int(values[i_dir]) if i_dir is not None else None,
                )
            )

    def _options(self, tpl: _Template, values: tuple[Any, ...], ctx: _Context) -> None:
        """Remember what options data says about sampling and the exporter's boot time."""
        idx = tpl.idx
        dom = (ctx.exporter, ctx.version, ctx.domain)
        i = idx.get(IE_SYSTEM_INIT_MS)
        if i is not None:
            self._boot_ms[dom] = _int(values[i])
        rate = _rate_from(values, idx)
        if rate is None:
            return
        i = _first(idx, IE_SAMPLER_ID, IE_SELECTOR_ID)
        sampler = _int(values[i]) if i is not None else None
        if len(self._samplers) < self.limits.max_templates_per_exporter * 4:
            self._samplers[(*dom, sampler)] = rate

    def _timer(self, tpl: _Template, ctx: _Context) -> Any:
        """A function ``values → (first_ns, last_ns)`` for this template's time elements."""
        idx = tpl.idx
        export_ns = ctx.export_s * 1_000_000_000
        pairs = (
            (IE_START_MS, IE_END_MS, 1_000_000),
            (IE_START_S, IE_END_S, 1_000_000_000),
        )
        for start_e, end_e, scale in pairs:
            i, j = idx.get(start_e), idx.get(end_e)
            if i is not None or j is not None:

                def scaled(values: tuple[Any, ...], i=i, j=j, scale=scale) -> tuple[int, int]:  # type: ignore[no-untyped-def]
                    a = _int(values[i]) * scale if i is not None else None
                    b = _int(values[j]) * scale if j is not None else None
                    return (a if a is not None else b or export_ns), (
                        b if b is not None else a or export_ns
                    )

                return scaled
        i, j = idx.get(IE_START_US, idx.get(IE_START_NS)), idx.get(IE_END_US, idx.get(IE_END_NS))
        if i is not None or j is not None:

            def ntp(values: tuple[Any, ...]) -> tuple[int, int]:
                a = _ntp_ns(values[i]) if i is not None else None
                b = _ntp_ns(values[j]) if j is not None else None
                return (a if a is not None else b or export_ns), (
                    b if b is not None else a or export_ns
                )

            return ntp
        i, j = idx.get(IE_START_DELTA_US), idx.get(IE_END_DELTA_US)
        if i is not None or j is not None:

            def delta(values: tuple[Any, ...]) -> tuple[int, int]:
                a = export_ns - _int(values[i]) * 1000 if i is not None else export_ns
                b = export_ns - _int(values[j]) * 1000 if j is not None else export_ns
                return a, b

            return delta
        i, j = idx.get(IE_FIRST_SWITCHED), idx.get(IE_LAST_SWITCHED)
        if i is not None or j is not None:
            boot = self._boot_ms.get((ctx.exporter, ctx.version, ctx.domain))
            if ctx.version == 9:
                export_ms, uptime = ctx.export_s * 1000, ctx.uptime_ms

                def switched(values: tuple[Any, ...]) -> tuple[int, int]:
                    a = (
                        export_ms - _signed((uptime - _int(values[i])) % _U32)
                        if i is not None
                        else export_ms
                    )
                    b = (
                        export_ms - _signed((uptime - _int(values[j])) % _U32)
                        if j is not None
                        else export_ms
                    )
                    return a * 1_000_000, b * 1_000_000

                return switched
            if boot is not None:

                def since_boot(values: tuple[Any, ...]) -> tuple[int, int]:
                    a = (boot + _int(values[i])) * 1_000_000 if i is not None else export_ns
                    b = (boot + _int(values[j])) * 1_000_000 if j is not None else export_ns
                    return a, b

                return since_boot

        def export_time(values: tuple[Any, ...]) -> tuple[int, int]:
            return export_ns, export_ns

        return export_time


def _signed(value: int) -> int:
    return value - _U32 if value >= _U32 // 2 else value


def _ntp_ns(raw: Any) -> int:
    """RFC 7011 dateTimeMicroseconds/Nanoseconds (NTP 64-bit: seconds since 1900, fraction)."""
    value = _int(raw)
    seconds, fraction = value >> 32, value & 0xFFFFFFFF
    return (seconds - _NTP_OFFSET) * 1_000_000_000 + (fraction * 1_000_000_000 >> 32)


def _first(idx: dict[int, int], *elements: int) -> int | None:
    for e in elements:
        i = idx.get(e)
        if i is not None:
            return i
    return None
