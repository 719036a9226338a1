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
229 IPv6).

IP (RFC 791, RFC 8200): IPv6 extension headers are walked (hop-by-hop, routing, destination
options, fragment, AH, mobility). Fragments: the first fragment carries the ports and is
remembered by ``(src, dst, protocol, id)`` in a bounded map; later fragments take the ports from
it, unmatched ones get ports 0 (counted in ``fragments_unmatched``). Tunnels (GRE, IP-in-IP,
VXLAN, Teredo) are attributed to the outer flow. A malformed IP header whose addresses are
readable is still attributed (ports 0, counted in ``malformed``): a damaged packet to a foreign
address is still data leaving.
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


class Decoder:
    """Stateful decoder (it remembers first fragments). Not thread-safe: one per source.

    Counters (packets): ``not_ip`` (no IP inside, e.g. ARP), ``malformed`` (IP header damaged but
    addresses readable, or IP header unreadable), ``unsupported_linktype``,
    ``fragments_unmatched``.
    """

    __slots__ = ("_frags", "fragments_unmatched", "malformed", "not_ip", "unsupported_linktype")

    def __init__(self) -> None:
        self._frags: dict[tuple[bytes, bytes, int, int], tuple[int, int]] = {}
        self.not_ip = 0
        self.malformed = 0
        self.unsupported_linktype = 0
        self.fragments_unmatched = 0

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
        # an Ethernet-type field: VLAN tags, MPLS, then IP
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
            return proto, src, dst, sport, dport, total
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
        return nh, src, dst, sport, dport, total

    def _remember(self, key: tuple[bytes, bytes, int, int], ports: tuple[int, int]) -> None:
        frags = self._frags
        if len(frags) >= MAX_FRAGMENTS:
            del frags[next(iter(frags))]
        frags[key] = ports
