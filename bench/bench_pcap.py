"""Benchmark: `sentinel egress check` against pmacct, softflowd→nfdump and tshark, one capture.

    .venv/bin/python bench/bench_pcap.py [--packets 1000000] [--flows 40000] [--seed 7]
        [--capture FILE] [--geoip .cache/dbip-city-lite-2023-04.mmdb]
        [--live | --live-only] [--no-tools]

1. Generates the seeded synthetic capture (``bench/gen_capture.py``: ~700 MB for 10^6 packets,
   40,000 flows, IPv4/IPv6, TCP/UDP, remote addresses in ~200 countries of the GeoIP database) in
   a temporary directory, or takes ``--capture``.
2. In-process: ``read_flows`` on the vectorized and the scalar path (CPU seconds, packets/s),
   then where the CPU of ``sentinel egress check --json`` goes: start-up and imports (a separate
   interpreter), policy load and GeoIP open, GeoIP validate, ``read_flows``,
   ``EgressPolicy.evaluate_many``, JSON lines — each step's CPU seconds and share.
3. Side by side, each tool a subprocess on the same file (wall and CPU seconds from
   ``RUSAGE_CHILDREN``, packets per wall and per CPU second, peak RSS of the largest process):
   * ``sentinel egress check --json`` with the shipped policy and the same GeoIP database;
   * ``pmacctd`` reading the file (``pcap_savefile``), ``geoipv2_file`` = the same database, two
     print plugins aggregating ``dst_host_country`` and ``src_host_country`` (CSV);
   * ``softflowd -r FILE`` exporting NetFlow v9 to an ``nfcapd`` on 127.0.0.1 (temporary
     directory), then ``nfdump -R DIR -s dstip/bytes``;
   * ``tshark -r FILE -q -z conv,ip``.
   Then checks that Sentinel's per-country totals equal pmacct's: for each country, Sentinel's
   ``packets_out``/``bytes_out`` summed over flows whose remote address is in that country must
   equal pmacct's ``dst_host_country`` row, and ``packets_in``/``bytes_in`` its
   ``src_host_country`` row. Both count bytes as the IP total length (IPv4 Total Length, IPv6
   40 + Payload Length), not the frame length, so no conversion is needed; pmacct's empty-country
   row (local and unlocated addresses) is not compared.
4. ``--live`` (root): a network namespace and veth pair created here (names with a random
   suffix, deleted afterwards; no address is configured, nothing is routed), ``LiveCapture`` on
   the host end, ``tcpreplay --pps=R`` of the first packets of the capture from inside the
   namespace at increasing rates; per rate: packets sent (tcpreplay's count), captured, kernel
   drops (PACKET_STATISTICS) and unaccounted = sent − captured − drops. Reports the highest rate
   with zero unaccounted packets.

Bench-only tools (not CI), Debian packages:
``apt-get install -y pmacct softflowd nfdump tshark tcpreplay iproute2``.
Prints figures; no asserts.
"""

from __future__ import annotations

import argparse
import collections
import csv
import gc
import json
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gen_capture import DEFAULT_GEOIP, generate  # noqa: E402

from sentinel.flows import read_flows  # noqa: E402

POLICY = REPO / "rules" / "egress-policy.yaml"
LOCAL = ["10.20.0.0/24", "fd00:20::/64"]
NOW = "2026-01-02T00:00:00Z"
#: tcpreplay --pps rates tried in turn (0: --topspeed)
LIVE_RATES = [10_000, 25_000, 50_000, 100_000, 200_000, 400_000, 0]


@dataclass
class Run:
    tool: str
    wall: float
    cpu: float
    rss_mb: float
    note: str = ""


def timed(tool: str, argv: list[str], *, stdout: Path | None = None) -> tuple[Run, str]:
    """Run ``argv`` under GNU time: wall, CPU (user+sys, its reaped children included), peak
    RSS (largest process of the tree); returns the figures and the tool's stderr."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-q", "-f", "%e %U %S %M", "-o", tf.name, *argv]
        t0 = time.perf_counter()
        with stdout.open("wb") if stdout else open(os.devnull, "wb") as out:
            proc = subprocess.run(full, stdout=out, stderr=subprocess.PIPE, check=False)
        wall = time.perf_counter() - t0
        fields = tf.read().split()[-4:]
    err = proc.stderr.decode(errors="replace")
    if proc.returncode not in (0, 1):
        print(f"{tool}: exit {proc.returncode}: {err[-2000:]}", file=sys.stderr)
    _e, user, system, rss_kb = fields
    return Run(tool, wall, float(user) + float(system), int(rss_kb) / 1024), err


def run_sentinel(capture: Path, geoip: Path, tmp: Path) -> tuple[Run, Path]:
    out = tmp / "sentinel.jsonl"
    argv = [sys.executable, "-m", "sentinel", "egress", "check", "--pcap", str(capture)]
    argv += ["--geoip", str(geoip), "--policy", str(POLICY), "--json", "--now", NOW]
    run, err = timed("sentinel egress check --json", argv, stdout=out)
    rate = re.search(r"(\d+) packets/s", err)
    run.note = f"in-process {int(rate.group(1)):,} packets/s" if rate else err[-300:]
    return run, out


def run_pmacct(capture: Path, geoip: Path, tmp: Path) -> tuple[Run, Path, Path]:
    conf = tmp / "pmacctd.conf"
    dst, src = tmp / "pmacct-dst.csv", tmp / "pmacct-src.csv"
    conf.write_text(
        "daemonize: false\n"
        f"pcap_savefile: {capture}\n"
        f"geoipv2_file: {geoip}\n"
        "plugins: print[dst], print[src]\n"
        "aggregate[dst]: dst_host_country\n"
        "aggregate[src]: src_host_country\n"
        "print_output[dst]: csv\n"
        "print_output[src]: csv\n"
        f"print_output_file[dst]: {dst}\n"
        f"print_output_file[src]: {src}\n"
        "print_refresh_time: 86400\n"
        "plugin_buffer_size: 1048576\n"
        "plugin_pipe_size: 268435456\n"
    )
    run, _err = timed("pmacctd (dst+src_host_country)", ["pmacctd", "-f", str(conf)])
    return run, dst, src


def run_softflowd(capture: Path, tmp: Path) -> tuple[Run, Run, str]:
    data = tmp / "nfcapd"
    data.mkdir()
    port = 20000 + secrets.randbelow(20000)
    nfcapd = subprocess.Popen(
        ["nfcapd", "-w", str(data), "-p", str(port), "-b", "127.0.0.1", "-B", "16000000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        argv = ["softflowd", "-d", "-r", str(capture), "-n", f"127.0.0.1:{port}", "-v", "9"]
        soft, _err = timed("softflowd -r (→ nfcapd)", argv)
        time.sleep(1.0)
    finally:
        if nfcapd.pid:
            nfcapd.send_signal(signal.SIGTERM)
            nfcapd.wait(timeout=30)
    out = tmp / "nfdump.txt"
    argv = ["nfdump", "-R", str(data), "-s", "dstip/bytes"]
    dump, _err = timed("nfdump -s dstip/bytes", argv, stdout=out)
    summary = re.search(
        r"Summary: total flows: \d+, total bytes: [^,]+, total packets: [^,]+", out.read_text()
    )
    return soft, dump, summary.group(0) if summary else out.read_text()[-400:]


def run_tshark(capture: Path, tmp: Path) -> Run:
    argv = ["tshark", "-r", str(capture), "-q", "-z", "conv,ip"]
    run, _err = timed("tshark -q -z conv,ip", argv, stdout=tmp / "tshark.txt")
    return run


def _pmacct_rows(path: Path) -> dict[str, tuple[int, int]]:
    rows: dict[str, tuple[int, int]] = {}
    with path.open() as fh:
        for row in csv.reader(fh):
            if not row or row[0].endswith("COUNTRY"):
                continue
            if row[0]:
                rows[row[0]] = (int(row[1]), int(row[2]))
    return rows


def compare_countries(sentinel_json: Path, dst_csv: Path, src_csv: Path) -> None:
    out: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    inn: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    with sentinel_json.open() as fh:
        for line in fh:
            v = json.loads(line)
            if not v["country"]:
                continue
            out[v["country"]][0] += v["packets_out"]
            out[v["country"]][1] += v["bytes_out"]
            inn[v["country"]][0] += v["packets_in"]
            inn[v["country"]][1] += v["bytes_in"]
    for label, ours, path in (("outbound (dst)", out, dst_csv), ("inbound (src)", inn, src_csv)):
        theirs = _pmacct_rows(path)
        mine = {c: (p, b) for c, (p, b) in ours.items() if p}
        diff = sorted(c for c in mine.keys() | theirs.keys() if mine.get(c) != theirs.get(c))
        total = sum(p for p, _ in mine.values()), sum(b for _, b in mine.values())
        verdict = "EQUAL" if not diff else f"DIFFER in {len(diff)}: {diff[:10]}"
        print(
            f"  per-country {label}: {len(mine)} countries, {total[0]:,} packets, "
            f"{total[1]:,} bytes (IP length) — Sentinel vs pmacct: {verdict}"
        )
        for c in diff[:5]:
            print(f"    {c}: sentinel {mine.get(c)} pmacct {theirs.get(c)}")
        if diff:
            print(
                "    (addresses in special-purpose or IANA-unallocated space are 'unknown "
                "location' in Sentinel whatever the database's fill-in says; pmacct keeps the "
                "database's country)"
            )


def in_process(capture: Path) -> int:
    """``read_flows`` on both paths; returns the packet count."""
    packets = 0
    for engine in ("vector", "scalar"):
        c0, t0 = time.process_time(), time.perf_counter()
        flows, stats = read_flows([capture], LOCAL, engine=engine)  # type: ignore[arg-type]
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        print(
            f"  read_flows engine={engine}: {stats.packets:,} packets, {len(flows):,} flows, "
            f"wall {wall:.2f} s, CPU {cpu:.2f} s, {stats.packets / wall:,.0f} packets/s (wall), "
            f"{stats.packets / cpu:,.0f} packets/s (CPU)"
        )
        packets = stats.packets
    return packets


def stages(capture: Path, geoip: Path) -> None:
    """Where the CPU time of ``sentinel egress check --json`` goes: its steps run here one by
    one, as ``sentinel.cli.egress.check`` runs them (CPU seconds of this process)."""
    from sentinel.geo.database import GeoDatabase
    from sentinel.policy.egress import EgressPolicy
    from sentinel.timefmt import parse_ts

    code = "import sentinel.cli.main, sentinel.cli.egress, sentinel.flows.vector"
    argv = [sys.executable, "-c", code]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rows = [("interpreter start-up and imports (separate process)", start)]
    clock = time.process_time
    c = clock()
    policy = EgressPolicy.load(POLICY)
    db = GeoDatabase.open(geoip)
    rows.append(("policy load, GeoIP open (snapshot copy + SHA-256)", clock() - c))
    c = clock()
    db.validate()  # as the CLI does (_open_checked)
    rows.append(("GeoIP validate (50,000 records decoded)", clock() - c))
    gc.disable()  # as the command does while it builds flows, verdicts and JSON lines
    c = clock()
    flows, stats = read_flows([capture], policy.local_networks)
    rows.append(("read + decode + flow table (read_flows)", clock() - c))
    c = clock()
    verdicts = policy.evaluate_many(flows, db, parse_ts(NOW))
    rows.append(("policy + GeoIP: evaluate_many (once per remote)", clock() - c))
    c = clock()
    dumps = json.JSONEncoder(sort_keys=True).encode
    text = "\n".join(dumps(v.to_json()) for v in verdicts)
    rows.append(("JSON lines (to_json + encode)", clock() - c))
    gc.enable()
    db.close()
    total = sum(cpu for _, cpu in rows)
    remotes = len({f.remote_ip for f in flows})
    print(
        f"\n  where the CPU goes ({stats.packets:,} packets, {len(flows):,} flows, "
        f"{remotes:,} distinct remote addresses, {len(text) / 1e6:.0f} MB of JSON):"
    )
    for name, cpu in rows:
        print(f"    {name:<55} {cpu:6.2f} s  {100 * cpu / total:4.0f} %")
    print(f"    {'total':<55} {total:6.2f} s  {stats.packets / total:,.0f} packets per CPU second")


def table(runs: list[Run], packets: int) -> None:
    print(
        f"\n  {'tool':<32} {'wall s':>8} {'CPU s':>8} {'packets/s':>12} {'packets/CPU-s':>14} "
        f"{'peak RSS MB':>12}  note"
    )
    for r in runs:
        print(
            f"  {r.tool:<32} {r.wall:8.2f} {r.cpu:8.2f} {packets / r.wall:12,.0f} "
            f"{packets / r.cpu if r.cpu else 0:14,.0f} {r.rss_mb:12.0f}  {r.note}"
        )


# -- live -------------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=15)


def live(capture: Path, tmp: Path, rates: list[int], count: int) -> None:
    from sentinel.flows.live import LiveCapture
    from sentinel.flows.pcap import CaptureReader

    head = tmp / "live.pcap"
    with capture.open("rb") as src, head.open("wb") as dst:  # the first `count` records
        dst.write(src.read(24))
        n = 0
        with CaptureReader(capture) as reader:
            for ts, _lt, data, orig in reader:
                dst.write(
                    (ts // 10**9).to_bytes(4, "little")
                    + ((ts % 10**9) // 1000).to_bytes(4, "little")
                    + len(data).to_bytes(4, "little")
                    + orig.to_bytes(4, "little")
                    + data
                )
                n += 1
                if n >= count:
                    break
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"sentinel-bench-{tag}", f"sbh{tag}", f"sbn{tag}"
    best = 0
    print(f"\n  live: {count:,} packets per rate, veth {host_if} <- netns {ns}")
    head_row = f"  {'pps asked':>10} {'sent':>9} {'captured':>9} {'drops':>7} {'unaccounted':>11}"
    print(f"{head_row}  achieved")
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "mtu", "9000", "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        for cmd in (["sysctl", "-qw", f"net.ipv6.conf.{host_if}.disable_ipv6=1"],
                    ["ip", "netns", "exec", ns, "sysctl", "-qw",
                     f"net.ipv6.conf.{ns_if}.disable_ipv6=1"]):  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True, timeout=15)
        _ip("-n", ns, "link", "set", ns_if, "mtu", "9000", "up")
        _ip("link", "set", host_if, "up")
        time.sleep(0.5)
        for rate in rates:
            cap = LiveCapture(host_if, LOCAL)
            cap.start()
            time.sleep(0.3)
            argv = ["ip", "netns", "exec", ns, "tcpreplay", "-i", ns_if]
            argv += ["--topspeed"] if rate == 0 else [f"--pps={rate}"]
            t0 = time.perf_counter()
            proc = subprocess.run([*argv, str(head)], capture_output=True, text=True, timeout=600)
            took = time.perf_counter() - t0
            match = re.search(r"Successful packets:\s+(\d+)", proc.stdout)
            sent = int(match.group(1)) if match else -1
            last, idle = -1, 0
            while idle < 4:
                time.sleep(0.25)
                idle = idle + 1 if cap.packets == last else 0
                last = cap.packets
            cap.stop()
            drops = cap.kernel_drops or 0
            lost = sent - cap.packets - drops
            achieved = sent / took if took else 0
            asked = "top" if rate == 0 else f"{rate:,}"
            print(f"  {asked:>10} {sent:9,} {cap.packets:9,} {drops:7,} {lost:11,}  "
                  f"{achieved:,.0f} packets/s")  # fmt: skip
            if lost == 0 and drops == 0:
                best = max(best, int(achieved))
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=15)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=15)
    print(f"  highest replay rate with every packet captured (no drop, none unaccounted): "
          f"{best:,} packets/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--capture", type=Path, default=None, help="use this capture")
    parser.add_argument("--geoip", type=Path, default=DEFAULT_GEOIP)
    parser.add_argument("--live", action="store_true", help="tcpreplay over a veth (root)")
    parser.add_argument("--live-packets", type=int, default=200_000)
    parser.add_argument("--no-tools", action="store_true", help="skip pmacct/softflowd/tshark")
    parser.add_argument("--live-only", action="store_true", help="only the live replay")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as tmpdir:
        tmp = Path(tmpdir)
        capture = args.capture
        if capture is None:
            capture = tmp / "bench.pcap"
            t0 = time.perf_counter()
            info = generate(capture, args.packets, args.flows, args.seed, args.geoip)
            print(f"generated {info['packets']:,} packets, {info['flows']:,} flows, "
                  f"{info['bytes'] / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        if args.live_only:
            live(capture, tmp, LIVE_RATES, args.live_packets)
            return
        print(f"capture {capture} ({capture.stat().st_size / 1e6:.0f} MB); "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
        packets = in_process(capture)
        stages(capture, args.geoip)
        runs: list[Run] = []
        sentinel, out = run_sentinel(capture, args.geoip, tmp)
        runs.append(sentinel)
        if not args.no_tools:
            pm, dst, src = run_pmacct(capture, args.geoip, tmp)
            runs.append(pm)
            soft, dump, summary = run_softflowd(capture, tmp)
            runs += [soft, dump]
            both = Run("softflowd + nfdump", soft.wall + dump.wall, soft.cpu + dump.cpu,
                       max(soft.rss_mb, dump.rss_mb), summary)  # fmt: skip
            runs.append(both)
            runs.append(run_tshark(capture, tmp))
        table(runs, packets)
        if not args.no_tools:
            compare_countries(out, dst, src)
        print(f"  load average after: {os.getloadavg()[0]:.1f}")
        if args.live:
            live(capture, tmp, LIVE_RATES, args.live_packets)


if __name__ == "__main__":
    main()
