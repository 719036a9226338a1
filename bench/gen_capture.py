"""Seeded synthetic capture for the pcap benchmarks: mixed IPv4/IPv6, TCP/UDP, many countries.

    .venv/bin/python bench/gen_capture.py OUT.pcap [--packets 1000000] [--flows 40000]
        [--seed 7] [--geoip .cache/dbip-city-lite-2023-04.mmdb]

Writes a little-endian microsecond pcap (LINKTYPE_ETHERNET) of ``--packets`` frames spread over
``--flows`` bidirectional flows between local hosts (10.20.0.0/24, fd00:20::/64 — the shipped
policy's ``local_networks``) and public remote addresses. Remote addresses are drawn from the
GeoIP database the bench uses: random public addresses are looked up and kept only when the
database gives them an ISO country (and, for IPv6, when the address is in space IANA allocated:
DB-IP fills unallocated space with countries, which Sentinel refuses and pmacct keeps). Each
flow then picks a country (weight ∝ √addresses found, so small countries show up too) and an
address of it. About 30 % of flows are IPv6, 70 % TCP,
10 % of frames carry an 802.1Q tag; payloads are 0 (20 %) or 100–1460 bytes; frames are about
680 bytes on average (≈ 700 MB for 10^6 packets). Headers are built with numpy per chunk, not
per packet; IPv4 header checksums are valid. The same seed gives the same bytes.

Nothing here goes into git: write the file to a temporary directory or ``.cache/``.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from pathlib import Path

import maxminddb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sentinel.geo.database import GeoDatabase

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GEOIP = REPO / ".cache" / "dbip-city-lite-2023-04.mmdb"
LOCAL_V4 = "10.20.0.0/24"
LOCAL_V6 = "fd00:20::/64"
#: first 16 bits of IPv6 remote candidates (RIR blocks; 2001:0::/23, 2002::/16 excluded below)
V6_PREFIXES = [0x2001, 0x2400, 0x2401, 0x2402, 0x2403, 0x2404, 0x2405, 0x2406, 0x2407]
V6_PREFIXES += [0x2600, 0x2601, 0x2602, 0x2603, 0x2604, 0x2605, 0x2606, 0x2607, 0x2610]
V6_PREFIXES += [0x2800, 0x2801, 0x2803, 0x2804, 0x2A00, 0x2A01, 0x2A02, 0x2A03, 0x2A04]
V6_PREFIXES += [0x2A05, 0x2A06, 0x2A07, 0x2A09, 0x2A0A, 0x2A0B, 0x2A0C, 0x2A0D, 0x2A0E, 0x2C0F]
CHUNK = 100_000


def _special(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return bool(
        addr.is_private
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_unspecified
        or (isinstance(addr, ipaddress.IPv4Address) and addr.is_global is False)
        or (isinstance(addr, ipaddress.IPv6Address) and (addr.teredo or addr.sixtofour))
    )


def remote_pool(
    geoip: Path, rng: np.random.Generator, tries_v4: int = 120_000, tries_v6: int = 120_000
) -> dict[int, dict[str, list[bytes]]]:
    """``{4 or 6: {country: [packed address, ...]}}`` of public addresses with a country."""
    pool: dict[int, dict[str, list[bytes]]] = {4: {}, 6: {}}
    v4 = rng.integers(1 << 24, 224 << 24, size=tries_v4, dtype=np.uint64)
    hi = rng.choice(np.array(V6_PREFIXES, dtype=np.uint64), size=tries_v6)
    v6_hi = (hi << np.uint64(48)) | rng.integers(0, 1 << 48, size=tries_v6, dtype=np.uint64)
    v6_lo = rng.integers(0, 1 << 63, size=tries_v6, dtype=np.uint64)
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.IPv4Address(int(a)) for a in v4
    ]
    candidates += [
        ipaddress.IPv6Address((int(h) << 64) | int(lo)) for h, lo in zip(v6_hi, v6_lo, strict=True)
    ]
    with maxminddb.open_database(str(geoip)) as reader, GeoDatabase.open(geoip) as geo:
        for addr in candidates:
            if _special(addr):
                continue
            record = reader.get(str(addr))
            if not isinstance(record, dict):
                continue
            country = (record.get("country") or {}).get("iso_code")
            if not isinstance(country, str) or len(country) != 2 or country in ("EU", "AP"):
                continue
            # IPv6 space IANA never allocated gets fill-in countries in DB-IP; Sentinel calls it
            # unallocated, pmacct takes the database's word: keep such addresses out
            if addr.version == 6 and geo.lookup(addr).country != country:
                continue
            pool[addr.version].setdefault(country, []).append(addr.packed)
    return pool


def make_flows(
    n_flows: int, rng: np.random.Generator, pool: dict[int, dict[str, list[bytes]]]
) -> dict[str, np.ndarray]:
    """Columns describing each flow: version, proto, local/remote address bytes, ports."""
    v6 = rng.random(n_flows) < 0.3
    proto = np.where(rng.random(n_flows) < 0.7, 6, 17).astype(np.uint8)
    local = np.zeros((n_flows, 16), dtype=np.uint8)
    remote = np.zeros((n_flows, 16), dtype=np.uint8)
    for version, mask in ((4, ~v6), (6, v6)):
        idx = np.flatnonzero(mask)
        countries = sorted(pool[version])
        weights = np.sqrt([len(pool[version][c]) for c in countries])
        picks = rng.choice(len(countries), size=idx.size, p=weights / weights.sum())
        width = 4 if version == 4 else 16
        for row, c in zip(idx, picks, strict=True):
            addrs = pool[version][countries[c]]
            remote[row, :width] = np.frombuffer(addrs[rng.integers(len(addrs))], dtype=np.uint8)
        host = rng.integers(1, 250, size=idx.size).astype(np.uint8)
        if version == 4:
            local[idx, :4] = np.frombuffer(ipaddress.ip_network(LOCAL_V4)[0].packed, np.uint8)
            local[idx, 3] = host
        else:
            local[idx] = np.frombuffer(ipaddress.ip_network(LOCAL_V6)[0].packed, np.uint8)
            local[idx, 15] = host
    lport = rng.integers(1024, 65535, size=n_flows).astype(np.uint16)
    rport = rng.choice(np.array([443, 80, 53, 5000, 8443, 22], dtype=np.uint16), size=n_flows)
    return {"v6": v6, "proto": proto, "local": local, "remote": remote, "lport": lport,
            "rport": rport}  # fmt: skip


def _be16(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.uint32)
    return np.stack([(v >> 8) & 0xFF, v & 0xFF], axis=1).astype(np.uint8)


def _ipv4_checksum(hdr: np.ndarray) -> np.ndarray:
    words = hdr[:, 0::2].astype(np.uint32) << 8 | hdr[:, 1::2].astype(np.uint32)
    s = words.sum(axis=1)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s & 0xFFFF).astype(np.uint32)


def chunk_bytes(
    first: int, n: int, rng: np.random.Generator, flows: dict[str, np.ndarray], ts0_us: int
) -> tuple[bytes, int]:
    """Records ``first .. first+n-1`` as pcap bytes; returns (bytes, last timestamp in µs)."""
    n_flows = flows["proto"].size
    # a skewed choice of flow per packet (some flows are much busier than others)
    fidx = (rng.pareto(1.2, size=n) * n_flows / 20).astype(np.int64) % n_flows
    # every flow gets at least one packet: packet k < n_flows belongs to flow k
    seq = np.arange(first, first + n)
    fidx = np.where(seq < n_flows, seq, fidx)
    out = rng.random(n) < 0.55
    vlan = rng.random(n) < 0.1
    payload = np.where(rng.random(n) < 0.2, 0, rng.integers(100, 1461, size=n)).astype(np.int64)
    v6 = flows["v6"][fidx]
    proto = flows["proto"][fidx]
    l4len = np.where(proto == 6, 20, 8) + payload
    iplen = np.where(v6, 40, 20) + l4len
    ethlen = 14 + np.where(vlan, 4, 0)
    frame = ethlen + iplen
    rec = 16 + frame
    offs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(rec, out=offs[1:])
    buf = np.zeros(int(offs[-1]), dtype=np.uint8)
    starts = offs[:-1]
    ts = ts0_us + np.cumsum(rng.integers(1, 20, size=n))
    hdr = np.zeros((n, 4), dtype="<u4")
    hdr[:, 0] = ts // 1_000_000
    hdr[:, 1] = ts % 1_000_000
    hdr[:, 2] = frame
    hdr[:, 3] = frame
    buf[starts[:, None] + np.arange(16)] = hdr.view(np.uint8).reshape(n, 16)
    eth = np.zeros((n, 18), dtype=np.uint8)
    eth[:, 0:6] = (2, 0, 0, 0, 0, 2)
    eth[:, 6:12] = (2, 0, 0, 0, 0, 1)
    etype = np.where(v6, 0x86DD, 0x0800)
    eth[:, 12:14] = np.where(vlan[:, None], _be16(np.full(n, 0x8100)), _be16(etype))
    eth[:, 14:16] = _be16(np.full(n, 42))
    eth[:, 16:18] = _be16(etype)
    d = starts + 16
    for width, mask in ((14, ~vlan), (18, vlan)):
        i = np.flatnonzero(mask)
        buf[d[i, None] + np.arange(width)] = eth[i, :width]
    ip = d + ethlen
    local, remote = flows["local"][fidx], flows["remote"][fidx]
    src = np.where(out[:, None], local, remote)
    dst = np.where(out[:, None], remote, local)
    lport, rport = flows["lport"][fidx], flows["rport"][fidx]
    sport = np.where(out, lport, rport)
    dport = np.where(out, rport, lport)
    for is6 in (False, True):
        i = np.flatnonzero(v6 == is6)
        if is6:
            h = np.zeros((i.size, 40), dtype=np.uint8)
            h[:, 0] = 0x60
            h[:, 4:6] = _be16(iplen[i] - 40)
            h[:, 6] = proto[i]
            h[:, 7] = 64
            h[:, 8:24] = src[i]
            h[:, 24:40] = dst[i]
        else:
            h = np.zeros((i.size, 20), dtype=np.uint8)
            h[:, 0] = 0x45
            h[:, 2:4] = _be16(iplen[i])
            h[:, 4:6] = _be16((first + i) & 0xFFFF)
            h[:, 6] = 0x40  # don't fragment
            h[:, 8] = 64
            h[:, 9] = proto[i]
            h[:, 12:16] = src[i, :4]
            h[:, 16:20] = dst[i, :4]
            h[:, 10:12] = _be16(_ipv4_checksum(h))
        buf[ip[i, None] + np.arange(h.shape[1])] = h
    l4 = ip + np.where(v6, 40, 20)
    for is_tcp in (False, True):
        i = np.flatnonzero((proto == 6) == is_tcp)
        width = 20 if is_tcp else 8
        h = np.zeros((i.size, width), dtype=np.uint8)
        h[:, 0:2] = _be16(sport[i])
        h[:, 2:4] = _be16(dport[i])
        if is_tcp:
            h[:, 4:8] = rng.integers(0, 256, size=(i.size, 4), dtype=np.uint8)
            h[:, 12] = 0x50
            h[:, 13] = 0x10  # ACK
            h[:, 14:16] = _be16(np.full(i.size, 64240))
        else:
            h[:, 4:6] = _be16(l4len[i])
        buf[l4[i, None] + np.arange(width)] = h
    return buf.tobytes(), int(ts[-1])


def generate(
    path: Path, packets: int, n_flows: int, seed: int, geoip: Path = DEFAULT_GEOIP
) -> dict[str, int]:
    """Write the capture; returns ``{"packets", "flows", "bytes", "countries"}``."""
    if not geoip.is_file():
        raise SystemExit(f"{geoip}: missing; fetch it with `python -m sentinel.demo.fetch_geoip`")
    rng = np.random.default_rng(seed)
    pool = remote_pool(geoip, rng)
    flows = make_flows(n_flows, rng, pool)
    ts = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs
    with path.open("wb") as fh:
        fh.write(np.array([0xA1B2C3D4], "<u4").tobytes())
        fh.write(np.array([2, 4], "<u2").tobytes())
        fh.write(np.array([0, 0, 65535, 1], "<u4").tobytes())
        done = 0
        while done < packets:
            n = min(CHUNK, packets - done)
            data, ts = chunk_bytes(done, n, rng, flows, ts)
            fh.write(data)
            done += n
    countries = len(pool[4].keys() | pool[6].keys())
    return {"packets": packets, "flows": n_flows, "bytes": path.stat().st_size,
            "countries": countries}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--geoip", type=Path, default=DEFAULT_GEOIP)
    args = parser.parse_args()
    t0 = time.perf_counter()
    info = generate(args.out, args.packets, args.flows, args.seed, args.geoip)
    print(
        f"{args.out}: {info['packets']} packets, {info['flows']} flows, "
        f"{info['bytes'] / 1e6:.1f} MB, remote countries in pool {info['countries']}, "
        f"{time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
