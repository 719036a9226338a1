"""Conntrack flows from the real kernel: a namespace joined by a veth pair, real TCP and UDP.

The test namespace gets ``nf_conntrack_acct=1`` (per-namespace sysctl) and one iptables rule
that uses conntrack, so the kernel tracks its connections (since Linux 5.x conntrack is only
active in a namespace where something needs it). Connections are ended by deleting them over
ctnetlink (a real ``IPCTNL_MSG_CT_DELETE``), which makes the kernel send real destroy events
with the final counters, without waiting for conntrack's timeouts.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sentinel.flows.conntrack import NETLINK_NETFILTER, ConntrackError, ConntrackSource, CtCodec
from sentinel.records import Flow
from tests.e2e.harness.netns import NetNs
from tests.waiting import wait_until

pytestmark = pytest.mark.root

TCP_SENT = 200_000
TCP_REPLY = 5_000
UDP_PAYLOAD = 300
UDP_COUNT = 7

_CLIENT = r"""
import socket, sys
host, tport, uport, sent, reply, payload, count = sys.argv[1], *map(int, sys.argv[2:8])
with socket.create_connection((host, tport), timeout=10) as s:
    s.sendall(b"m" * sent)
    s.shutdown(socket.SHUT_WR)
    got = 0
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += len(chunk)
    assert got == reply, got
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
    u.bind(("0.0.0.0", 40555))
    for _ in range(count):
        u.sendto(b"u" * payload, (host, uport))
"""

_MANY = r"""
import socket, sys
host, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
    for port in range(first, first + n):
        u.sendto(b"x", (host, port))
"""

_FLUSH = r"""
from pyroute2 import Conntrack
Conntrack().flush()
"""


def _ns_ready(ns: NetNs, *, acct: bool = True) -> None:
    ns.exec("sysctl", "-qw", f"net.netfilter.nf_conntrack_acct={1 if acct else 0}")
    ns.exec("iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED",
            "-j", "ACCEPT")  # fmt: skip


@pytest.fixture
def ns() -> Iterator[NetNs]:
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces): run the suite as root, e.g. via .ci/run")
    with NetNs() as created:
        yield created


class _Servers:
    """A TCP server (reads everything, answers TCP_REPLY bytes) and a UDP sink on the host
    end of the veth pair."""

    def __init__(self, host: str) -> None:
        self.tcp = socket.create_server((host, 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, 0))
        self.udp.settimeout(10)
        self.tcp_port = int(self.tcp.getsockname()[1])
        self.udp_port = int(self.udp.getsockname()[1])
        self.received = 0
        self.datagrams = 0
        self._thread = threading.Thread(target=self._serve, name="ct-test-server")
        self._thread.start()

    def _serve(self) -> None:
        self.tcp.settimeout(10)
        conn, _ = self.tcp.accept()
        with conn:
            conn.settimeout(10)
            while chunk := conn.recv(65536):
                self.received += len(chunk)
            conn.sendall(b"r" * TCP_REPLY)
        for _ in range(UDP_COUNT):
            self.udp.recv(2048)
            self.datagrams += 1

    def close(self) -> None:
        self._thread.join(timeout=20)
        self.tcp.close()
        self.udp.close()


def _raw_dump(ns: NetNs) -> list[bytes]:
    """The kernel's answer to a ctnetlink dump request, as the datagrams it sent."""
    from pyroute2.netns import create_socket

    sock = create_socket(
        netns=ns.name, family=socket.AF_NETLINK, socket_type=socket.SOCK_RAW,
        proto=NETLINK_NETFILTER, flags=0,
    )  # fmt: skip
    with sock:
        sock.settimeout(5)
        sock.bind((0, 0))
        sock.send(CtCodec().dump_request(1))
        out: list[bytes] = []
        while not out or 3 not in list(CtCodec().decode(out[-1], dump=True)):
            out.append(sock.recv(1 << 20))
    return out


def _flush(ns: NetNs) -> None:
    ns.exec(sys.executable, "-c", _FLUSH)


def test_conntrack_reports_real_tcp_and_udp_flows_with_byte_counts(ns: NetNs) -> None:
    _ns_ready(ns)
    src = ConntrackSource([f"{ns.ns_ip}/32"], netns=ns.name)
    assert src.name == f"conntrack:{ns.name}"
    servers = _Servers(ns.host_ip)
    src.start()
    flows: list[Flow] = []
    try:
        ns.exec(sys.executable, "-c", _CLIENT, ns.host_ip, str(servers.tcp_port),
                str(servers.udp_port), str(TCP_SENT), str(TCP_REPLY), str(UDP_PAYLOAD),
                str(UDP_COUNT), timeout=30)  # fmt: skip
        servers.close()
        assert (servers.received, servers.datagrams) == (TCP_SENT, UDP_COUNT)
        wait_until(lambda: src.stats.new >= 2, "two new events")
        # the kernel's own bytes: the fast decoder reads them as pyroute2 does
        codec, dumped = CtCodec(), 0
        for datagram in _raw_dump(ns):
            fast = list(codec.decode(datagram, dump=True))
            assert fast == list(codec.decode_reference(datagram, dump=True))
            dumped += sum(1 for m in fast if not isinstance(m, int) and m is not None)
        assert dumped >= 2
        _flush(ns)
        wait_until(lambda: src.stats.destroy >= 2, "two destroy events")
        now_ns = int(datetime.now(UTC).timestamp() * 1e9)
        flows = src.collect(now_ns, 30.0, 3600.0)
    finally:
        flows += src.stop()
        servers.close()
    assert src.error is None and src.accounting is True
    assert src.stats.overruns == 0 and src.stats.unparsed == 0
    tcp = [f for f in flows if f.protocol == 6 and f.remote_port == servers.tcp_port]
    udp = [f for f in flows if f.protocol == 17 and f.remote_port == servers.udp_port]
    assert len(tcp) == 1 and len(udp) == 1, flows
    (t,), (u,) = tcp, udp
    assert (t.local_ip, t.remote_ip) == (ns.ns_ip, ns.host_ip)
    # IP bytes as the kernel counts them: payload plus IP/TCP headers of every segment
    assert TCP_SENT < t.bytes_out < TCP_SENT * 1.2 and t.packets_out >= 4
    assert TCP_REPLY < t.bytes_in <= TCP_REPLY + 80 * t.packets_in  # ≤ 80 header bytes each
    assert (u.local_ip, u.local_port, u.remote_ip) == (ns.ns_ip, 40555, ns.host_ip)
    assert (u.packets_out, u.bytes_out) == (UDP_COUNT, UDP_COUNT * (UDP_PAYLOAD + 28))
    assert (u.packets_in, u.bytes_in) == (0, 0)
    for f in (t, u):
        assert f.first_seen <= f.last_seen and f.first_seen.tzinfo is not None


def test_neither_end_in_local_networks_is_orientation_unknown(ns: NetNs) -> None:
    """A client outside the namespace sends to an address in it that is not listed (the
    kernel's originator is the client): conntrack cannot say which end is ours, the flow is
    marked; with the namespace's address listed it is oriented (local = the namespace)."""
    _ns_ready(ns)
    unlisted = ConntrackSource(["192.0.2.0/24"], netns=ns.name)
    listed = ConntrackSource([f"{ns.ns_ip}/32"], netns=ns.name)
    unlisted.start()
    listed.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind((ns.host_ip, 0))
            cport = int(client.getsockname()[1])
            for _ in range(3):
                client.sendto(b"x" * 100, (ns.ns_ip, 41500))
        wait_until(lambda: unlisted.stats.new >= 1 and listed.stats.new >= 1, "new events")
        _flush(ns)
        wait_until(lambda: unlisted.stats.destroy >= 1 and listed.stats.destroy >= 1, "destroys")
    finally:
        guessed, oriented = unlisted.stop(), listed.stop()

    def ours(flows: list[Flow]) -> Flow:
        (found,) = [f for f in flows if {f.local_port, f.remote_port} == {cport, 41500}]
        return found

    g, o = ours(guessed), ours(oriented)
    # the tie makes the originator (the outside client) local: a guess, and marked as one
    assert (g.local_ip, g.remote_ip, g.packets_out) == (ns.host_ip, ns.ns_ip, 3)
    assert g.orientation_unknown
    assert (o.local_ip, o.remote_ip, o.packets_in) == (ns.ns_ip, ns.host_ip, 3)
    assert not o.orientation_unknown


def test_accounting_off_is_detected_and_flows_carry_no_counts(ns: NetNs) -> None:
    _ns_ready(ns, acct=False)
    src = ConntrackSource([f"{ns.ns_ip}/32"], netns=ns.name)
    src.start()
    try:
        ns.exec(sys.executable, "-c", _MANY, ns.host_ip, "41000", "3")
        wait_until(lambda: src.stats.new >= 3, "three new events")
        _flush(ns)
        wait_until(lambda: src.stats.destroy >= 3, "three destroy events")
    finally:
        flows = src.stop()
    assert src.accounting is False and src.stats.without_counters >= 3
    ours = [f for f in flows if f.remote_ip == ns.host_ip and 41000 <= f.remote_port < 41003]
    assert len(ours) == 3 and all(f.bytes_out == 0 and f.packets_out == 0 for f in ours)


def test_enobufs_overrun_is_counted_and_resynced_by_a_dump(ns: NetNs) -> None:
    _ns_ready(ns)
    # smallest receive buffer the kernel allows: a few hundred events overrun it
    src = ConntrackSource([f"{ns.ns_ip}/32"], netns=ns.name, rcvbuf_bytes=1024)
    src.open()  # subscribed, nothing read yet
    try:
        ns.exec(sys.executable, "-c", _MANY, ns.host_ip, "42000", "20")
        src.pump(1.0)
        known = len(src)
        assert known >= 1
        # while nobody reads: 400 new connections, then every connection ends
        ns.exec(sys.executable, "-c", _MANY, ns.host_ip, "43000", "400")
        _flush(ns)
        ns.exec(sys.executable, "-c", _MANY, ns.host_ip, "44000", "5")
        src.pump(1.0)
        while src.pump(0.2):
            pass
    finally:
        flows = src.stop()
    assert src.stats.overruns >= 1
    assert src.stats.resyncs == 1 + src.stats.overruns  # the initial load, then one per overrun
    # the connections it knew and whose end it missed are still reported (last counters)
    assert src.stats.lost_destroys + src.stats.destroy >= known
    ports = Counter(f.remote_port for f in flows if f.remote_ip == ns.host_ip)
    assert max(ports.values()) == 1, "a connection reported twice"
    remote = set(ports)
    assert set(range(42000, 42020)) <= remote
    # the connections opened after the flush are present (from the dump or the events)
    assert set(range(44000, 44005)) <= remote
    assert src.stats.flows == len(flows)


def test_missing_namespace_is_a_conntrack_error() -> None:
    src = ConntrackSource([], netns="sentinel-no-such-netns")
    with pytest.raises(ConntrackError, match="sentinel-no-such-netns"):
        src.start()
    assert src.stop() == []


_BURST = r"""
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
    u.bind(("0.0.0.0", 40777))
    for _ in range(n):
        u.sendto(b"a" * 72, (host, port))
"""


def test_long_connection_is_reported_while_open_then_only_the_rest(ns: NetNs) -> None:
    _ns_ready(ns)
    src = ConntrackSource([f"{ns.ns_ip}/32"], netns=ns.name)
    src.start()
    flows: list[Flow] = []
    try:
        ns.exec(sys.executable, "-c", _BURST, ns.host_ip, "45000", "3")
        wait_until(lambda: src.stats.new >= 1, "the new event")
        now_ns = int(datetime.now(UTC).timestamp() * 1e9)
        interim = src.collect(now_ns, 30.0, 0.0)  # everything open is overdue
        ns.exec(sys.executable, "-c", _BURST, ns.host_ip, "45000", "4")  # same 5-tuple
        _flush(ns)
        wait_until(lambda: src.stats.destroy >= 1, "the destroy event")
        now_ns = int(datetime.now(UTC).timestamp() * 1e9)
        flows = src.collect(now_ns, 30.0, 3600.0)
    finally:
        flows += src.stop()
    (first,) = [f for f in interim if f.local_port == 40777]
    (rest,) = [f for f in flows if f.local_port == 40777]
    assert (first.packets_out, first.bytes_out) == (3, 3 * 100)
    assert (rest.packets_out, rest.bytes_out) == (4, 4 * 100)
    assert first.last_seen <= rest.first_seen <= rest.last_seen
