"""Bidirectional flow table: packet summaries in, ``sentinel.records.Flow`` out.

A flow is keyed by ``(protocol, local ip, local port, remote ip, remote port)``. "Local" is the
endpoint inside the configured ``local_networks``:

* exactly one endpoint local → that one is local; packets from it count as "out";
* neither local (e.g. a capture taken elsewhere): an endpoint in a private or special range
  (``ipaddress`` ``is_private``: RFC 1918, ULA, loopback, link-local, CGNAT, documentation...) is
  taken as local when the other one is public;
* otherwise (both local — internal traffic — or both equally foreign) the packet is matched
  against an existing flow in either orientation, and a new flow takes the *source* of its first
  packet as local and the destination as remote. Both-local flows are still reported; the policy
  calls them internal because the remote side is inside ``local_networks``.

A flow with neither endpoint in ``local_networks`` is marked ``Flow.orientation_unknown``, as
NetFlow records are (``sentinel.flows.netflow.FlowRecord.to_flow``): which end is ours is a
guess (a foreign client's connection to an unlisted public address of ours has the client as
its first packet's source), so the policy judges both ends and keeps the worse verdict.

``expire`` closes idle flows (no packet for ``idle_timeout_s``) and long ones (first packet older
than ``active_timeout_s``; the next packet opens a new flow). The table holds at most
``max_flows``; when full, the oldest flow is closed early (counted in ``evicted``) and returned by
the next ``expire``/``drain`` — never dropped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sentinel.flows.decode import Summary
from sentinel.records import Flow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: bound on the address → "is local" cache
_CACHE_MAX = 65_536

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def ns_to_datetime(ts_ns: int) -> datetime:
    """UTC nanoseconds since the epoch → aware UTC datetime (microsecond precision)."""
    return _EPOCH + timedelta(microseconds=ts_ns // 1000)


def _addr_str(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


class FlowTable:
    """Aggregate packets into bidirectional flows (see the module docstring).

    ``local_networks`` are CIDR strings or ``ipaddress`` networks. Not thread-safe: guard it with a
    lock when fed from a capture thread.
    """

    def __init__(
        self, local_networks: Iterable[str | Network], *, max_flows: int = 200_000
    ) -> None:
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        self.local_networks: tuple[Network, ...] = tuple(
            n
            if isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network)
            else ipaddress.ip_network(n, strict=False)
            for n in local_networks
        )
        self.max_flows = max_flows
        # key → [packets_out, packets_in, bytes_out, bytes_in, first_ns, last_ns]
        self._flows: dict[tuple[int, bytes, int, bytes, int], list[int]] = {}
        # packed address → 2 in local_networks, 1 private/special range, 0 public
        self._local: dict[bytes, int] = {}
        self._closed: list[Flow] = []
        #: flows closed early because the table was full
        self.evicted = 0
        #: flows created so far
        self.created = 0

    def __len__(self) -> int:
        return len(self._flows)

    def is_local(self, packed: bytes) -> bool:
        """Whether the packed address lies in ``local_networks``."""
        return self._rank(packed) == 2

    def _rank(self, packed: bytes) -> int:
        """2 in ``local_networks``, 1 in a private/special range, 0 public (cached)."""
        hit = self._local.get(packed)
        if hit is None:
            addr = ipaddress.ip_address(packed)
            if any(addr in net for net in self.local_networks if net.version == addr.version):
                hit = 2
            else:
                hit = 1 if addr.is_private or addr.is_multicast else 0
            if len(self._local) >= _CACHE_MAX:
                self._local.clear()
            self._local[packed] = hit
        return hit

    def add(self, ts_ns: int, summary: Summary) -> None:
        """Count one packet ``(protocol, src, dst, src_port, dst_port, ip_bytes)`` at ``ts_ns``."""
        proto, src, dst, sport, dport, length = summary
        local = self._local
        ls = local.get(src)
        if ls is None:
            ls = self._rank(src)
        ld = local.get(dst)
        if ld is None:
            ld = self._rank(dst)
        flows = self._flows
        if ls != ld:
            if ls > ld:
                key = (proto, src, sport, dst, dport)
                out = True
            else:
                key = (proto, dst, dport, src, sport)
                out = False
            rec = flows.get(key)
        else:
            key = (proto, src, sport, dst, dport)
            rec = flows.get(key)
            out = True
            if rec is None:
                rkey = (proto, dst, dport, src, sport)
                rec = flows.get(rkey)
                if rec is not None:
                    key = rkey
                    out = False
        if rec is None:
            if len(flows) >= self.max_flows:
                old_key = next(iter(flows))
                self._closed.append(self.to_flow(old_key, flows.pop(old_key)))
                self.evicted += 1
            self.created += 1
            if out:
                flows[key] = [1, 0, length, 0, ts_ns, ts_ns]
            else:
                flows[key] = [0, 1, 0, length, ts_ns, ts_ns]
            return
        if out:
            rec[0] += 1
            rec[2] += length
        else:
            rec[1] += 1
            rec[3] += length
        if ts_ns > rec[5]:
            rec[5] = ts_ns
        elif ts_ns < rec[4]:
            rec[4] = ts_ns

    def to_flow(self, key: tuple[int, bytes, int, bytes, int], rec: list[int]) -> Flow:
        """The ``Flow`` of one table entry; ``orientation_unknown`` when neither endpoint is
        in ``local_networks``."""
        proto, lip, lport, rip, rport = key
        return Flow(
            protocol=proto,
            local_ip=_addr_str(lip),
            local_port=lport,
            remote_ip=_addr_str(rip),
            remote_port=rport,
            packets_out=rec[0],
            packets_in=rec[1],
            bytes_out=rec[2],
            bytes_in=rec[3],
            first_seen=ns_to_datetime(rec[4]),
            last_seen=ns_to_datetime(rec[5]),
            orientation_unknown=self._rank(lip) < 2 and self._rank(rip) < 2,
        )

    def expire(self, now_ns: int, idle_timeout_s: float, active_timeout_s: float) -> list[Flow]:
        """Close and return flows idle for ``idle_timeout_s`` seconds or older than
        ``active_timeout_s`` seconds at ``now_ns`` (UTC ns), plus any evicted early."""
        idle_before = now_ns - int(idle_timeout_s * 1e9)
        active_before = now_ns - int(active_timeout_s * 1e9)
        done = [
            key
            for key, rec in self._flows.items()
            if rec[5] <= idle_before or rec[4] <= active_before
        ]
        closed, self._closed = self._closed, []
        for key in done:
            closed.append(self.to_flow(key, self._flows.pop(key)))
        return closed

    def drain(self) -> list[Flow]:
        """Close and return every flow (end of a capture or shutdown), in creation order."""
        closed, self._closed = self._closed, []
        closed.extend(self.to_flow(key, rec) for key, rec in self._flows.items())
        self._flows.clear()
        return closed
