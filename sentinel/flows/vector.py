"""Vectorized capture → flows path (numpy): the same flows as ``Decoder`` + ``FlowTable``, faster.

How it works, per batch of records (tens of MB of the file at a time):

1. *Record walk.* Plain pcap: a tight loop reads each record's ``incl_len`` and collects record
   offsets; the record headers are then gathered all at once (timestamps, lengths, anomalies).
   Damage is handled exactly as in ``CaptureReader`` (same messages, same counted truncation,
   never a partial packet). Other formats (pcapng, gzip-compressed pcapng) go through
   ``CaptureReader``'s iterator and are packed into batches.
2. *Decode.* Link layer and IP fields of every packet are gathered with fancy indexing on a
   ``uint8`` view. The common case — Ethernet (one optional 802.1Q/802.1ad tag), Linux SLL/SLL2
   or raw IP; IPv4 without fragmentation; IPv6 without extension headers; any transport, ports
   for TCP/UDP/SCTP/UDP-Lite — is decoded here. Every other packet (fragments, tunnels, MPLS,
   QinQ, NULL/loopback, NFLOG, short or damaged headers...) goes, in order, through the scalar
   ``Decoder``, so fragment state and the decoder's counters are the same as on the scalar path.
3. *Aggregate.* Each endpoint is ranked (in ``local_networks`` / private or special range /
   public) with vectorized prefix tests; the few addresses that fall in a special-range bucket
   are ranked exactly by ``FlowTable``'s own rule. Packets are keyed by (protocol, endpoint A,
   endpoint B) with A the local side (or, for equal ranks, the smaller endpoint) and grouped by a
   64-bit hash; the grouping is checked column by column and redone with an exact sort if two
   keys ever share a hash. A flow's local side, for equal ranks, is the source of its first
   packet — the rule ``FlowTable`` applies. A flow with neither endpoint in ``local_networks``
   is marked ``orientation_unknown`` (ranked once per flow, not per packet).

The result equals ``FlowTable.drain()`` after feeding every packet (same flows, counters, times
and creation order) as long as no flow was evicted: when the number of flows exceeds
``max_flows`` the caller falls back to the scalar path (``read_flows`` does).
"""

from __future__ import annotations

import io
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt

from sentinel.flows.decode import TUNNEL_PROTOCOLS, VXLAN_PORT, Decoder
from sentinel.flows.dns import DNS_PORT, HEADER_BYTES, DnsCorrelator, DnsOptions
from sentinel.flows.pcap import CaptureReader, ReadStats
from sentinel.flows.table import FlowTable, Network, ns_to_datetime
from sentinel.records import Flow

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
Bool = npt.NDArray[np.bool_]

#: bytes of capture read per batch
BATCH_BYTES = 32 << 20
#: packets per batch for formats read through the scalar iterator
BATCH_PACKETS = 65_536

_PORT_PROTOS = np.array([6, 17, 132, 136])
_NO_FAST_V6 = np.array([0, 43, 44, 50, 51, 60, 135, 139, 140, *sorted(TUNNEL_PROTOCOLS)])
_NO_FAST_V4 = np.array(sorted(TUNNEL_PROTOCOLS))

#: Special-purpose ranges (IANA IPv4/IPv6 special-purpose registries, multicast, and every
#: network ``ipaddress`` calls private in any Python version). An address outside all of them
#: is neither ``is_private`` nor ``is_multicast``; one inside is ranked exactly by
#: ``FlowTable``. tests/flows check this superset against ``ipaddress``'s own lists.
SPECIAL_V4 = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/3",
)
SPECIAL_V6 = (
    "::/8",
    "100::/8",
    "2001::/16",
    "2002::/16",
    "2620:4f:8000::/48",
    "3fff::/16",
    "5f00::/16",
    "fc00::/7",
    "fe00::/7",
)


def _bucket_table(networks: tuple[str, ...], shift: int) -> Bool:
    """A 65,536-entry table: True for each top-16-bit bucket that overlaps a network."""
    table = np.zeros(1 << 16, dtype=np.bool_)
    for text in networks:
        net = ipaddress.ip_network(text)
        first = int(net.network_address) >> shift
        last = int(net.broadcast_address) >> shift
        table[first : last + 1] = True
    return table


_SPECIAL4 = _bucket_table(SPECIAL_V4, 16)
_SPECIAL6 = _bucket_table(SPECIAL_V6, 112)


def addr_text(packed: bytes) -> str:
    """Packed IPv4/IPv6 address → the text ``str(ipaddress.ip_address(packed))`` gives.

    ``socket.inet_ntop`` (RFC 5952 compression, as ``ipaddress``) except for IPv6 forms that
    embed dotted IPv4, where ``ipaddress`` writes hex groups.
    """
    if len(packed) == 4:
        return socket.inet_ntoa(packed)
    text = socket.inet_ntop(socket.AF_INET6, packed)
    if "." in text:
        return str(ipaddress.IPv6Address(packed))
    return text


@dataclass
class PacketBatch:
    """Packets sharing one buffer: data of packet i is ``data[off[i] : off[i] + cap[i]]``.

    ``ts`` in UTC ns, ``linktype`` the LINKTYPE_ number per packet, ``seq`` the packet's index
    in the whole read (creation order of flows).
    """

    data: bytes | bytearray
    off: I64
    cap: I64
    ts: I64
    linktype: I64
    seq: I64


# -- reading --------------------------------------------------------------------------------


def _pcap_batches(reader: CaptureReader, first_seq: int, target: int) -> Iterator[PacketBatch]:
    """Batches from a pcap (plain or gzip) with ``CaptureReader``'s damage rules.

    The file is read with ``readinto`` into one reused buffer (one copy, no ``mmap``: a file
    truncated while being read must not kill the process with SIGBUS); each batch's ``data`` is
    only valid until the next batch is taken.
    """
    endian, mult, snaplen, linktype = reader._pcap_info
    limit = reader._limit(snaplen)
    src = reader._src
    stats = reader.stats
    frac_max = 1_000_000 if mult == 1000 else 1_000_000_000
    incl_at = struct.Struct(endian + "I").unpack_from
    hdr_dtype = np.dtype(endian + "u4")
    head = src.buf[src.pos :]
    if reader._fh is reader._raw:
        expect = os.fstat(reader._raw.fileno()).st_size - src.here + 1
    else:  # gzip: size unknown
        expect = 4 << 20
    cap = max(min(target, expect), limit + 16, len(head))
    buf = bytearray(cap)
    view = memoryview(buf)
    size = len(head)
    buf[:size] = head
    base = src.here
    fh = cast(io.BufferedIOBase, src.fh)
    # gzip: one decompressed read at a time, so data before a damaged spot is still returned
    readinto = fh.readinto if reader._fh is reader._raw else fh.readinto1
    eof = src.eof
    seq = first_seq
    # the buffer as 32-bit words at each of the 4 byte alignments: a record header's four
    # fields are 4 consecutive words of the view matching its offset
    words = [np.frombuffer(buf, dtype=hdr_dtype, count=(cap - k) // 4, offset=k) for k in range(4)]
    while True:
        while not eof and size < cap:
            try:
                got = readinto(view[size:])
            except (OSError, EOFError) as exc:
                src.error = f"read error: {exc}"
                got = 0
            except Exception as exc:  # zlib.error and gzip.BadGzipFile from a damaged stream
                src.error = f"read error: {exc}"
                got = 0
            if not got:
                eof = True
                break
            size += got
        n = size
        # the tightest loop in the module: the record-length limit is checked afterwards, on
        # all records at once, and the end of the data is found by unpack_from's error
        offs: list[int] = []
        app = offs.append
        pos = 0
        window = view[:n]
        try:
            while True:
                end = pos + 16 + incl_at(window, pos + 8)[0]
                if end > n:
                    break
                app(pos)
                pos = end
        except struct.error:
            pass
        window.release()
        too_long = -1
        count = len(offs)
        if count:
            rec = np.array(offs, dtype=np.int64)
            hdr = _headers(words, rec)
            over = np.flatnonzero(hdr[:, 2] > limit)
            if over.size:
                count = int(over[0])
                pos = offs[count]
                too_long = int(hdr[count, 2])
                rec, hdr = rec[:count], hdr[:count]
        if too_long < 0 and pos + 16 <= n:
            incl = incl_at(buf, pos + 8)[0]
            if incl > limit:
                too_long = incl
        if count:
            sec, frac, incl_a, orig = hdr[:, 0], hdr[:, 1], hdr[:, 2], hdr[:, 3]
            stats.packets += count
            stats.bytes += int(incl_a.sum())
            bad = int(np.count_nonzero(incl_a > orig))
            if bad:
                stats.anomaly("incl_gt_orig", bad)
            bad = int(np.count_nonzero(frac >= frac_max))
            if bad:
                stats.anomaly("ts_fraction_out_of_range", bad)
            yield PacketBatch(
                data=buf,
                off=rec + 16,
                cap=incl_a,
                ts=sec * 1_000_000_000 + frac * mult,
                linktype=np.full(count, linktype, dtype=np.int64),
                seq=np.arange(seq, seq + count, dtype=np.int64),
            )
            seq += count
        if too_long >= 0:
            _end(
                reader,
                base + pos,
                f"record length {too_long} exceeds the maximum of {limit} bytes; "
                "file damaged, rest ignored",
            )
            return
        left = n - pos
        if pos:
            buf[:left] = view[pos:n]
        size = left
        base += pos
        if eof:
            if left >= 16:
                incl = incl_at(buf, 8)[0]
                _end(reader, base, f"record cut mid-packet ({left - 16} of {incl} bytes)")
            elif left:
                _end(
                    reader,
                    base,
                    f"incomplete record header at end of file ({left} of 16 bytes): "
                    "file cut short or trailing garbage",
                )
            elif src.error:
                _end(reader, base, "cannot read further")
            return


def _headers(words: list[npt.NDArray[np.unsignedinteger]], rec: I64) -> I64:
    """The four 32-bit fields of the 16-byte record header at each offset of ``rec``
    (``words[k]``: the buffer as words starting at byte ``k``), as an (n, 4) array."""
    out = np.empty((rec.size, 4), dtype=np.int64)
    align, word = rec & 3, rec >> 2
    for k in range(4):
        sel = np.flatnonzero(align == k)
        if sel.size:
            at, view = word[sel], words[k]
            for field in range(4):
                out[sel, field] = view[at + field]
    return out


def _end(reader: CaptureReader, where: int, reason: str) -> None:
    if reader._src.error:
        reason = f"{reason} ({reader._src.error})"
    reader.stats.truncate(f"{reader.path} @ byte {where}", reason)


def _iter_batches(reader: CaptureReader, first_seq: int, size: int) -> Iterator[PacketBatch]:
    """Batches from any capture through ``CaptureReader``'s packet iterator."""
    datas: list[bytes] = []
    ts: list[int] = []
    lts: list[int] = []
    seq = first_seq
    for ts_ns, linktype, data, _orig in reader:
        datas.append(data)
        ts.append(ts_ns)
        lts.append(linktype)
        if len(datas) >= size:
            yield _pack(datas, ts, lts, seq)
            seq += len(datas)
            datas, ts, lts = [], [], []
    if datas:
        yield _pack(datas, ts, lts, seq)


def _pack(datas: list[bytes], ts: list[int], lts: list[int], seq: int) -> PacketBatch:
    cap = np.fromiter((len(d) for d in datas), dtype=np.int64, count=len(datas))
    off = np.zeros(len(datas), dtype=np.int64)
    np.cumsum(cap[:-1], out=off[1:])
    return PacketBatch(
        data=b"".join(datas),
        off=off,
        cap=cap,
        ts=np.array(ts, dtype=np.int64),
        linktype=np.array(lts, dtype=np.int64),
        seq=np.arange(seq, seq + len(datas), dtype=np.int64),
    )


def batches(reader: CaptureReader, first_seq: int = 0) -> Iterator[PacketBatch]:
    """Packet batches of an open ``CaptureReader`` (fills ``reader.stats`` as it goes)."""
    if reader._format == "pcap":
        return _pcap_batches(reader, first_seq, BATCH_BYTES)
    return _iter_batches(reader, first_seq, BATCH_PACKETS)


# -- decoding -------------------------------------------------------------------------------


@dataclass
class Columns:
    """Decoded packets: family (0 IPv4, 1 IPv6), protocol, addresses as (hi, lo) 64-bit
    halves (IPv4 in ``lo``), ports, IP length (bytes), time (UTC ns), sequence number."""

    fam: I64
    proto: I64
    shi: U64
    slo: U64
    dhi: U64
    dlo: U64
    sport: I64
    dport: I64
    length: I64
    ts: I64
    seq: I64


def _be(u8: npt.NDArray[np.uint8], idx: I64, width: int) -> I64:
    """Big-endian unsigned integers of ``width`` bytes (≤ 4) at ``idx`` (indices past the end
    of ``u8`` read its last byte: callers mask those packets out)."""
    top = u8.size - 1
    out = u8[np.minimum(idx, top)].astype(np.int64)
    for k in range(1, width):
        out = (out << 8) | u8[np.minimum(idx + k, top)]
    return out


def _be64(u8: npt.NDArray[np.uint8], idx: I64) -> U64:
    raw = np.ascontiguousarray(u8[idx[:, None] + np.arange(8)])
    return raw.view(">u8")[:, 0].astype(np.uint64)


def _dns_screen(
    u8: npt.NDArray[np.uint8], proto: I64, l4: I64, ip_end: I64, dns: DnsCorrelator
) -> Bool:
    """Segments from port 53 worth handing to ``dns.observe`` one by one.

    The others are counted here in bulk exactly as ``dns_messages`` and ``observe`` would
    count them (truncated, malformed, not a response), so that traffic from port 53 that holds
    no usable answer — most of it, on a busy link — costs no Python call per packet.
    """
    top = u8.size - 1

    def be16(idx: I64) -> I64:
        return (u8[np.minimum(idx, top)].astype(np.int64) << 8) | u8[np.minimum(idx + 1, top)]

    # UDP (RFC 768): length field, then the 12-byte DNS header (QR, opcode, QDCOUNT)
    ulen = be16(l4 + 4)
    msg = l4 + 8
    flags = u8[np.minimum(msg + 2, top)].astype(np.int64)
    answer = ((flags & 0xF8) == 0x80) & (be16(msg + 4) == 1)
    udp = np.select(
        [l4 + 8 > ip_end, ulen < 8, l4 + ulen > ip_end, ulen - 8 < HEADER_BYTES, ~answer],
        [1, 2, 1, 2, 3],
        0,
    )
    # TCP (RFC 7766): the first length-prefixed message must be whole to be worth a look
    start = l4 + ((u8[np.minimum(l4 + 12, top)].astype(np.int64) >> 4) << 2)
    size = be16(start)
    tcp = np.select(
        [
            l4 + 13 > ip_end,
            start >= ip_end,
            start + 2 > ip_end,
            size < HEADER_BYTES,
            start + 2 + size > ip_end,
        ],
        [1, 4, 1, 2, 1],
        0,
    )
    code = np.where(proto == 17, udp, tcp)
    for value, kind in ((1, "truncated"), (2, "malformed"), (3, "ignored")):
        n = int(np.count_nonzero(code == value))
        if n:
            dns.counts[kind] = dns.counts.get(kind, 0) + n
    usable: Bool = code == 0
    return usable


def decode_batch(batch: PacketBatch, decoder: Decoder, dns: DnsCorrelator | None = None) -> Columns:
    """Decode every packet of ``batch``; the uncommon ones through ``decoder`` (in order).

    With ``dns``, the TCP/UDP segments from port 53 are fed to it in packet order (as the
    scalar path does).
    """
    data = batch.data
    n = batch.off.size
    u8 = np.frombuffer(data, dtype=np.uint8)
    if u8.size == 0:
        u8 = np.zeros(1, dtype=np.uint8)
    top = u8.size - 1
    off, cap, lt = batch.off, batch.cap, batch.linktype
    end = off + cap

    def at(idx: I64) -> I64:
        return np.minimum(idx, top)

    # link layer → (ethertype-like kind, L3 offset)
    eth = lt == 1
    sll = lt == 113
    sll2 = lt == 276
    raw = (lt == 101) | (lt == 12) | (lt == 14)
    et = np.zeros(n, dtype=np.int64)
    l3 = off.copy()
    if eth.any() or sll.any() or sll2.any():
        et_pos = np.where(eth, off + 12, np.where(sll, off + 14, off))
        et = np.where(eth | sll | sll2, _be(u8, at(et_pos), 2), 0)
        l3 = np.where(eth, off + 14, np.where(sll, off + 16, np.where(sll2, off + 20, off)))
        tagged = eth & ((et == 0x8100) | (et == 0x88A8) | (et == 0x9100))
        if tagged.any():
            et = np.where(tagged, _be(u8, at(off + 16), 2), et)
            l3 = np.where(tagged, off + 18, l3)
            # a second tag (QinQ) is left to the scalar decoder: et stays a VLAN type
    first = u8[at(l3)].astype(np.int64)
    version = first >> 4
    is4 = np.where(raw, version == 4, (et == 0x0800) | (lt == 228)) & (lt != 229)
    is6 = np.where(raw, version == 6, (et == 0x86DD) | (lt == 229)) & (lt != 228)
    avail = end - l3

    # IPv4
    ihl = (first & 15) << 2
    total4 = _be(u8, at(l3 + 2), 2)
    frag4 = _be(u8, at(l3 + 6), 2) & 0x3FFF
    proto4 = u8[at(l3 + 9)].astype(np.int64)
    ok4 = (
        is4
        & (avail >= 20)
        & (version == 4)
        & (ihl >= 20)
        & (total4 >= ihl)
        & (frag4 == 0)
        & ~np.isin(proto4, _NO_FAST_V4)
    )
    # IPv6
    plen = _be(u8, at(l3 + 4), 2)
    nh = u8[at(l3 + 6)].astype(np.int64)
    ok6 = is6 & (avail >= 40) & (version == 6) & (plen > 0) & ~np.isin(nh, _NO_FAST_V6)

    fast = ok4 | ok6
    proto = np.where(ok4, proto4, nh)
    l4 = np.where(ok4, l3 + ihl, l3 + 40)
    has_ports = fast & np.isin(proto, _PORT_PROTOS) & (l4 + 4 <= end)
    sport = np.where(has_ports, _be(u8, at(l4), 2), 0)
    dport = np.where(has_ports, _be(u8, at(l4 + 2), 2), 0)
    # VXLAN is a tunnel: its inner flow is decoded by the scalar decoder
    fast &= ~(has_ports & (proto == 17) & (dport == VXLAN_PORT))
    ok4 &= fast
    ok6 &= fast

    fam = np.where(ok6, 1, 0).astype(np.int64)
    length = np.where(ok4, total4, 40 + plen)
    shi = np.zeros(n, dtype=np.uint64)
    slo = np.zeros(n, dtype=np.uint64)
    dhi = np.zeros(n, dtype=np.uint64)
    dlo = np.zeros(n, dtype=np.uint64)
    i4 = np.flatnonzero(ok4)
    if i4.size:
        slo[i4] = _be(u8, l3[i4] + 12, 4).astype(np.uint64)
        dlo[i4] = _be(u8, l3[i4] + 16, 4).astype(np.uint64)
    i6 = np.flatnonzero(ok6)
    if i6.size:
        base = l3[i6]
        shi[i6] = _be64(u8, base + 8)
        slo[i6] = _be64(u8, base + 16)
        dhi[i6] = _be64(u8, base + 24)
        dlo[i6] = _be64(u8, base + 32)

    # DNS responses: (packet index, proto, src, dst, (segment, L4 offset, IP end) or None)
    dns_items: list[tuple[int, int, bytes, bytes, tuple[bytes, int, int] | None]] = []
    if dns is not None:
        from_dns = np.flatnonzero(
            fast & has_ports & (sport == DNS_PORT) & ((proto == 17) | (proto == 6))
        )
        if from_dns.size:
            ip_end = np.minimum(end, np.where(ok4, l3 + total4, l3 + 40 + plen))[from_dns]
            usable = _dns_screen(u8, proto[from_dns], l4[from_dns], ip_end, dns)
            from_dns, ip_end = from_dns[usable], ip_end[usable]
            for i, v4, start, seg, stop in zip(
                from_dns.tolist(),
                ok4[from_dns].tolist(),
                l3[from_dns].tolist(),
                l4[from_dns].tolist(),
                ip_end.tolist(),
                strict=True,
            ):
                a, w = (12, 4) if v4 else (8, 16)
                src = bytes(data[start + a : start + a + w])
                dst = bytes(data[start + a + w : start + a + 2 * w])
                segment = bytes(data[seg:stop]) if stop > seg else b""
                dns_items.append((i, int(proto[i]), src, dst, (segment, 0, len(segment))))

    keep = fast
    slow = np.flatnonzero(~fast)
    if slow.size:
        keep = fast.copy()
        decode = decoder.decode
        lts = lt[slow].tolist()
        offs = off[slow].tolist()
        ends = end[slow].tolist()
        for k, i in enumerate(slow.tolist()):
            summary = decode(lts[k], bytes(data[offs[k] : ends[k]]))
            if summary is None:
                continue
            p, src, dst, sp, dp, ln = summary
            if sp == DNS_PORT and dns is not None and (p == 17 or p == 6):
                dns_items.append((i, p, src, dst, decoder.take_dns(summary)))
            keep[i] = True
            proto[i] = p
            sport[i] = sp
            dport[i] = dp
            length[i] = ln
            if len(src) == 4:
                fam[i] = 0
                slo[i] = int.from_bytes(src, "big")
                dlo[i] = int.from_bytes(dst, "big")
            else:
                fam[i] = 1
                s = int.from_bytes(src, "big")
                d = int.from_bytes(dst, "big")
                shi[i], slo[i] = s >> 64, s & 0xFFFFFFFFFFFFFFFF
                dhi[i], dlo[i] = d >> 64, d & 0xFFFFFFFFFFFFFFFF
    if dns is not None and dns_items:
        dns_items.sort(key=lambda item: item[0])
        ts = batch.ts
        for i, p, src, dst, seg_at in dns_items:
            dns.observe_at(int(ts[i]), p, src, dst, seg_at)
    cols = Columns(fam, proto, shi, slo, dhi, dlo, sport, dport, length, batch.ts, batch.seq)
    if keep.all():
        return cols
    sel = np.flatnonzero(keep)
    return Columns(*(getattr(cols, name)[sel] for name in Columns.__dataclass_fields__))


# -- aggregation ----------------------------------------------------------------------------

_KEY = ("proto", "fam", "ahi", "alo", "aport", "bhi", "blo", "bport")
_SUM = ("pk_f", "pk_r", "by_f", "by_r")


def _mix(h: U64, v: U64) -> U64:
    h = (h ^ v) * np.uint64(0x9E3779B97F4A7C15)
    return h ^ (h >> np.uint64(29))


def _group(cols: dict[str, np.ndarray]) -> tuple[I64, I64]:
    """Order and group starts of rows by the key columns (exact)."""
    h = cols["proto"].astype(np.uint64) | (cols["fam"].astype(np.uint64) << np.uint64(8))
    h = h | (cols["aport"].astype(np.uint64) << np.uint64(16))
    h = h | (cols["bport"].astype(np.uint64) << np.uint64(32))
    for name in ("ahi", "alo", "bhi", "blo"):
        h = _mix(h, cols[name])
    order = np.argsort(h)
    hs = h[order]
    n = hs.size
    change = np.empty(n, dtype=np.bool_)
    if n:
        change[0] = True
        change[1:] = hs[1:] != hs[:-1]
    exact = change.copy()
    for name in _KEY:
        c = cols[name][order]
        exact[1:] |= c[1:] != c[:-1]
    if not np.array_equal(exact, change):
        # a hash collision: two keys share a hash; sort on the key columns themselves
        order = np.lexsort(tuple(cols[name] for name in reversed(_KEY)))
        exact = np.zeros(n, dtype=np.bool_)
        if n:
            exact[0] = True
        for name in _KEY:
            c = cols[name][order]
            exact[1:] |= c[1:] != c[:-1]
    return order, np.flatnonzero(exact)


def _reduce(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per key: sums, time range, first sequence number and its direction."""
    if cols["seq"].size == 0:
        return cols
    order, starts = _group(cols)
    out = {name: cols[name][order][starts] for name in (*_KEY, "decided")}
    for name in _SUM:
        out[name] = np.add.reduceat(cols[name][order], starts)
    out["tmin"] = np.minimum.reduceat(cols["tmin"][order], starts)
    out["tmax"] = np.maximum.reduceat(cols["tmax"][order], starts)
    seq = cols["seq"][order]
    first = np.minimum.reduceat(seq, starts)
    counts = np.diff(np.append(starts, seq.size))
    is_first = seq == np.repeat(first, counts)
    out["seq"] = first
    out["first_f"] = cols["first_f"][order][is_first]
    return out


class FlowAggregator:
    """Bidirectional flows from ``Columns`` with ``FlowTable``'s rules (see module docstring)."""

    def __init__(self, local_networks: Iterable[str | Network]) -> None:
        self.table = FlowTable(local_networks)
        nets = self.table.local_networks
        self._v4 = [
            (np.uint64(int(n.netmask)), np.uint64(int(n.network_address)))
            for n in nets
            if n.version == 4
        ]
        self._v6 = []
        for n in nets:
            if n.version == 6:
                mask, addr = int(n.netmask), int(n.network_address)
                self._v6.append(
                    (
                        np.uint64(mask >> 64),
                        np.uint64(mask & 0xFFFFFFFFFFFFFFFF),
                        np.uint64(addr >> 64),
                        np.uint64(addr & 0xFFFFFFFFFFFFFFFF),
                    )
                )
        self._parts: list[dict[str, np.ndarray]] = []
        self._rows = 0

    def _rank(self, fam: I64, hi: U64, lo: U64) -> npt.NDArray[np.int8]:
        rank = np.zeros(fam.size, dtype=np.int8)
        v4 = fam == 0
        for mask, net in self._v4:
            rank[v4 & ((lo & mask) == net)] = 2
        if self._v6:
            v6 = ~v4
            for mh, ml, nh, nl in self._v6:
                rank[v6 & ((hi & mh) == nh) & ((lo & ml) == nl)] = 2
        bucket = np.where(v4, lo >> np.uint64(16), hi >> np.uint64(48)).astype(np.int64)
        cand = (rank == 0) & np.where(v4, _SPECIAL4[bucket & 0xFFFF], _SPECIAL6[bucket & 0xFFFF])
        idx = np.flatnonzero(cand)
        if idx.size:
            keys = np.stack([fam[idx].astype(np.uint64), hi[idx], lo[idx]], axis=1)
            uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
            exact = self.table._rank
            ranks = np.array(
                [
                    exact(
                        int(lo_).to_bytes(4, "big")
                        if f == 0
                        else ((int(hi_) << 64) | int(lo_)).to_bytes(16, "big")
                    )
                    for f, hi_, lo_ in uniq.tolist()
                ],
                dtype=np.int8,
            )
            rank[idx] = ranks[inverse.reshape(-1)]
        return rank

    def add(self, c: Columns) -> None:
        """Count the packets of ``c``."""
        if c.seq.size == 0:
            return
        rs = self._rank(c.fam, c.shi, c.slo)
        rd = self._rank(c.fam, c.dhi, c.dlo)
        decided = rs != rd
        # for equal ranks: A is the smaller (address, port) endpoint
        smaller = (c.shi < c.dhi) | (
            (c.shi == c.dhi) & ((c.slo < c.dlo) | ((c.slo == c.dlo) & (c.sport <= c.dport)))
        )
        fwd = np.where(decided, rs > rd, smaller)
        cols: dict[str, np.ndarray] = {
            "proto": c.proto,
            "fam": c.fam,
            "ahi": np.where(fwd, c.shi, c.dhi),
            "alo": np.where(fwd, c.slo, c.dlo),
            "aport": np.where(fwd, c.sport, c.dport),
            "bhi": np.where(fwd, c.dhi, c.shi),
            "blo": np.where(fwd, c.dlo, c.slo),
            "bport": np.where(fwd, c.dport, c.sport),
            "decided": decided,
            "pk_f": fwd.astype(np.int64),
            "pk_r": (~fwd).astype(np.int64),
            "by_f": np.where(fwd, c.length, 0),
            "by_r": np.where(fwd, 0, c.length),
            "tmin": c.ts,
            "tmax": c.ts,
            "seq": c.seq,
            "first_f": fwd,
        }
        part = _reduce(cols)
        self._parts.append(part)
        self._rows += part["seq"].size
        if len(self._parts) > 1 and self._rows > 4_000_000:
            self._merge()

    def _merge(self) -> dict[str, np.ndarray]:
        if not self._parts:
            return {}
        if len(self._parts) == 1:
            merged = self._parts[0]
        else:
            merged = _reduce(
                {name: np.concatenate([p[name] for p in self._parts]) for name in self._parts[0]}
            )
        self._parts = [merged]
        self._rows = merged["seq"].size
        return merged

    def __len__(self) -> int:
        return self._merge()["seq"].size if self._parts else 0

    def flows(self) -> list[Flow]:
        """Every flow, in creation order (first packet first)."""
        m = self._merge()
        if not m:
            return []
        order = np.argsort(m["seq"], kind="stable")
        a_local = m["decided"][order] | m["first_f"][order]
        cols = {name: m[name][order] for name in m}
        # the local side's values first, the remote side's second, per flow
        lhi = np.where(a_local, cols["ahi"], cols["bhi"]).tolist()
        llo = np.where(a_local, cols["alo"], cols["blo"]).tolist()
        rhi = np.where(a_local, cols["bhi"], cols["ahi"]).tolist()
        rlo = np.where(a_local, cols["blo"], cols["alo"]).tolist()
        lport = np.where(a_local, cols["aport"], cols["bport"]).tolist()
        rport = np.where(a_local, cols["bport"], cols["aport"]).tolist()
        p_out = np.where(a_local, cols["pk_f"], cols["pk_r"]).tolist()
        p_in = np.where(a_local, cols["pk_r"], cols["pk_f"]).tolist()
        b_out = np.where(a_local, cols["by_f"], cols["by_r"]).tolist()
        b_in = np.where(a_local, cols["by_r"], cols["by_f"]).tolist()
        fam_col = cols["fam"]
        unknown = (
            (self._rank(fam_col, cols["ahi"], cols["alo"]) < 2)
            & (self._rank(fam_col, cols["bhi"], cols["blo"]) < 2)
        ).tolist()
        rows = zip(
            cols["proto"].tolist(),
            cols["fam"].tolist(),
            lhi,
            llo,
            lport,
            rhi,
            rlo,
            rport,
            p_out,
            p_in,
            b_out,
            b_in,
            cols["tmin"].tolist(),
            cols["tmax"].tolist(),
            unknown,
            strict=True,
        )
        return [
            Flow(
                protocol=proto,
                local_ip=_text(fam, l_hi, l_lo),
                local_port=l_port,
                remote_ip=_text(fam, r_hi, r_lo),
                remote_port=r_port,
                packets_out=po,
                packets_in=pi,
                bytes_out=bo,
                bytes_in=bi,
                first_seen=ns_to_datetime(t0),
                last_seen=ns_to_datetime(t1),
                orientation_unknown=unk,
            )
            for proto, fam, l_hi, l_lo, l_port, r_hi, r_lo, r_port, po, pi, bo, bi, t0, t1, unk in (
                rows
            )
        ]


def _text(fam: int, hi: int, lo: int) -> str:
    if fam == 0:
        return socket.inet_ntoa(lo.to_bytes(4, "big"))
    return addr_text(((hi << 64) | lo).to_bytes(16, "big"))


def read_flows_vector(
    paths: Iterable[str | Path],
    local_networks: Iterable[str | Network],
    *,
    max_flows: int,
    dns: DnsOptions | None = None,
) -> tuple[list[Flow], ReadStats] | None:
    """``read_flows`` on the vectorized path; ``None`` when more than ``max_flows`` flows
    (the caller then reads again on the scalar path, which evicts exactly as ``FlowTable``).
    ``dns``: name the flows from the DNS responses seen (``sentinel.flows.dns``).

    Raises ``CaptureError`` as ``CaptureReader`` does.
    """
    agg = FlowAggregator(local_networks)
    decoder = Decoder()
    names = DnsCorrelator(dns) if dns is not None else None
    stats = ReadStats()
    seq = 0
    for path in paths:
        with CaptureReader(path) as reader:
            for batch in batches(reader, seq):
                seq += batch.seq.size
                agg.add(decode_batch(batch, decoder, names))
            stats.merge(reader.stats)
    if len(agg) > max_flows:
        return None
    flows = agg.flows()
    stats.not_ip = decoder.not_ip
    stats.malformed = decoder.malformed
    stats.unsupported_linktype = decoder.unsupported_linktype
    stats.fragments_unmatched = decoder.fragments_unmatched
    stats.tunnels = dict(decoder.tunnels)
    if names is not None:
        flows = names.attach(flows)
        stats.dns = dict(names.counts)
    return flows, stats
