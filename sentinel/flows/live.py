"""Live capture from a network interface into the same ``Decoder`` → ``FlowTable`` path.

A plain Linux ``AF_PACKET``/``SOCK_RAW`` socket (packet(7); needs ``CAP_NET_RAW``): opened with
protocol 0 so that nothing is queued before the BPF filter is attached (scapy compiles the
filter with libpcap and attaches it, ``SO_ATTACH_FILTER``), then bound to the interface for
``ETH_P_ALL``; a large receive buffer (``rcvbuf_bytes``: ``SO_RCVBUFFORCE`` when the process
has CAP_NET_ADMIN, else ``SO_RCVBUF``, which the kernel caps at ``net.core.rmem_max``) absorbs
bursts. The worker
thread drains the socket without blocking (up to ``BURST`` frames per wake-up, one lock per
burst) and timestamps each frame with the host clock when it is read. The kernel's drop counter
is read with ``getsockopt(SOL_PACKET, PACKET_STATISTICS)`` (``struct tpacket_stats``: packets,
drops — the kernel resets both on each read, so they are accumulated here).

DNS answers seen on the interface name the flows that follow them (``sentinel.flows.dns``;
``dns`` options, ``None`` to turn it off): the name map is held with the flow table, names are
attached when flows are closed, and answers no open flow can match any more are pruned then.

Usage: ``cap = LiveCapture("eth0", local_networks); cap.start(); ...; flows = cap.collect(...);
cap.stop()`` (``stop`` joins the thread and returns the flows still open).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Iterable

from sentinel.errors import CaptureError
from sentinel.flows.decode import Decoder
from sentinel.flows.dns import DNS_PORT, DnsCorrelator, DnsOptions, observe_dns
from sentinel.flows.table import FlowTable, Network
from sentinel.records import Flow

SOL_PACKET = 263
PACKET_STATISTICS = 6
#: DNS correlation as live capture does it by default (``sentinel.flows.dns``)
DEFAULT_DNS = DnsOptions()
#: LINKTYPE_ETHERNET: what an AF_PACKET socket on an Ethernet-like interface delivers
ETHERNET = 1
#: every protocol (linux/if_ether.h); bind() takes it in host order (Python applies htons)
ETH_P_ALL = 0x0003
#: socket(7): set the receive buffer size past net.core.rmem_max (needs CAP_NET_ADMIN)
SO_RCVBUFFORCE = 33
#: frames read per wake-up of the worker
BURST = 512
#: largest frame read (bytes); longer ones (GSO/GRO super-frames) are cut, their IP length kept
MAX_FRAME = 262_144


class LiveCapture:
    """Capture on ``interface`` with BPF ``bpf``; a stoppable worker thread.

    Counters: ``packets`` (frames received), ``kernel_drops`` (dropped by the kernel before we
    read them; ``None`` when the socket cannot report them), ``decoder`` counters for non-IP and
    malformed frames, ``dns_counts()`` for DNS answers. Raises ``CaptureError`` from ``start``
    when the socket cannot be opened (no such interface, no permission, bad filter).
    """

    def __init__(
        self,
        interface: str,
        local_networks: Iterable[str | Network],
        *,
        bpf: str = "ip or ip6 or (vlan and (ip or ip6))",
        max_flows: int = 200_000,
        rcvbuf_bytes: int = 32 << 20,
        dns: DnsOptions | None = DEFAULT_DNS,
    ) -> None:
        self.interface = interface
        self.bpf = bpf
        self.rcvbuf_bytes = rcvbuf_bytes
        self.table = FlowTable(local_networks, max_flows=max_flows)
        self.decoder = Decoder()
        self.dns = DnsCorrelator(dns) if dns is not None else None
        self.packets = 0
        self.kernel_drops: int | None = None
        self._kernel_seen = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.error: str | None = None

    def start(self) -> None:
        """Open the socket and start the worker thread."""
        if self._thread is not None:
            raise RuntimeError("capture already started")
        # imported here: scapy is slow to import; it compiles the BPF filter with libpcap
        from scapy.arch.linux import attach_filter

        sock = None
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            try:  # beyond net.core.rmem_max when allowed (CAP_NET_ADMIN)
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf_bytes)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_bytes)
            if self.bpf:
                attach_filter(sock, self.bpf, self.interface)
            sock.bind((self.interface, ETH_P_ALL))
            sock.setblocking(False)
        except Exception as exc:  # OSError, PermissionError, scapy's Scapy_Exception (filter)
            if sock is not None:
                sock.close()
            raise CaptureError(f"cannot capture on {self.interface!r}: {exc}") from exc
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"sentinel-capture-{self.interface}", daemon=False
        )
        self._thread.start()

    def _run(self) -> None:
        sock = self._sock
        if sock is None:
            return
        buf = bytearray(MAX_FRAME)
        view = memoryview(buf)
        recv_into = sock.recv_into
        decoder = self.decoder
        decode = decoder.decode
        add = self.table.add
        dns = self.dns
        lock = self._lock
        now = time.time_ns
        burst: list[tuple[int, bytes]] = []
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.2)
            except (OSError, ValueError):
                break
            if not ready:
                continue
            while len(burst) < BURST:
                try:
                    size = recv_into(buf)
                except BlockingIOError:
                    break
                except OSError as exc:
                    self.error = f"capture socket error: {exc}"
                    self._stop.set()
                    break
                burst.append((now(), bytes(view[:size])))
            if not burst:
                continue
            with lock:
                for ts_ns, data in burst:
                    summary = decode(ETHERNET, data)
                    if summary is not None:
                        add(ts_ns, summary)
                        if summary[3] == DNS_PORT and dns is not None:
                            observe_dns(dns, decoder, ts_ns, summary)
                self.packets += len(burst)
            burst.clear()

    def _read_drops(self) -> None:
        sock = self._sock
        if not isinstance(sock, socket.socket):
            return
        try:
            stats = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            return
        _received, drops = struct.unpack("II", stats)
        self._kernel_seen += drops
        self.kernel_drops = self._kernel_seen

    def dns_counts(self) -> dict[str, int]:
        """A copy of the DNS counters (``sentinel.flows.dns``); empty when DNS is off."""
        with self._lock:
            return dict(self.dns.counts) if self.dns is not None else {}

    def collect(self, now_ns: int, idle_timeout_s: float, active_timeout_s: float) -> list[Flow]:
        """Flows closed by the timeouts at ``now_ns`` (UTC ns), named from the DNS answers
        seen before each started; refreshes ``kernel_drops``."""
        with self._lock:
            self._read_drops()
            flows = self.table.expire(now_ns, idle_timeout_s, active_timeout_s)
            if self.dns is None:
                return flows
            flows = self.dns.attach(flows)
            # every flow still open started after now - active_timeout (or it was just closed)
            self.dns.prune(now_ns - int(2 * active_timeout_s * 1e9))
            return flows

    def stop(self) -> list[Flow]:
        """Stop the thread, close the socket and return every flow still open. Safe twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._sock is not None:
                self._read_drops()
                self._sock.close()
                self._sock = None
            flows = self.table.drain()
            return self.dns.attach(flows) if self.dns is not None else flows
