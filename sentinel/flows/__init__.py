"""flows stage: packet sources (pcap/pcapng files, live capture) → bidirectional ``Flow`` records.

Stable entry points for the runtime and the demo:

* ``read_flows(paths, local_networks, *, max_flows, engine) -> (list[Flow], ReadStats)`` — read
  whole capture files, on the vectorized path (``sentinel.flows.vector``, numpy) by default;
* ``CaptureReader`` / ``read_packets`` (``sentinel.flows.pcap``) — raw packet iteration;
* ``Decoder`` (``sentinel.flows.decode``) and ``FlowTable`` (``sentinel.flows.table``) — the
  per-packet path shared with live capture (``sentinel.flows.live.LiveCapture``);
* ``DnsCorrelator`` (``sentinel.flows.dns``) — names from the DNS answers in the same capture,
  attached to the flows that follow them (``Flow.remote_names``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from sentinel.flows.decode import Decoder
from sentinel.flows.dns import DNS_PORT, DnsCorrelator, DnsOptions, observe_dns
from sentinel.flows.pcap import CaptureReader, ReadStats, read_packets
from sentinel.flows.table import FlowTable, Network
from sentinel.records import Flow

__all__ = [
    "DEFAULT_DNS",
    "CaptureReader",
    "Decoder",
    "DnsCorrelator",
    "DnsOptions",
    "FlowTable",
    "ReadStats",
    "observe_dns",
    "read_flows",
    "read_packets",
]

#: DNS correlation as ``read_flows`` does it by default
DEFAULT_DNS = DnsOptions()


def read_flows(
    paths: Iterable[str | Path],
    local_networks: Iterable[str | Network],
    *,
    max_flows: int = 1_000_000,
    engine: Literal["auto", "vector", "scalar"] = "auto",
    dns: DnsOptions | None = DEFAULT_DNS,
) -> tuple[list[Flow], ReadStats]:
    """Read every capture in ``paths`` (in order) into one flow table and drain it.

    Returns the flows (creation order; byte counts are IP lengths in bytes, times aware UTC) and
    the merged ``ReadStats`` (packets, bytes, truncations, decode counters). Packets that carry no
    IP are counted in ``stats.not_ip``, never silently dropped.

    ``engine``: ``"vector"`` (numpy, ``sentinel.flows.vector``) or ``"scalar"`` (``Decoder`` +
    ``FlowTable`` packet by packet) give the same result; ``"auto"`` takes the vectorized path
    and reads again on the scalar one only when there are more than ``max_flows`` flows (the
    scalar table then closes the oldest flows early, as it does live).

    ``dns``: the DNS responses in the captures name the flows' remote addresses
    (``Flow.remote_names``, ``stats.dns`` counts them; ``sentinel.flows.dns``); ``None`` turns
    that off.

    Raises ``CaptureError`` when a file is not a readable capture (bad magic, empty, truncated
    header); damage after valid packets is a counted truncation in the stats instead.
    """
    paths = list(paths)
    networks = tuple(local_networks)
    if engine != "scalar":
        from sentinel.flows.vector import read_flows_vector

        result = read_flows_vector(paths, networks, max_flows=max_flows, dns=dns)
        if result is not None:
            return result
    return _read_flows_scalar(paths, networks, max_flows, dns)


def _read_flows_scalar(
    paths: list[str | Path],
    local_networks: tuple[str | Network, ...],
    max_flows: int,
    dns_options: DnsOptions | None,
) -> tuple[list[Flow], ReadStats]:
    table = FlowTable(local_networks, max_flows=max_flows)
    decoder = Decoder()
    dns = DnsCorrelator(dns_options) if dns_options is not None else None
    stats = ReadStats()
    flows: list[Flow] = []
    decode = decoder.decode
    add = table.add
    for path in paths:
        with CaptureReader(path) as reader:
            for ts_ns, linktype, data, _orig in reader:
                summary = decode(linktype, data)
                if summary is not None:
                    add(ts_ns, summary)
                    if summary[3] == DNS_PORT and dns is not None:
                        observe_dns(dns, decoder, ts_ns, summary)
            stats.merge(reader.stats)
        if table.evicted:
            flows.extend(table.expire(0, 1e12, 1e12))
    flows.extend(table.drain())
    stats.not_ip = decoder.not_ip
    stats.malformed = decoder.malformed
    stats.unsupported_linktype = decoder.unsupported_linktype
    stats.fragments_unmatched = decoder.fragments_unmatched
    stats.tunnels = dict(decoder.tunnels)
    if dns is not None:
        flows = dns.attach(flows)
        stats.dns = dict(dns.counts)
    return flows, stats
