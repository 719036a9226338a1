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
Then, when pmacct's ``nfacctd`` is installed (Debian package ``pmacct``; otherwise the script
says so), the synthetic stream is written to a pcap and read whole by both:
``read_export_pcap`` (pcap reader, scapy for the link/IP/UDP layers, the decoder) and
``nfacctd -I`` (its savefile reader, decoder and print plugin aggregating by source address
and protocol; CPU of
the daemon and its plugin process, from ``RUSAGE_CHILDREN``), and their packet totals are
compared. Prints tables; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sentinel.flows.netflow import NetflowDecoder, Orienter  # noqa: E402
from sentinel.flows.netflow_collector import (  # noqa: E402
    ExportPcapStats,
    export_datagrams,
    read_export_pcap,
)

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
    nfacctd = shutil.which("nfacctd")
    if nfacctd is None:
        print("pmacct nfacctd: not installed (Debian package 'pmacct'); no side-by-side figure")
        return
    with tempfile.TemporaryDirectory(prefix="bench-netflow-") as tmp:
        pcap = Path(tmp) / "exports.pcap"
        write_pcap(pcap, [template, *synthetic])
        print(f"\nwhole file, {pcap.stat().st_size // 1_000_000} MB pcap of the synthetic stream:")
        print(f"{'tool':<40} {'records':>9} {'packets':>11} {'CPU s':>7} {'records/CPU s':>14}")
        before = resource.getrusage(resource.RUSAGE_SELF)
        records, _stats = read_export_pcap([pcap])
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        ours = sum(r.packets for r in records)
        name = "sentinel read_export_pcap (scapy frames)"
        print(f"{name:<40} {len(records):>9} {ours:>11} {cpu:>7.2f} {len(records) / cpu:>14,.0f}")
        out = Path(tmp) / "nfacctd.csv"
        conf = Path(tmp) / "nfacctd.conf"
        conf.write_text(
            "daemonize: false\n"
            f"pcap_savefile: {pcap}\n"
            "plugins: print\nprint_output: csv\n"
            f"print_output_file: {out}\nprint_refresh_time: 600\n"
            # few rows (its print cache holds 16,411 by default and loses the rest silently);
            # large plugin buffers so the core does not drop data the plugin has not read
            "aggregate: src_host,proto\n"
            "plugin_buffer_size: 10240\nplugin_pipe_size: 10240000\n"
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([nfacctd, "-f", str(conf)], check=True, capture_output=True, timeout=600)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        header, *rows = out.read_text().splitlines()
        column = header.split(",").index("PACKETS")
        theirs = sum(int(row.split(",")[column]) for row in rows)
        name = "pmacct nfacctd -I (aggregated rows)"
        print(f"{name:<40} {len(records):>9} {theirs:>11} {cpu:>7.2f} {len(records) / cpu:>14,.0f}")
        print(
            f"packet totals {'equal' if ours == theirs else 'DIFFER'}: sentinel {ours}, "
            f"nfacctd {theirs} ({len(rows)} aggregated rows)"
        )


def write_pcap(path: Path, payloads: list[bytes]) -> None:
    """A classic pcap (Ethernet, IPv4, UDP 192.0.2.1:40000 → 127.0.0.1:2055) of ``payloads``."""
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, payload in enumerate(payloads):
            udp = struct.pack("!HHHH", 40000, 2055, 8 + len(payload), 0) + payload
            ip = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                bytes([192, 0, 2, 1]), bytes([127, 0, 0, 1]),
            )  # fmt: skip
            words = struct.unpack("!10H", ip)
            total = sum(words)
            total = (total & 0xFFFF) + (total >> 16)
            ip = ip[:10] + struct.pack("!H", ~total & 0xFFFF) + ip[12:]
            frame = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00" + ip + udp
            fh.write(struct.pack("<IIII", 1_767_225_600 + i // 1000, 0, len(frame), len(frame)))
            fh.write(frame)


if __name__ == "__main__":
    main()
