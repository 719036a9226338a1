"""NetFlow v5/v9 and IPFIX sources: a UDP collector worker, and export packets inside a pcap.

Both feed ``sentinel.flows.netflow.NetflowDecoder`` (the pure decoder: RFC 3954, RFC 7011, the
Cisco v5 format) and turn its ``FlowRecord`` values into ``sentinel.records.Flow`` values with
``FlowRecord.to_flow`` (one flow per exported record; counts scaled by the sampling rate).

* ``NetflowCollector`` — a stoppable worker thread on a UDP socket (``127.0.0.1:2055`` by
  default). It has the interface ``sentinel.runtime.egress.FlowJudge`` expects of a capture
  (``start``, ``collect``, ``stop``, ``packets``, ``kernel_drops``, ``source``): ``collect``
  hands over the flows decoded since the last call. Datagrams the kernel dropped because the
  socket buffer was full are read from ``SO_RXQ_OVFL`` (Linux) into ``kernel_drops``.
* ``read_export_pcap`` — the UDP payloads of a pcap/pcapng file (``sentinel.flows.pcap``
  reader; link, IP and UDP layers dissected with scapy), fed to one decoder in file order, as a
  collector listening at the capture point would have received them.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel.errors import CaptureError
from sentinel.flows.netflow import FlowRecord, Limits, NetflowDecoder, NetflowStats, Orienter
from sentinel.flows.pcap import CaptureReader, ReadStats
from sentinel.records import Flow, Unparsed, join_host_port

log = logging.getLogger(__name__)

#: Linux SO_RXQ_OVFL: each datagram carries the socket's running drop counter
SO_RXQ_OVFL = 40
#: default port (the IANA port for IPFIX is 4739; many NetFlow exporters default to 2055)
DEFAULT_PORT = 2055
#: flows held between two ``collect`` calls before the receiver waits for the judge
MAX_QUEUED_FLOWS = 500_000


# -- offline: export packets inside a capture file ---------------------------------------------


@dataclass
class ExportPcapStats:
    """What reading export packets from capture files gave.

    ``capture`` is the pcap reader's ``ReadStats``; ``datagrams`` UDP payloads handed to the
    decoder; ``not_udp`` frames without a UDP layer (or IP fragments, which are not
    reassembled); ``decoder`` the decoder's counters (after ``finish``: sets still waiting for a
    template are counted as missing). ``without_export``: the files in which not one datagram
    decoded as NetFlow v5/v9 or IPFIX (not an export capture, or a damaged one).
    ``waiting_at_end``: of the sets missing a template, those still buffered after the last
    file (their template is in none of the files); the others were evicted over
    ``Limits.max_pending_sets``/``max_pending_bytes`` while waiting (their template may have
    come later).
    """

    capture: ReadStats = field(default_factory=ReadStats)
    datagrams: int = 0
    not_udp: int = 0
    decoder: NetflowStats = field(default_factory=NetflowStats)
    problems: list[str] = field(default_factory=list)
    without_export: list[str] = field(default_factory=list)
    waiting_at_end: int = 0


def export_datagrams(path: str | Path, stats: ExportPcapStats) -> Iterator[tuple[int, str, bytes]]:
    """Yield ``(ts_ns, exporter address, UDP payload)`` for each UDP datagram in a capture.

    Raises ``CaptureError`` when the file is not a readable capture; counts frames that carry no
    (complete) UDP datagram in ``stats.not_udp``.
    """
    from scapy.config import conf  # scapy is slow to import
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6

    with CaptureReader(path) as reader:
        for ts_ns, linktype, data, _orig in reader:
            cls: Any = conf.l2types.get(linktype)
            if cls is None:
                stats.not_udp += 1
                continue
            try:
                pkt = cls(data)
            except Exception:  # scapy raises anything on damaged frames
                stats.not_udp += 1
                continue
            udp = pkt.getlayer(UDP)
            ip = pkt.getlayer(IP)
            if udp is None or (ip is not None and (ip.flags.MF or ip.frag)):
                stats.not_udp += 1
                continue
            under = udp.underlayer
            exporter = under.src if isinstance(under, IP | IPv6) else "0.0.0.0"  # noqa: S104
            payload = bytes(udp.payload)
            if udp.len and udp.len >= 8:
                payload = payload[: udp.len - 8]
            stats.datagrams += 1
            yield ts_ns, str(exporter), payload
        stats.capture.merge(reader.stats)


def read_export_pcap(
    paths: Iterable[str | Path], *, limits: Limits | None = None
) -> tuple[list[FlowRecord], ExportPcapStats]:
    """Decode the NetFlow/IPFIX export packets in capture files, in file order, with one
    decoder (templates learnt in one file serve the next). Returns the records and the stats;
    sets whose template never came are counted in ``stats.decoder.missing_template_*``.

    Raises ``CaptureError`` for an unreadable file.
    """
    decoder = NetflowDecoder(limits)
    stats = ExportPcapStats(decoder=decoder.stats)
    records: list[FlowRecord] = []
    for path in paths:
        decoded = sum(decoder.stats.datagrams.values())
        for _ts, exporter, payload in export_datagrams(path, stats):
            result = decoder.feed(payload, exporter)  # offline: no expiry across files
            records.extend(result.records)
            stats.problems.extend(f"{path}: {exporter}: {p}" for p in result.problems)
        if sum(decoder.stats.datagrams.values()) == decoded:
            stats.without_export.append(str(path))
    stats.waiting_at_end = decoder.finish()
    return records, stats


def read_export_flows(
    paths: Iterable[str | Path],
    local_networks: Iterable[str],
    *,
    limits: Limits | None = None,
) -> tuple[list[Flow], ExportPcapStats]:
    """``read_export_pcap`` then ``FlowRecord.to_flow`` for each record (same order)."""
    records, stats = read_export_pcap(paths, limits=limits)
    orient = Orienter(local_networks)
    return [r.to_flow(orient) for r in records], stats


# -- live: the UDP collector -----------------------------------------------------------------


class NetflowCollector:
    """Receive NetFlow/IPFIX datagrams on ``host:port`` (UDP) in a worker thread.

    ``start`` binds (``CaptureError`` when it cannot: port in use, bad address); ``collect``
    returns the flows decoded since the previous call; ``stop`` stops the thread, closes the
    socket and returns what is left. ``packets`` counts datagrams received, ``kernel_drops``
    datagrams the kernel dropped (socket buffer full; ``None`` where not reported),
    ``stats`` the decoder's counters (read it under ``lock``, or use ``snapshot()``).
    A datagram that could not be decoded entirely becomes an ``Unparsed`` value (source
    ``self.source``, position ``<exporter>@<receive time ns>``) that ``take_unparsed`` hands
    over; at most ``max_unparsed`` wait at a time (the rest are counted in the decoder stats
    only, so a flood of garbage cannot flood the ledger).
    """

    def __init__(
        self,
        local_networks: Iterable[str],
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        limits: Limits | None = None,
        rcvbuf_bytes: int = 8 << 20,
        max_queued_flows: int = MAX_QUEUED_FLOWS,
        max_unparsed: int = 100,
    ) -> None:
        self.host = host
        self.port = port
        #: source name in ledger records: ``netflow:HOST:PORT`` as configured (stable across
        #: restarts; port 0 stays 0 even though the kernel picks one)
        self.source = f"netflow:{host}:{port}"
        self.decoder = NetflowDecoder(limits)
        self.orient = Orienter(local_networks)
        self.rcvbuf_bytes = rcvbuf_bytes
        self.max_queued_flows = max_queued_flows
        self.max_unparsed = max_unparsed
        self._unparsed: list[Unparsed] = []
        self.packets = 0
        self.kernel_drops: int | None = None
        self.lock = threading.Lock()
        self._flows: list[Flow] = []
        self._room = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.error: str | None = None

    @property
    def interface(self) -> str:
        """``HOST:PORT`` (``[HOST]:PORT`` for IPv6; the name ``FlowJudge`` shows for a
        capture)."""
        return join_host_port(self.host, self.port)

    @property
    def stats(self) -> NetflowStats:
        return self.decoder.stats

    def snapshot(self) -> dict[str, object]:
        """The decoder counters as JSON-ready data, read under the lock."""
        with self.lock:
            return self.decoder.stats.to_json()

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (port 0 in the settings: the one the kernel chose)."""
        if self._sock is None:
            return self.host, self.port
        name = self._sock.getsockname()
        return str(name[0]), int(name[1])

    def start(self) -> None:
        """Bind the socket and start the worker thread."""
        if self._thread is not None:
            raise RuntimeError("collector already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_bytes)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
                self.kernel_drops = 0
            except OSError:
                self.kernel_drops = None
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise CaptureError(f"cannot listen for NetFlow on {self.interface}: {exc}") from exc
        self._sock = sock
        self.port = self.address[1]
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"sentinel-netflow-{self.port}", daemon=False
        )
        self._thread.start()

    def _run(self) -> None:
        sock = self._sock
        if sock is None:
            return
        max_size = self.decoder.limits.max_datagram + 1
        anc_size = socket.CMSG_SPACE(4)
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.2)
            except (OSError, ValueError):
                break
            if not ready:
                continue
            while not self._stop.is_set():
                try:
                    data, anc, _flags, addr = sock.recvmsg(max_size, anc_size)
                except BlockingIOError:
                    break
                except OSError as exc:
                    self.error = f"NetFlow socket error: {exc}"
                    self._stop.set()
                    break
                for level, kind, value in anc:
                    if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
                        self.kernel_drops = struct.unpack("=I", value[:4])[0]
                self._handle(data, _exporter(addr[0]))

    def _handle(self, data: bytes, exporter: str) -> None:
        with self._room:
            while len(self._flows) >= self.max_queued_flows and not self._stop.is_set():
                self._room.wait(0.5)  # back-pressure: the socket buffer (and SO_RXQ_OVFL) count
            self.packets += 1
            result = self.decoder.feed(data, exporter, time.monotonic())
            orient = self.orient
            self._flows.extend(r.to_flow(orient) for r in result.records)
            if result.problems and len(self._unparsed) < self.max_unparsed:
                self._unparsed.append(
                    Unparsed(
                        source=self.source,
                        reason="; ".join(result.problems),
                        raw=data,
                        src_pos=f"{exporter}@{time.time_ns()}",
                    )
                )

    def take_unparsed(self) -> list[Unparsed]:
        """The datagrams that could not be decoded since the last call, as ``Unparsed``."""
        with self._room:
            items, self._unparsed = self._unparsed, []
            return items

    def collect(
        self, now_ns: int = 0, idle_timeout_s: float = 0.0, active_timeout_s: float = 0.0
    ) -> list[Flow]:
        """The flows decoded since the last call (the timeouts do not apply: each exported
        record is already a closed flow). Ages out idle exporters and old buffered sets
        (``NetflowDecoder.expire``) even when no datagram arrives."""
        with self._room:
            self.decoder.expire(time.monotonic())
            flows, self._flows = self._flows, []
            self._room.notify_all()
            return flows

    def stop(self) -> list[Flow]:
        """Stop the thread, close the socket, return the flows not yet collected; data sets
        still waiting for a template are counted as missing (``NetflowDecoder.finish``).
        Safe twice."""
        self._stop.set()
        with self._room:
            self._room.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._room:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
                self.decoder.finish()
            flows, self._flows = self._flows, []
            return flows


def _exporter(address: str) -> str:
    """An IPv4-mapped IPv6 source (dual-stack socket) as the IPv4 address."""
    return address[7:] if address.startswith("::ffff:") and "." in address else address
