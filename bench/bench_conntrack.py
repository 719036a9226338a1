"""How many conntrack events per second ``ConntrackSource`` keeps up with (needs root).

A throw-away network namespace (``ip netns``) with only ``lo``, conntrack accounting on and one
iptables rule that makes the kernel track connections there. A sender inside it opens N UDP
"connections" to 127.0.0.1 (one datagram each, to N different ports) as fast as one process
can; the tracked entries are then deleted over ctnetlink, so the kernel emits N new and N
destroy events. For each receive-buffer size the source reads them in its worker thread; the
script prints events read, overruns (ENOBUFS), resync dumps, destroys recovered from dumps,
flows produced (of N), wall seconds from the first datagram to the last event read, events
read per second, and the CPU seconds of this process.

    .venv/bin/python bench/bench_conntrack.py [-n 20000] [--rcvbuf 8388608 262144 16384]

Nothing is asserted; figures vary with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime

from sentinel.flows.conntrack import ConntrackSource

SENDER = r"""
import socket, sys
n = int(sys.argv[1])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
    for i in range(n):
        u.sendto(b"x", ("127.0.0.1", 1024 + i % 60000))
"""
FLUSH = "from pyroute2 import Conntrack\nConntrack().flush()\n"


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=300)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def one(ns: str, n: int, rcvbuf: int) -> dict[str, float]:
    src = ConntrackSource(["127.0.0.0/8"], netns=ns, rcvbuf_bytes=rcvbuf, max_entries=4 * n)
    src.start()
    cpu0, t0 = _cpu(), time.monotonic()
    _run("ip", "netns", "exec", ns, sys.executable, "-c", SENDER, str(n))
    _run("ip", "netns", "exec", ns, sys.executable, "-c", FLUSH)
    # until the source has read nothing for a second (events lost in an overrun never come)
    last_change, seen = time.monotonic(), -1
    while time.monotonic() - last_change < 1.0:
        now_seen = src.stats.events + src.stats.resyncs
        if now_seen != seen:
            seen, last_change = now_seen, time.monotonic()
        time.sleep(0.01)
    wall = last_change - t0
    flows = src.collect(int(datetime.now(UTC).timestamp() * 1e9), 30, 86400)
    flows += src.stop()
    s = src.stats
    return {
        "rcvbuf": rcvbuf,
        "events": s.events,
        "overruns": s.overruns,
        "resyncs": s.resyncs,
        "lost": s.lost_destroys,
        "flows": len(flows),
        "wall": wall,
        "ev_s": s.events / wall if wall else 0.0,
        "cpu": _cpu() - cpu0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20_000, help="connections per run (≤ 60000)")
    ap.add_argument("--rcvbuf", type=int, nargs="+", default=[8 << 20, 256 << 10, 16 << 10])
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, CAP_NET_ADMIN)")
    n = min(args.n, 60_000)
    ns = f"sentinel-bench-{secrets.token_hex(3)}"
    _run("ip", "netns", "add", ns)
    try:
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
        _run("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-m", "conntrack",
             "--ctstate", "NEW", "-j", "ACCEPT")  # fmt: skip
        print(f"{n} UDP connections on lo in {ns}: {2 * n} kernel events per run")
        print(
            f"{'rcvbuf':>10} {'events':>8} {'overruns':>8} {'resyncs':>7} {'lost':>6} "
            f"{'flows':>7} {'wall s':>7} {'events/s':>9} {'cpu s':>6}"
        )
        for rcvbuf in args.rcvbuf:
            r = one(ns, n, rcvbuf)
            print(
                f"{r['rcvbuf']:>10.0f} {r['events']:>8.0f} {r['overruns']:>8.0f} "
                f"{r['resyncs']:>7.0f} {r['lost']:>6.0f} {r['flows']:>7.0f} {r['wall']:>7.2f} "
                f"{r['ev_s']:>9.0f} {r['cpu']:>6.2f}"
            )
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


if __name__ == "__main__":
    main()
