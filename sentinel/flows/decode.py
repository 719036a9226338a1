"""Per-packet decoding: link layer → IPv4/IPv6 → TCP/UDP ports, into a small tuple.

``Decoder.decode(linktype, data)`` returns a ``Summary`` tuple
``(protocol, src, dst, src_port, dst_port, ip_bytes)`` or ``None`` (not IP, undecodable; counted
on the decoder). ``src``/``dst`` are the packed addresses (4 or 16 ``bytes``); ``ip_bytes`` is the
IP total length (IPv4 Total Length; IPv6 40 + Payload Length), i.e. bytes on the wire at the IP
layer. Addresses are turned into strings only when a flow is created (``FlowTable``).

Link types (LINKTYPE_ numbers, https://www.tcpdump.org/linktypes.html): Ethernet (1) with stacked
802.1Q/802.1ad/QinQ tags (0x8100, 0x88a8, 0x9100) and MPLS (0x8847/0x8848, bottom of stack →
IPv4/IPv6 by the version nibble); Linux SLL (113) and SLL2 (276); NULL (0, address family in
either byte order: 2 → IPv4, 24/28/30 → IPv6) and LOOP (108); raw IP (12, 14, 101, 228 IPv4,
229 IPv6); NFLOG (239: a 4-byte header, then TLVs whose length and type are in the capturing
host's byte order — both orders are tried — the packet being the NFULA_PAYLOAD TLV, type 9; see
https://www.tcpdump.org/linktypes/LINKTYPE_NFLOG.html).

IP (RFC 791, RFC 8200): IPv6 extension headers are walked (hop-by-hop, routing, destination
options, fragment, AH, mobility). Fragments: the first fragment carries the ports and is
remembered by ``(src, dst, protocol, id)`` in a bounded map; later fragments take the ports from
it, unmatched ones get ports 0 (counted in ``fragments_unmatched``). A malformed IP header whose
addresses are readable is still attributed (ports 0, counted in ``malformed``): a damaged packet
to a foreign address is still data leaving.

Tunnels — the *inner* flow is the one judged: an overlay (VXLAN between hypervisors, GRE or
6in4/4in6 between routers) carries the tenants' traffic, and judging the tunnel endpoints would
hide where that traffic goes. Decapsulated: IP-in-IP (protocol 4, RFC 2003; also 4in6, RFC 2473),
IPv6-in-IP (41: 6in4, RFC 4213; 6in6), GRE (47, RFC 2784/2890, version 0: IPv4, IPv6 and
transparent Ethernet bridging 0x6558 payloads) and VXLAN (UDP destination port 4789, RFC 7348,
inner Ethernet). The summary is the innermost IP header's (addresses, ports, its IP length);
nesting is followed up to ``MAX_TUNNEL_DEPTH`` levels. Each decapsulation is counted in
``tunnels`` by kind. A tunnel whose payload cannot be decoded (not IP, damaged, a non-first
fragment, GRE version 1/PPTP, ERSPAN...) is attributed to the outer flow. Teredo (UDP 3544) is
not decapsulated: it is attributed to the outer IPv4 flow.
"""

from __future__ import annotations

import struct

Summary = tuple[int, bytes, bytes, int, int, int]

_H = struct.Struct("!H").unpack_from
_HH = struct.Struct("!HH").unpack_from
_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_VLAN = frozenset({0x8100, 0x88A8, 0x9100})
_MPLS = frozenset({0x8847, 0x8848})
_IPV6_EXT = frozenset({0, 43, 60, 135, 139, 140})
_PORT_PROTOS = frozenset({6, 17, 132, 136})  # TCP, UDP, SCTP, UDP-Lite

#: bound on remembered first fragments
MAX_FRAGMENTS = 4096
#: nested tunnels followed at most
MAX_TUNNEL_DEPTH = 4
#: IP protocols that carry another IP packet: IPv4 (4), IPv6 (41), GRE (47)
TUNNEL_PROTOCOLS = frozenset({4, 41, 47})
#: VXLAN's UDP destination port (RFC 7348)
VXLAN_PORT = 4789
_GRE_PAYLOADS = {0x0800: 4, 0x86DD: 6, 0x6558: 1}
_TUNNEL_NAMES = {4: "ipip", 41: "ip6ip", 47: "gre"}


class Decoder:
    """Stateful decoder (it remembers first fragments). Not thread-safe: one per source.

    Counters (packets): ``not_ip`` (no IP inside, e.g. ARP), ``malformed`` (IP header damaged but
    addresses readable, or IP header unreadable), ``unsupported_linktype``,
    ``fragments_unmatched``; ``tunnels`` counts decapsulations by kind (``ipip``, ``ip6ip``,
    ``gre``, ``vxlan``).
    """

    __slots__ = (
        "_depth",
        "_dns",
        "_frags",
        "fragments_unmatched",
        "malformed",
        "not_ip",
        "tunnels",
        "unsupported_linktype",
    )

    def __init__(self) -> None:
        self._frags: dict[tuple[bytes, bytes, int, int], tuple[int, int]] = {}
        self.not_ip = 0
        self.malformed = 0
        self.unsupported_linktype = 0
        self.fragments_unmatched = 0
        self.tunnels: dict[str, int] = {}
        self._depth = 0
        # (src, buffer, L4 offset, IP payload end) of the last TCP/UDP segment from port 53
        self._dns: tuple[bytes, bytes, int, int] | None = None

    def take_dns(self, summary: Summary) -> tuple[bytes, int, int] | None:
        """For a ``summary`` just returned by ``decode`` whose source port is 53 (TCP or UDP):
        ``(buffer, offset of the L4 header, end of the IP payload)`` of that segment, for
        ``sentinel.flows.dns``; ``None`` when the segment is not at hand (a fragment, a
        damaged header). Clears what it returns."""
        at, self._dns = self._dns, None
        if at is None or at[0] is not summary[1]:
            return None
        return at[1], at[2], at[3]

    def decode(self, linktype: int, data: bytes) -> Summary | None:
        """Decode one captured frame of ``linktype``; ``None`` when it carries no IP."""
        if linktype == 1:
            if len(data) < 14:
                self.malformed += 1
                return None
            etype = (data[12] << 8) | data[13]
            off = 14
        elif linktype in (101, 12, 14):
            if not data:
                self.malformed += 1
                return None
            version = data[0] >> 4
            if version == 4:
                return self._ipv4(data, 0)
            if version == 6:
                return self._ipv6(data, 0)
            self.not_ip += 1
            return None
        elif linktype == 228:
            return self._ipv4(data, 0)
        elif linktype == 229:
            return self._ipv6(data, 0)
        elif linktype == 113:
            if len(data) < 16:
                self.malformed += 1
                return None
            etype = (data[14] << 8) | data[15]
            off = 16
        elif linktype == 276:
            if len(data) < 20:
                self.malformed += 1
                return None
            etype = (data[0] << 8) | data[1]
            off = 20
        elif linktype == 239:
            return self._nflog(data)
        elif linktype in (0, 108):
            if len(data) < 4:
                self.malformed += 1
                return None
            # the family is in the capturing host's byte order (NULL) or network order (LOOP)
            family = data[3] if data[0] == 0 and data[1] == 0 else data[0]
            if family == 2:
                return self._ipv4(data, 4)
            if family in (24, 28, 30):
                return self._ipv6(data, 4)
            self.not_ip += 1
            return None
        else:
            self.unsupported_linktype += 1
            return None
        return self._ethertype(data, etype, off)

    def _ethertype(self, data: bytes, etype: int, off: int) -> Summary | None:
        """An Ethernet-type field at ``off - 2``: VLAN tags, MPLS, then IP."""
        if etype == _ETH_IPV4:
            return self._ipv4(data, off)
        n = len(data)
        while etype in _VLAN:
            if off + 4 > n:
                self.malformed += 1
                return None
            etype = (data[off + 2] << 8) | data[off + 3]
            off += 4
        if etype == _ETH_IPV4:
            return self._ipv4(data, off)
        if etype == _ETH_IPV6:
            return self._ipv6(data, off)
        if etype in _MPLS:
            while True:
                if off + 4 > n:
                    self.malformed += 1
                    return None
                bottom = data[off + 2] & 1
                off += 4
                if bottom:
                    break
            if off >= n:
                self.malformed += 1
                return None
            version = data[off] >> 4
            if version == 4:
                return self._ipv4(data, off)
            if version == 6:
                return self._ipv6(data, off)
        self.not_ip += 1
        return None

    def _ipv4(self, data: bytes, off: int) -> Summary | None:
        n = len(data)
        if off + 20 > n or data[off] >> 4 != 4:
            self.malformed += 1
            return None
        ihl = (data[off] & 15) << 2
        total, ident = _HH(data, off + 2)
        frag = _H(data, off + 6)[0]
        proto = data[off + 9]
        src = data[off + 12 : off + 16]
        dst = data[off + 16 : off + 20]
        if ihl < 20 or total < ihl:
            # damaged header (or a GSO/TSO super-packet with total length 0): keep the addresses
            self.malformed += 1
            return proto, src, dst, 0, 0, n - off
        if frag & 0x3FFF:
            offset = frag & 0x1FFF
            if offset:
                ports = self._frags.get((src, dst, proto, ident))
                if ports is None:
                    self.fragments_unmatched += 1
                    return proto, src, dst, 0, 0, total
                return proto, src, dst, ports[0], ports[1], total
            l4 = off + ihl
            if proto in _PORT_PROTOS and l4 + 4 <= n:
                sport, dport = _HH(data, l4)
            else:
                sport = dport = 0
            self._remember((src, dst, proto, ident), (sport, dport))
            return proto, src, dst, sport, dport, total
        l4 = off + ihl
        if proto in _PORT_PROTOS and l4 + 4 <= n:
            sport, dport = _HH(data, l4)
            if dport == VXLAN_PORT and proto == 17:
                inner = self._vxlan(data, l4)
                if inner is not None:
                    return inner
            if sport == 53:
                self._dns = (src, data, l4, min(n, off + total))
            return proto, src, dst, sport, dport, total
        if proto in TUNNEL_PROTOCOLS:
            inner = self._tunnel(proto, data, l4)
            if inner is not None:
                return inner
        return proto, src, dst, 0, 0, total

    def _ipv6(self, data: bytes, off: int) -> Summary | None:
        n = len(data)
        if off + 40 > n or data[off] >> 4 != 6:
            self.malformed += 1
            return None
        plen = _H(data, off + 4)[0]
        nh = data[off + 6]
        src = data[off + 8 : off + 24]
        dst = data[off + 24 : off + 40]
        # payload length 0 with a hop-by-hop jumbo option (RFC 2675): use the captured length
        total = 40 + plen if plen else n - off
        pos = off + 40
        first_frag: tuple[int, int] | None = None  # (ident, more) of a first fragment
        while nh in _IPV6_EXT or nh == 44 or nh == 51:
            if pos + 8 > n:
                self.malformed += 1
                return nh, src, dst, 0, 0, total
            if nh == 44:
                frag = _H(data, pos + 2)[0]
                ident = struct.unpack_from("!I", data, pos + 4)[0]
                nxt = data[pos]
                if frag >> 3:
                    ports = self._frags.get((src, dst, nxt, ident))
                    if ports is None:
                        self.fragments_unmatched += 1
                        return nxt, src, dst, 0, 0, total
                    return nxt, src, dst, ports[0], ports[1], total
                if frag & 1:
                    first_frag = (ident, 1)
                nh = nxt
                pos += 8
            elif nh == 51:
                nxt = data[pos]
                pos += (data[pos + 1] + 2) << 2
                nh = nxt
            else:
                nxt = data[pos]
                pos += (data[pos + 1] + 1) << 3
                nh = nxt
        if nh in _PORT_PROTOS and pos + 4 <= n:
            sport, dport = _HH(data, pos)
        else:
            sport = dport = 0
        if first_frag is not None:
            self._remember((src, dst, nh, first_frag[0]), (sport, dport))
        elif nh in TUNNEL_PROTOCOLS:
            inner = self._tunnel(nh, data, pos)
            if inner is not None:
                return inner
        elif nh == 17 and dport == VXLAN_PORT:
            inner = self._vxlan(data, pos)
            if inner is not None:
                return inner
        if sport == 53 and first_frag is None:
            self._dns = (src, data, pos, min(n, off + total))
        return nh, src, dst, sport, dport, total

    # -- tunnels and NFLOG ------------------------------------------------------------------

    def _inner(self, kind: str, version: int, data: bytes, off: int) -> Summary | None:
        """Decode an encapsulated packet (``version`` 4, 6, or 1 for an Ethernet frame) at
        ``off``; ``None`` (counters untouched) when it does not decode."""
        if self._depth >= MAX_TUNNEL_DEPTH or off >= len(data):
            return None
        saved = (self.not_ip, self.malformed)
        self._depth += 1
        try:
            if version == 1:
                if off + 14 > len(data):
                    return None
                inner = self._ethertype(data, _H(data, off + 12)[0], off + 14)
            elif version == 4:
                inner = self._ipv4(data, off)
            else:
                inner = self._ipv6(data, off)
        finally:
            self._depth -= 1
        if inner is None or self.malformed != saved[1]:
            self.not_ip, self.malformed = saved
            return None
        self.tunnels[kind] = self.tunnels.get(kind, 0) + 1
        return inner

    def _tunnel(self, proto: int, data: bytes, off: int) -> Summary | None:
        if proto == 4:
            return self._inner("ipip", 4, data, off)
        if proto == 41:
            return self._inner("ip6ip", 6, data, off)
        # GRE (RFC 2784, key and sequence number from RFC 2890); version 0 only
        if off + 4 > len(data):
            return None
        flags, ptype = _HH(data, off)
        if flags & 0x7 or flags & 0x4000:  # version != 0, or routing present (RFC 1701)
            return None
        version = _GRE_PAYLOADS.get(ptype)
        if version is None:
            return None
        off += 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
        return self._inner("gre", version, data, off)

    def _vxlan(self, data: bytes, l4: int) -> Summary | None:
        # UDP header (8) + VXLAN header (8, flags with the I bit 0x08), then Ethernet
        if l4 + 16 > len(data) or not data[l4 + 8] & 0x08:
            return None
        return self._inner("vxlan", 1, data, l4 + 16)

    def _nflog(self, data: bytes) -> Summary | None:
        n = len(data)
        if n < 4:
            self.malformed += 1
            return None
        family = data[0]
        for order in ("<HH", ">HH"):
            pos = 4
            while pos + 4 <= n:
                length, kind = struct.unpack_from(order, data, pos)
                if length < 4 or pos + length > n:
                    break
                if kind == 9:  # NFULA_PAYLOAD
                    start, stop = pos + 4, pos + length
                    payload = data[start:stop]
                    if family == 10 or (family != 2 and payload[:1] and payload[0] >> 4 == 6):
                        return self._ipv6(payload, 0)
                    return self._ipv4(payload, 0)
                pos += (length + 3) & ~3
        self.not_ip += 1
        return None

    def _remember(self, key: tuple[bytes, bytes, int, int], ports: tuple[int, int]) -> None:
        frags = self._frags
        if len(frags) >= MAX_FRAGMENTS:
            del frags[next(iter(frags))]
        frags[key] = ports
