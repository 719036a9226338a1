"""Live capture from a network interface into the same ``Decoder`` → ``FlowTable`` path.

scapy opens the capture socket (``conf.L2listen`` with a BPF filter; needs ``CAP_NET_RAW``); the
worker thread takes the *raw bytes* of each frame (``recv_raw``), never scapy's dissection. On
Linux the kernel's drop counter is read with ``getsockopt(SOL_PACKET, PACKET_STATISTICS)``
(``struct tpacket_stats``: packets, drops — the kernel resets both on each read, so they are
accumulated here; see packet(7)).

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
from typing import Any

from sentinel.errors import CaptureError
from sentinel.flows.decode import Decoder
from sentinel.flows.table import FlowTable, Network
from sentinel.records import Flow

SOL_PACKET = 263
PACKET_STATISTICS = 6
#: LINKTYPE_ETHERNET: what an AF_PACKET socket on an Ethernet-like interface delivers
ETHERNET = 1


class LiveCapture:
    """Capture on ``interface`` with BPF ``bpf``; a stoppable worker thread.

    Counters: ``packets`` (frames received), ``kernel_drops`` (dropped by the kernel before we
    read them; ``None`` when the socket cannot report them), ``decoder`` counters for non-IP and
    malformed frames. Raises ``CaptureError`` from ``start`` when the socket cannot be opened
    (no such interface, no permission, bad filter).
    """

    def __init__(
        self,
        interface: str,
        local_networks: Iterable[str | Network],
        *,
        bpf: str = "ip or ip6 or (vlan and (ip or ip6))",
        max_flows: int = 200_000,
    ) -> None:
        self.interface = interface
        self.bpf = bpf
        self.table = FlowTable(local_networks, max_flows=max_flows)
        self.decoder = Decoder()
        self.packets = 0
        self.kernel_drops: int | None = None
        self._kernel_seen = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: Any = None
        self.error: str | None = None

    def start(self) -> None:
        """Open the socket and start the worker thread."""
        if self._thread is not None:
            raise RuntimeError("capture already started")
        # imported here: scapy is slow to import; Linux AF_PACKET listen socket (conf.L2listen)
        from scapy.arch.linux import L2ListenSocket

        try:
            self._sock = L2ListenSocket(iface=self.interface, filter=self.bpf)
        except (OSError, PermissionError) as exc:
            raise CaptureError(f"cannot capture on {self.interface!r}: {exc}") from exc
        except Exception as exc:  # scapy raises its own Scapy_Exception for bad filters
            raise CaptureError(f"cannot capture on {self.interface!r}: {exc}") from exc
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"sentinel-capture-{self.interface}", daemon=False
        )
        self._thread.start()

    def _run(self) -> None:
        sock = self._sock
        fd = sock.fileno()
        decode = self.decoder.decode
        add = self.table.add
        lock = self._lock
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
            except (OSError, ValueError):
                break
            if not ready:
                continue
            try:
                _cls, data, ts = sock.recv_raw()
            except OSError as exc:
                self.error = f"capture socket error: {exc}"
                break
            if data is None:
                continue
            ts_ns = int(ts * 1e9) if ts else time.time_ns()
            summary = decode(ETHERNET, data)
            with lock:
                self.packets += 1
                if summary is not None:
                    add(ts_ns, summary)

    def _read_drops(self) -> None:
        sock = self._sock
        raw = getattr(sock, "ins", None)
        if not isinstance(raw, socket.socket):
            return
        try:
            stats = raw.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            return
        _received, drops = struct.unpack("II", stats)
        self._kernel_seen += drops
        self.kernel_drops = self._kernel_seen

    def collect(self, now_ns: int, idle_timeout_s: float, active_timeout_s: float) -> list[Flow]:
        """Flows closed by the timeouts at ``now_ns`` (UTC ns); refreshes ``kernel_drops``."""
        with self._lock:
            self._read_drops()
            return self.table.expire(now_ns, idle_timeout_s, active_timeout_s)

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
            return self.table.drain()
