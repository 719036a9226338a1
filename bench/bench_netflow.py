"""NetFlow v5/v9/IPFIX decoding throughput: flow records decoded per CPU second.

Usage::

    .venv/bin/python bench/bench_netflow.py [-n 1000000] [--seed 1]

Two inputs, each decoded by one ``sentinel.flows.netflow.NetflowDecoder`` after its templates
were learnt (as a collector that has been running a while):

1. ``corpus``: the data-carrying export datagrams of the corpus captures (pmacct 100, 101, 104,
   111 — Cisco ASR9k IPFIX and NetFlow v9 templates of 28–36 fields —, akvorado's NetFlow v5
   and ipfixprobe biflows; read in place), replayed until ``-n`` records were decoded;
2. ``synthetic``: a seeded IPFIX stream of one typical template (IPv4 5-tuple, ToS, TCP flags,
   interfaces, octet/packet deltas, flowStart/EndMilliseconds: 45-byte records, 30 per
   datagram, like a router's 1,400-byte exports), ``-n`` records.

For each: CPU seconds (``time.process_time``) of ``feed`` alone, and of ``feed`` plus
``FlowRecord.to_flow`` (what the collector does before judging), and records per CPU second.
pmacct's ``nfacctd`` is timed beside it only when installed (Debian package ``pmacct``);
otherwise the script says so. Prints a table; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import random
import shutil
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sentinel.flows.netflow import NetflowDecoder, Orienter  # noqa: E402
from sentinel.flows.netflow_collector import ExportPcapStats, export_datagrams  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "pcap"
FILES = [
    "pmacct/100-IPFIXv10-CISCO.pcap",
    "pmacct/101-NFv9-CISCO-cust_primitives.pcap",
    "pmacct/104-IPFIXv10-IPv6-CISCO-sampling_option.pcap",
    "pmacct/111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources.traffic-00.pcap",
    "pmacct/111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources.traffic-01.pcap",
    "akvorado/nfv5.pcap",
    "akvorado/ipfixprobe-templates.pcap",
    "akvorado/ipfixprobe-data.pcap",
]
TEMPLATE = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (5, 1), (6, 1), (10, 4), (14, 4)]
TEMPLATE += [(1, 8), (2, 8), (152, 8), (153, 8)]
TEMPLATE_ID = 300


def corpus_stream() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(every datagram, in file order; the ones that carry flow records)."""
    stats = ExportPcapStats()
    everything = [
        (exporter, payload)
        for name in FILES
        for _ts, exporter, payload in export_datagrams(CORPUS / name, stats)
    ]
    probe = NetflowDecoder()
    for exporter, payload in everything:
        probe.feed(payload, exporter)
    data = [(e, p) for e, p in everything if probe.feed(p, e).records]
    return everything, data


def synthetic_stream(records: int, seed: int) -> tuple[bytes, list[bytes]]:
    rng = random.Random(seed)
    fields = b"".join(struct.pack("!HH", e, n) for e, n in TEMPLATE)
    tset = struct.pack("!HH", 2, 8 + len(fields)) + struct.pack("!HH", TEMPLATE_ID, len(TEMPLATE))
    template = _ipfix(0, tset + fields)
    rec = struct.Struct("!4s4sHHBBBIIQQQQ")
    out: list[bytes] = []
    seq = 0
    now_ms = 1_767_225_600_000
    while seq < records:
        n = min(30, records - seq)
        body = b"".join(
            rec.pack(
                bytes([10, 20, 0, rng.randrange(1, 255)]),
                rng.randbytes(4),
                rng.randrange(1024, 65535),
                rng.choice((443, 80, 53, 5000)),
                rng.choice((6, 17)),
                0,
                0x18,
                rng.randrange(1, 64),
                rng.randrange(1, 64),
                rng.randrange(40, 10_000_000),
                rng.randrange(1, 10_000),
                now_ms - rng.randrange(0, 60_000),
                now_ms,
            )
            for _ in range(n)
        )
        out.append(_ipfix(seq, struct.pack("!HH", TEMPLATE_ID, 4 + len(body)) + body))
        seq += n
    return template, out


def _ipfix(seq: int, sets: bytes) -> bytes:
    return struct.pack("!HHIII", 10, 16 + len(sets), 1_767_225_600, seq, 1) + sets


def measure(
    warmup: list[tuple[str, bytes]], data: list[tuple[str, bytes]], records: int, flows: bool
) -> tuple[int, int, float]:
    decoder = NetflowDecoder()
    for exporter, payload in warmup:
        decoder.feed(payload, exporter)
    orient = Orienter(["10.0.0.0/8"])
    decoded = datagrams = 0
    start = time.process_time()
    while decoded < records:
        for exporter, payload in data:
            result = decoder.feed(payload, exporter)
            if flows:
                for r in result.records:
                    r.to_flow(orient)
            decoded += len(result.records)
            datagrams += 1
            if decoded >= records:
                break
    return datagrams, decoded, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="records per measurement")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    everything, data = corpus_stream()
    template, synthetic = synthetic_stream(args.n, args.seed)
    inputs = {
        "corpus (pmacct, akvorado)": (everything, data),
        "synthetic IPFIX, 13 fields": (
            [("192.0.2.1", template)],
            [("192.0.2.1", d) for d in synthetic],
        ),
    }
    print(
        f"{'input':<28} {'step':<18} {'datagrams':>9} {'records':>9} {'CPU s':>7} "
        f"{'records/CPU s':>14}"
    )
    for name, (warm, stream) in inputs.items():
        for flows in (False, True):
            datagrams, decoded, cpu = measure(warm, stream, args.n, flows)
            step = "feed + to_flow" if flows else "feed"
            rate = decoded / cpu if cpu > 0 else float("inf")
            print(f"{name:<28} {step:<18} {datagrams:>9} {decoded:>9} {cpu:>7.2f} {rate:>14,.0f}")
    if shutil.which("nfacctd") is None:
        print(
            "pmacct nfacctd: not installed (Debian package 'pmacct'); no side-by-side figure",
        )
    else:
        print(f"pmacct nfacctd at {shutil.which('nfacctd')}: side-by-side run not implemented")


if __name__ == "__main__":
    main()
