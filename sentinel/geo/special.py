"""Special-purpose and unallocated address ranges: never located by a GeoIP database.

GeoIP databases fill reserved space with whatever country their build pipeline guessed (DB-IP
City Lite 2023-04 places ``4000::/2``, ``8000::/2`` and ``fec0::/10`` in ``CH``, ``3000::/4`` —
which holds the ``3fff::/20`` documentation prefix — in ``CA``, and the AS112 anycast blocks in
``US``; a MaxMind-style ``ZZ`` answers ``192.0.0.9``). ``classify(addr)`` answers from the IANA
registries first, so that fill-in data can never make such an address foreign.

Sources (every entry below is one row, with its RFC):

* IANA IPv4 Special-Purpose Address Registry,
  https://www.iana.org/assignments/iana-ipv4-special-registry (RFC 6890, RFC 8190);
* IANA IPv6 Special-Purpose Address Registry,
  https://www.iana.org/assignments/iana-ipv6-special-registry (RFC 6890, RFC 8190);
* the multicast blocks, which those registries do not list: IANA IPv4 Address Space Registry
  (``224.0.0.0/4``, RFC 5771) and IANA IPv6 Address Space Registry (``ff00::/8``, RFC 4291);
* IANA IPv6 Address Space Registry, https://www.iana.org/assignments/ipv6-address-space: only
  ``2000::/3`` is Global Unicast; everything else outside the blocks above is "Reserved by IETF"
  (RFC 4291 section 2.4) and is classified ``unallocated``. DB-IP's fill-in countries there are
  never used;
* IANA IPv6 Global Unicast Address Assignments: inside ``2000::/3`` only the blocks IANA
  allocated (to the RIRs, 6to4, its own ``2001::/23``) can hold a country; the rest (``2d00::/8``,
  ``3000::/4``, ``3ffe::/16``, gaps in ``2001::/16``...) is ``unallocated`` too.

Each range has a ``scope``:

* ``internal`` — the registry's *Globally Reachable* column is False: a datagram to it is not
  forwarded beyond the administrative domain, so it cannot leave the jurisdiction across the
  Internet. Never foreign, never looked up.
* ``unknown`` — globally reachable anycast services (AS112, AMT, PCP/TURN/DNS-SD anycast...),
  deprecated blocks, the local-use NAT64 prefix and unallocated IPv6: where the peer is cannot be
  known from a database, so it is *no country* ("unknown location", fail closed) — never the
  database's fill-in country.
* ``embedded`` — IPv4-mapped, NAT64 ``64:ff9b::/96``, Teredo and 6to4 stand for an IPv4 address
  (``sentinel.geo.database.embedded_ipv4``); that IPv4 address is classified instead.

Deliberate deviation: ``64:ff9b:1::/48`` (RFC 8215, Globally Reachable False) is ``unknown``, not
``internal``: it is translated to an IPv4 destination that may be anywhere, with an
operator-chosen layout that cannot be decoded here.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Scope = Literal["internal", "unknown", "embedded", "unallocated"]

#: The rows were written from the registries as last updated before 2025-06; the two newest
#: (``2001:1::3/128``, ``100:0:0:1::/64``) could not be re-checked offline.


@dataclass(frozen=True, slots=True)
class SpecialRange:
    """One registry row: ``network``, registry ``name``, ``rfc``, the registry's *Globally
    Reachable* value (``None`` for N/A or a deprecated row) and Sentinel's ``scope``."""

    network: Network
    name: str
    rfc: str
    globally_reachable: bool | None
    scope: Scope


def _r(net: str, name: str, rfc: str, reachable: bool | None, scope: Scope) -> SpecialRange:
    return SpecialRange(ipaddress.ip_network(net), name, rfc, reachable, scope)


#: IANA IPv4 Special-Purpose Address Registry, every row, plus multicast (RFC 5771).
IPV4_SPECIAL: tuple[SpecialRange, ...] = (
    _r("0.0.0.0/8", '"This network"', "RFC 791 s3.2", False, "internal"),
    _r("0.0.0.0/32", '"This host on this network"', "RFC 1122 s3.2.1.3", False, "internal"),
    _r("10.0.0.0/8", "Private-Use", "RFC 1918", False, "internal"),
    _r("100.64.0.0/10", "Shared Address Space", "RFC 6598", False, "internal"),
    _r("127.0.0.0/8", "Loopback", "RFC 1122 s3.2.1.3", False, "internal"),
    _r("169.254.0.0/16", "Link Local", "RFC 3927", False, "internal"),
    _r("172.16.0.0/12", "Private-Use", "RFC 1918", False, "internal"),
    _r("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890 s2.1", False, "internal"),
    _r("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False, "internal"),
    _r("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False, "internal"),
    _r("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True, "unknown"),
    _r("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True, "unknown"),
    _r("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 s2.2", False, "internal"),
    _r("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 s2.2", False, "internal"),
    _r("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False, "internal"),
    _r("192.31.196.0/24", "AS112-v4", "RFC 7535", True, "unknown"),
    _r("192.52.193.0/24", "AMT", "RFC 7450", True, "unknown"),
    _r("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", None, "unknown"),
    _r("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", False, "internal"),
    _r("192.168.0.0/16", "Private-Use", "RFC 1918", False, "internal"),
    _r("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True, "unknown"),
    _r("198.18.0.0/15", "Benchmarking", "RFC 2544", False, "internal"),
    _r("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False, "internal"),
    _r("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False, "internal"),
    _r("240.0.0.0/4", "Reserved", "RFC 1112 s4", False, "internal"),
    _r("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919 s7", False, "internal"),
    # IANA IPv4 Address Space Registry / IPv4 Multicast Address Space Registry
    _r("224.0.0.0/4", "Multicast", "RFC 5771", False, "internal"),
)

#: IANA IPv6 Special-Purpose Address Registry, every row, plus multicast (RFC 4291).
IPV6_SPECIAL: tuple[SpecialRange, ...] = (
    _r("::1/128", "Loopback Address", "RFC 4291", False, "internal"),
    _r("::/128", "Unspecified Address", "RFC 4291", False, "internal"),
    _r("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False, "embedded"),
    _r("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", True, "embedded"),
    _r("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)", "RFC 8215", False, "unknown"),
    _r("100::/64", "Discard-Only Address Block", "RFC 6666", False, "internal"),
    _r("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", False, "internal"),
    _r("2001::/23", "IETF Protocol Assignments", "RFC 2928", False, "internal"),
    _r("2001::/32", "TEREDO", "RFC 4380, RFC 8190", None, "embedded"),
    _r("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", True, "unknown"),
    _r("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", True, "unknown"),
    _r(
        "2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", True, "unknown"
    ),
    _r("2001:2::/48", "Benchmarking", "RFC 5180, RFC Errata 1752", False, "internal"),
    _r("2001:3::/32", "AMT", "RFC 7450", True, "unknown"),
    _r("2001:4:112::/48", "AS112-v6", "RFC 7535", True, "unknown"),
    _r("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", None, "unknown"),
    _r("2001:20::/28", "ORCHIDv2", "RFC 7343", True, "unknown"),
    _r(
        "2001:30::/28",
        "Drone Remote ID Protocol Entity Tags (DETs) Prefix",
        "RFC 9374",
        True,
        "unknown",
    ),
    _r("2001:db8::/32", "Documentation", "RFC 3849", False, "internal"),
    _r("2002::/16", "6to4", "RFC 3056", None, "embedded"),
    _r("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", True, "unknown"),
    _r("3fff::/20", "Documentation", "RFC 9637", False, "internal"),
    _r("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", False, "internal"),
    _r("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", False, "internal"),
    _r("fe80::/10", "Link-Local Unicast", "RFC 4291", False, "internal"),
    # IANA IPv6 Address Space Registry
    _r("ff00::/8", "Multicast", "RFC 4291", False, "internal"),
)

#: IANA IPv6 Address Space Registry (https://www.iana.org/assignments/ipv6-address-space): every
#: "Reserved by IETF" block. Only ``2000::/3`` is Global Unicast; ``fc00::/7``, ``fe80::/10``
#: and ``ff00::/8`` are in ``IPV6_SPECIAL``.
IPV6_RESERVED: tuple[SpecialRange, ...] = tuple(
    _r(net, "Reserved by IETF", rfc, None, "unallocated")
    for net, rfc in (
        ("::/8", "RFC 4291"),
        ("100::/8", "RFC 4291"),
        ("200::/7", "RFC 4048"),
        ("400::/6", "RFC 4291"),
        ("800::/5", "RFC 4291"),
        ("1000::/4", "RFC 4291"),
        ("4000::/3", "RFC 4291"),
        ("6000::/3", "RFC 4291"),
        ("8000::/3", "RFC 4291"),
        ("a000::/3", "RFC 4291"),
        ("c000::/3", "RFC 4291"),
        ("e000::/4", "RFC 4291"),
        ("f000::/5", "RFC 4291"),
        ("f800::/6", "RFC 4291"),
        ("fe00::/9", "RFC 4291"),
        ("fec0::/10", "RFC 3879 (deprecated site-local)"),
    )
)

GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")

#: IANA IPv6 Global Unicast Address Assignments
#: (https://www.iana.org/assignments/ipv6-unicast-address-assignments), every ALLOCATED block.
#: The rest of ``2000::/3`` has never been handed to a regional registry, so no country can hold
#: it (DB-IP City Lite 2023-04 places all of ``3000::/4`` in ``CA``).
IPV6_ALLOCATED: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23", "2001:200::/23", "2001:400::/23", "2001:600::/23", "2001:800::/22",
        "2001:c00::/23", "2001:e00::/23", "2001:1200::/23", "2001:1400::/22", "2001:1800::/23",
        "2001:1a00::/23", "2001:1c00::/22", "2001:2000::/19", "2001:4000::/23", "2001:4200::/23",
        "2001:4400::/23", "2001:4600::/23", "2001:4800::/23", "2001:4a00::/23", "2001:4c00::/23",
        "2001:5000::/20", "2001:8000::/19", "2001:a000::/20", "2001:b000::/20", "2002::/16",
        "2003::/18", "2400::/12", "2600::/12", "2610::/23", "2620::/23", "2630::/12", "2800::/12",
        "2a00::/12", "2a10::/12", "2c00::/12",
    )
)  # fmt: skip
UNASSIGNED_V6 = SpecialRange(
    GLOBAL_UNICAST,
    "Not allocated by IANA (global unicast)",
    "RFC 7249; IANA IPv6 Global Unicast Address Assignments",
    None,
    "unallocated",
)


def _by_prefix(ranges: tuple[SpecialRange, ...]) -> list[tuple[int, dict[int, SpecialRange]]]:
    """Longest prefix first: prefix length → {network int: range}."""
    table: dict[int, dict[int, SpecialRange]] = {}
    for r in ranges:
        table.setdefault(r.network.prefixlen, {})[int(r.network.network_address)] = r
    return sorted(table.items(), reverse=True)


_V4 = _by_prefix(IPV4_SPECIAL)
_V6 = _by_prefix(IPV6_SPECIAL + IPV6_RESERVED)
_V6_ALLOCATED = _by_prefix(tuple(SpecialRange(n, "", "", True, "internal") for n in IPV6_ALLOCATED))


def _match(
    value: int, bits: int, table: list[tuple[int, dict[int, SpecialRange]]]
) -> SpecialRange | None:
    for plen, nets in table:
        hit = nets.get(value >> (bits - plen) << (bits - plen) if plen else 0)
        if hit is not None:
            return hit
    return None


def classify(addr: IPAddress) -> SpecialRange | None:
    """The most specific special-purpose or reserved range holding ``addr`` (every IPv6
    address outside ``2000::/3`` has one; ``UNASSIGNED_V6`` for ``2000::/3`` space IANA never
    allocated), or ``None`` for ordinary global unicast.

    ``addr`` is taken as given: reduce embedded IPv4 first (``embedded_ipv4``) to classify the
    address that actually talks.
    """
    if addr.version == 4:
        return _match(int(addr), 32, _V4)
    value = int(addr)
    hit = _match(value, 128, _V6)
    if hit is None and _match(value, 128, _V6_ALLOCATED) is None:
        return UNASSIGNED_V6
    return hit


def _flatten(version: int) -> tuple[list[int], list[SpecialRange | None]]:
    """``classify`` as a step function: sorted interval starts and the answer on each interval.

    Every range boundary starts an interval, so no range begins or ends inside one and
    ``classify`` is constant on it; its value at the interval's first address is the answer
    for the whole interval."""
    bits = 32 if version == 4 else 128
    ranges = IPV4_SPECIAL if version == 4 else IPV6_SPECIAL + IPV6_RESERVED
    nets = [r.network for r in ranges]
    if version == 6:
        nets += [GLOBAL_UNICAST, *IPV6_ALLOCATED]
    cuts = {0}
    for n in nets:
        cuts.add(int(n.network_address))
        end = int(n.broadcast_address) + 1
        if end < 1 << bits:
            cuts.add(end)
    starts = sorted(cuts)
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return starts, [classify(make(s)) for s in starts]


_STEPS = {4: _flatten(4), 6: _flatten(6)}


def special_starts(version: int) -> list[int]:
    """The first addresses of the intervals on which ``classify`` is constant (sorted)."""
    return list(_STEPS[version][0])


def classify_int(version: int, value: int) -> SpecialRange | None:
    """``classify`` for an address given as its IP version (4 or 6) and integer value: one
    binary search over the ranges flattened at import."""
    starts, answers = _STEPS[version]
    return answers[bisect.bisect_right(starts, value) - 1]


def is_internal(addr: IPAddress) -> bool:
    """``addr`` is in a range whose scope is ``internal`` (not globally reachable)."""
    hit = classify(addr)
    return hit is not None and hit.scope == "internal"
