"""DNS correlation: names from the DNS answers seen in a capture, attached to later flows.

A report should say which *host* a flow went to, not only its address. Sentinel sees the
registry host's DNS traffic in the same capture as its connections, so every DNS response
(UDP or TCP, source port 53; mDNS and LLMNR are not used) is parsed with dnspython and its
address records are remembered; a flow whose remote address was given in an answer *before
the flow started* gets that name (``Flow.remote_names``). Names are evidence for the reader,
never an input to a verdict.

What is taken from a response (RFC 1035 §4, RFC 2181 §10.1): a message with QR set, opcode
QUERY and exactly one question. The name shown is the one the client asked for (the
question); the CNAME chain from it (at most ``MAX_CHAIN`` links, loops cut) is kept, and the
A/AAAA records owned by the end of the chain are the addresses. Records that are not on the
chain (unsolicited answers, the authority and additional sections) are ignored. The TTL of an
address is the smallest TTL along its chain.

How long an answer is held (``DnsOptions``): ``max(TTL, min_hold_s)``, capped at
``max_hold_s``. The TTL alone is too short: stub caches (nscd's ``positive-time-to-live`` for
hosts defaults to 3600 s, JVMs, connection pools) reuse an address long after the TTL the
wire showed, and CDNs answer with TTLs of seconds, so a flow very often starts after the TTL
of the answer that produced it expired. The default minimum hold is therefore one hour; a
longer hold can only add a stale name, which the record shows with its answer time and TTL so
the reader can weigh it. The cap (one week) is BIND's default ``max-cache-ttl``.

Matching: the answers for the flow's remote address whose hold covers the flow's first packet
(``answered_at <= first_seen <= answered_at + hold``); if some of them went to the flow's local
address (the client that asked), only those; otherwise any client's (a local caching
resolver, NAT, a capture on a router). Newest answer first, one entry per name, at most
``max_names``.

Bounds: at most ``max_entries`` (address, answer) entries in all — the least recently
answered address is dropped first — and ``max_names`` per address (the oldest answer is
dropped). DNS over TCP is read only when a segment holds whole length-prefixed messages
(RFC 1035 §4.2.2; no stream reassembly). Counters (``DnsCorrelator.counts``, merged into
``ReadStats.dns``): ``responses`` (usable responses parsed), ``addresses`` (address records
remembered), ``malformed`` (shorter than a DNS header, or a message dnspython rejects —
trailing bytes included), ``truncated`` (cut by the capture's snap length or an IP fragment,
or a TCP segment without a whole message), ``ignored`` (a query, another opcode, not exactly
one question: checked on the header before dnspython is called), ``evicted`` (entries dropped
by the bounds). Nothing here raises on input: bad bytes are counted. dnspython is imported on
the first response that passes the header checks (it costs ~0.1 s to import).
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sentinel.flows.decode import Decoder, Summary
from sentinel.records import Flow, RemoteName

#: the DNS port (RFC 1035 §4.2); responses come *from* it
DNS_PORT = 53
#: CNAME links followed from the question at most
MAX_CHAIN = 8
#: address records taken from one response at most
MAX_ADDRESSES_PER_RESPONSE = 64
#: a DNS message starts with a 12-byte header (RFC 1035 §4.1.1)
HEADER_BYTES = 12

if TYPE_CHECKING:
    import dns.name

_H = struct.Struct("!H").unpack_from
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class DnsOptions:
    """Bounds and hold times of the name map (module docstring).

    ``min_hold_s``/``max_hold_s`` in seconds; ``max_entries`` (address, answer) entries in
    all; ``max_names`` answers kept per address and names attached per flow. Raises
    ``ValueError`` for a negative hold, a cap below the minimum, or a bound below 1.
    """

    min_hold_s: int = 3600
    max_hold_s: int = 604_800
    max_entries: int = 100_000
    max_names: int = 8

    def __post_init__(self) -> None:
        if self.min_hold_s < 0 or self.max_hold_s < self.min_hold_s:
            raise ValueError("DNS hold times: need 0 <= min_hold_s <= max_hold_s")
        if self.max_entries < 1 or self.max_names < 1:
            raise ValueError("DNS bounds: max_entries and max_names must be at least 1")


def dns_messages(proto: int, buf: bytes, l4: int, ip_end: int) -> tuple[list[bytes], str | None]:
    """The DNS messages in one UDP (17) or TCP (6) segment whose header starts at ``l4``.

    ``ip_end`` is where the IP payload ends in ``buf`` (the IP length, bounded by the captured
    bytes). Returns the messages and a problem (``"truncated"``, ``"malformed"``) or ``None``.
    UDP: the UDP length field bounds the message (RFC 768). TCP: the segment's payload must be
    whole 2-byte length-prefixed messages (RFC 1035 §4.2.2, RFC 7766); an empty payload (a
    handshake or ACK) gives no message and no problem.
    """
    if proto == 17:
        if l4 + 8 > ip_end:
            return [], "truncated"
        length = _H(buf, l4 + 4)[0]
        if length < 8:
            return [], "malformed"
        if l4 + length > ip_end:
            return [], "truncated"
        return [bytes(buf[l4 + 8 : l4 + length])], None
    if l4 + 13 > ip_end:
        return [], "truncated"
    pos = l4 + ((buf[l4 + 12] >> 4) << 2)
    out: list[bytes] = []
    while pos < ip_end:
        if pos + 2 > ip_end:
            return out, "truncated"
        size = _H(buf, pos)[0]
        if size < HEADER_BYTES:  # not a DNS message: do not walk the rest 2 bytes at a time
            return out, "malformed"
        if pos + 2 + size > ip_end:
            return out, "truncated"
        out.append(bytes(buf[pos + 2 : pos + 2 + size]))
        pos += 2 + size
    return out, None


def _text(name: dns.name.Name) -> str:
    """Presentation form, lower case (RFC 4343: names compare case-insensitively), no final
    dot; non-printable bytes escaped as ``\\DDD`` by dnspython."""
    return name.to_text(omit_final_dot=True).lower()


@dataclass(frozen=True, slots=True)
class Answer:
    """One usable answer: ``address`` (canonical text) for ``name`` via ``cnames``; ``ttl``
    seconds (the smallest along the chain)."""

    address: str
    name: str
    cnames: tuple[str, ...]
    ttl: int


def parse_response(wire: bytes) -> list[Answer] | None:
    """Address answers of one DNS message (module docstring); ``None`` when the message is
    not a usable response (a query, another opcode, not exactly one question).

    Raises dnspython's errors (``dns.exception.DNSException`` and others) for bytes that are
    not a DNS message; ``DnsCorrelator.observe`` counts them.
    """
    import dns.flags
    import dns.message
    import dns.opcode
    from dns.rdataclass import IN
    from dns.rdatatype import AAAA, CNAME, A

    msg = dns.message.from_wire(wire)
    if not msg.flags & dns.flags.QR or msg.opcode() != dns.opcode.QUERY:
        return None
    if len(msg.question) != 1:
        return None
    qname = msg.question[0].name
    name = qname
    seen = {qname}
    cnames: list[str] = []
    ttl: int | None = None
    for _ in range(MAX_CHAIN):
        link = msg.get_rrset(msg.answer, name, IN, CNAME)
        if link is None or not len(link):
            break
        target = next(iter(link)).target
        ttl = link.ttl if ttl is None else min(ttl, link.ttl)
        if target in seen:
            break
        seen.add(target)
        cnames.append(_text(target))
        name = target
    shown, chain = _text(qname), tuple(cnames)
    out: list[Answer] = []
    for rdtype in (A, AAAA):
        rrset = msg.get_rrset(msg.answer, name, IN, rdtype)
        if rrset is None:
            continue
        rr_ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
        for rdata in rrset:
            if len(out) >= MAX_ADDRESSES_PER_RESPONSE:
                break
            address = str(ipaddress.ip_address(rdata.address))
            out.append(Answer(address, shown, chain, rr_ttl))
    return out


def _us(when: datetime) -> int:
    return (when - _EPOCH) // _US


@dataclass(slots=True)
class _Entry:
    """One remembered answer; ``answered_us``/``expires_us`` UTC µs."""

    answered_us: int
    expires_us: int
    client: str
    resolver: str
    name: str
    cnames: tuple[str, ...]
    ttl: int


class DnsCorrelator:
    """The bounded, time-keyed address → names map (module docstring). Not thread-safe: the
    owner serializes calls (``LiveCapture`` holds its lock)."""

    __slots__ = ("_map", "_size", "counts", "options")

    def __init__(self, options: DnsOptions | None = None) -> None:
        self.options = options or DnsOptions()
        # answered address → its answers, least recently answered address first
        self._map: OrderedDict[str, list[_Entry]] = OrderedDict()
        self._size = 0
        #: counters by kind (module docstring); only kinds that occurred
        self.counts: dict[str, int] = {}

    def __len__(self) -> int:
        """(address, answer) entries held."""
        return self._size

    def _count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def observe(
        self, ts_ns: int, proto: int, src: bytes, dst: bytes, buf: bytes, l4: int, ip_end: int
    ) -> None:
        """One segment from port 53 at ``ts_ns`` (UTC ns): ``src`` answered ``dst`` (packed
        addresses); the segment's L4 header is at ``buf[l4:]``, the IP payload ends at
        ``ip_end``. Never raises on bad input: it is counted."""
        messages, problem = dns_messages(proto, buf, l4, ip_end)
        if problem is not None:
            self._count(problem)
        if not messages:
            return
        client = resolver = ""
        for wire in messages:
            # header checks before dnspython (most traffic from port 53 that is not a usable
            # answer stops here, cheaply): QR set, opcode QUERY, one question (RFC 1035 §4.1.1)
            if len(wire) < HEADER_BYTES:
                self._count("malformed")
                continue
            if wire[2] & 0xF8 != 0x80 or wire[4] or wire[5] != 1:
                self._count("ignored")
                continue
            if not client:
                client = str(ipaddress.ip_address(dst))
                resolver = str(ipaddress.ip_address(src))
            try:
                answers = parse_response(wire)
            # dnspython raises DNSException subclasses, and for some hostile rdata ValueError,
            # IndexError or others: every one of them means "not a DNS message we can read",
            # which is counted, never allowed to stop a capture
            except Exception:
                self._count("malformed")
                continue
            if answers is None:
                self._count("ignored")
                continue
            self._count("responses")
            for answer in answers:
                self._remember(ts_ns // 1000, client, resolver, answer)

    def observe_at(
        self,
        ts_ns: int,
        proto: int,
        src: bytes,
        dst: bytes,
        at: tuple[bytes, int, int] | None,
    ) -> None:
        """``observe`` with ``at`` = ``(buffer, L4 offset, IP payload end)`` as
        ``Decoder.take_dns`` gives it; ``None`` (the segment is not at hand: an IP fragment)
        is counted as ``truncated``."""
        if at is None:
            self._count("truncated")
        else:
            self.observe(ts_ns, proto, src, dst, *at)

    def _remember(self, ts_us: int, client: str, resolver: str, a: Answer) -> None:
        opts = self.options
        hold = min(max(a.ttl, opts.min_hold_s), opts.max_hold_s)
        expires = ts_us + hold * 1_000_000
        entries = self._map.get(a.address)
        self._count("addresses")
        if entries is None:
            entries = self._map[a.address] = []
        else:
            self._map.move_to_end(a.address)
            for e in entries:
                # the same answer again while the previous one still holds: one longer run
                if (
                    e.name == a.name
                    and e.client == client
                    and e.cnames == a.cnames
                    and e.answered_us <= ts_us <= e.expires_us
                ):
                    e.expires_us = max(e.expires_us, expires)
                    e.resolver, e.ttl = resolver, a.ttl
                    return
            if len(entries) >= opts.max_names:
                entries.pop(0)
                self._size -= 1
                self._count("evicted")
        entries.append(_Entry(ts_us, expires, client, resolver, a.name, a.cnames, a.ttl))
        self._size += 1
        while self._size > opts.max_entries:
            _address, dropped = self._map.popitem(last=False)
            self._size -= len(dropped)
            self._count("evicted", len(dropped))

    def names_for(self, remote: str, local: str, start_us: int) -> tuple[RemoteName, ...]:
        """Names for a flow to ``remote`` from ``local`` whose first packet was at
        ``start_us`` (UTC µs), newest answer first (module docstring)."""
        entries = self._map.get(remote)
        if not entries:
            return ()
        live = [e for e in entries if e.answered_us <= start_us <= e.expires_us]
        if not live:
            return ()
        chosen = [e for e in live if e.client == local] or live
        chosen.sort(key=lambda e: (-e.answered_us, e.name, e.client, e.resolver))
        out: list[RemoteName] = []
        shown: set[str] = set()
        for e in chosen:
            if e.name in shown:
                continue
            shown.add(e.name)
            out.append(
                RemoteName(
                    name=e.name,
                    cnames=e.cnames,
                    answered_at=_EPOCH + timedelta(microseconds=e.answered_us),
                    ttl=e.ttl,
                    client=e.client,
                    resolver=e.resolver,
                )
            )
            if len(out) >= self.options.max_names:
                break
        return tuple(out)

    def attach(self, flows: Iterable[Flow]) -> list[Flow]:
        """``flows`` with ``remote_names`` set where answers match (same order, same flows)."""
        flows = list(flows)
        if not self._map:
            return flows
        out: list[Flow] = []
        for f in flows:
            names: tuple[RemoteName, ...] = ()
            if f.remote_ip in self._map:
                names = self.names_for(f.remote_ip, f.local_ip, _us(f.first_seen))
            out.append(replace(f, remote_names=names) if names else f)
        return out

    def prune(self, before_ns: int) -> None:
        """Drop answers whose hold ended before ``before_ns`` (UTC ns): no flow that starts
        later can match them (live capture calls this as flows are closed)."""
        before_us = before_ns // 1000
        empty: list[str] = []
        for address, entries in self._map.items():
            kept = [e for e in entries if e.expires_us >= before_us]
            if len(kept) != len(entries):
                self._size -= len(entries) - len(kept)
                entries[:] = kept
                if not kept:
                    empty.append(address)
        for address in empty:
            del self._map[address]


def observe_dns(dns: DnsCorrelator, decoder: Decoder, ts_ns: int, summary: Summary) -> None:
    """Feed ``dns`` the segment behind ``summary`` (just returned by ``decoder.decode``, seen at
    ``ts_ns`` UTC ns) when it is TCP or UDP from port 53; anything else is ignored."""
    if summary[3] == DNS_PORT and (summary[0] == 17 or summary[0] == 6):
        dns.observe_at(ts_ns, summary[0], summary[1], summary[2], decoder.take_dns(summary))
