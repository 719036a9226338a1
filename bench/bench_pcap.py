"""Benchmark: read + decode + flow table, and the full `egress check` path, on a synthetic capture.

    .venv/bin/python bench/bench_pcap.py [--packets 1000000] [--seed 7] [--keep FILE]

Generates (seeded) a pcap of N Ethernet frames, mixed IPv4/IPv6 TCP/UDP between local hosts
(10.20.0.0/24, fd00:20::/64) and many remote addresses; times `read_flows`, then `read_flows` +
`evaluate_all` with the shipped policy and a GeoIP test database; then the largest corpus capture.
Prints packets/s, flows and peak RSS. No asserts.
"""

from __future__ import annotations

import argparse
import random
import resource
import struct
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sentinel.flows import read_flows  # noqa: E402
from sentinel.geo import GeoDatabase  # noqa: E402
from sentinel.policy.egress import EgressPolicy, evaluate_all  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
LOCAL = ["10.20.0.0/24", "fd00:20::/64"]


def generate(path: Path, packets: int, seed: int) -> None:
    """Write ``packets`` frames to ``path`` (pcap, µs, Ethernet)."""
    rnd = random.Random(seed)
    n_flows = max(1, packets // 25)
    flows = []
    for _ in range(n_flows):
        v6 = rnd.random() < 0.3
        proto = 6 if rnd.random() < 0.7 else 17
        if v6:
            local = bytes.fromhex("fd000020000000000000000000000000")[:15] + bytes(
                [rnd.randrange(1, 250)]
            )
            remote = bytes([0x2A, 0x02, rnd.randrange(256), rnd.randrange(256)]) + rnd.randbytes(12)
        else:
            local = bytes([10, 20, 0, rnd.randrange(1, 250)])
            remote = bytes(
                [
                    rnd.randrange(1, 224),
                    rnd.randrange(256),
                    rnd.randrange(256),
                    rnd.randrange(1, 255),
                ]
            )
        flows.append(
            (v6, proto, local, remote, rnd.randrange(1024, 65535), rnd.choice([443, 80, 53, 5000]))
        )
    eth4 = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    eth6 = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x86\xdd"
    ts = 1_767_225_600_000_000
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        out = []
        for i in range(packets):
            v6, proto, local, remote, lport, rport = flows[rnd.randrange(n_flows)]
            outbound = rnd.random() < 0.5
            src, dst = (local, remote) if outbound else (remote, local)
            sport, dport = (lport, rport) if outbound else (rport, lport)
            payload = 0 if rnd.random() < 0.3 else rnd.randrange(40, 1400)
            l4 = struct.pack("!HH", sport, dport) + (
                b"\x00" * 16 if proto == 6 else struct.pack("!HH", 8 + payload, 0)
            )
            body = l4 + b"\x00" * payload
            if v6:
                ip = struct.pack("!IHBB", 0x60000000, len(body), proto, 64) + src + dst
                frame = eth6 + ip + body
            else:
                ip = struct.pack(
                    "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), i & 0xFFFF, 0, 64, proto, 0, src, dst
                )
                frame = eth4 + ip + body
            ts += rnd.randrange(1, 20)
            out.append(
                struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame))
            )
            out.append(frame)
            if len(out) >= 20_000:
                fh.write(b"".join(out))
                out.clear()
        fh.write(b"".join(out))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="write the capture here")
    args = parser.parse_args()
    policy = EgressPolicy.load(REPO / "rules" / "egress-policy.yaml")
    now = datetime(2026, 1, 2, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.pcap"
        t0 = time.perf_counter()
        generate(path, args.packets, args.seed)
        print(
            f"generated {args.packets} packets ({path.stat().st_size / 1e6:.1f} MB) "
            f"in {time.perf_counter() - t0:.1f} s"
        )

        t0 = time.perf_counter()
        flows, stats = read_flows([path], LOCAL)
        dt = time.perf_counter() - t0
        print(
            f"read+decode+flow table: {stats.packets} packets, {len(flows)} flows, "
            f"{dt:.2f} s, {stats.packets / dt:,.0f} packets/s"
        )

        with GeoDatabase.open(CORPUS / "geoip" / "GeoLite2-City-Test.mmdb") as geo:
            t0 = time.perf_counter()
            flows, stats = read_flows([path], LOCAL)
            verdicts = evaluate_all(flows, policy, geo, now)
            dt = time.perf_counter() - t0
        violations = sum(1 for v in verdicts if v.verdict == "violation")
        print(
            f"full egress check path: {stats.packets} packets, {len(flows)} flows, "
            f"{violations} violations, {dt:.2f} s, {stats.packets / dt:,.0f} packets/s"
        )

    captures = [
        p for p in (CORPUS / "pcap").rglob("*") if ".pcap" in p.name and not p.name.endswith(".zst")
    ]
    by_size = max(captures, key=lambda p: p.stat().st_size)
    by_packets = CORPUS / "pcap" / "pcapplusplus" / "DnsPackets.pcap"  # 464 packets, the most
    for capture in (by_size, by_packets):
        rounds = 200
        t0 = time.perf_counter()
        for _ in range(rounds):
            flows, stats = read_flows([capture], LOCAL)
        dt = time.perf_counter() - t0
        print(
            f"corpus {capture.relative_to(CORPUS)} ({capture.stat().st_size} bytes, "
            f"{stats.packets} packets, {len(flows)} flows) x{rounds}: "
            f"{stats.packets * rounds / dt:,.0f} packets/s"
        )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
