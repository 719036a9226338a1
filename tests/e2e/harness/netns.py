"""A throw-away network namespace joined to the host by a veth pair, for live-capture tests.

Layout (``X`` is a free third octet, the names carry a random suffix, interface names ≤ 15 chars)::

    host:  sv<rand>h  10.77.X.1/24  fd00:77:X::1/64        (capture here)
    netns: sv<rand>n  10.77.X.2/24  fd00:77:X::2/64
           default via 10.77.X.254 / fd00:77:X::fe, a gateway that does not exist: its
           neighbour entry is permanent with the MAC 02:00:5e:77:00:fe.

Frames to public test destinations therefore leave the namespace over the veth and appear on the
host end (any AF_PACKET capture sees them), but their destination MAC is not the host's, so the
host's IP stack drops them as PACKET_OTHERHOST: nothing is routed or forwarded onward. IPv4
forwarding is also switched off on the host end. Traffic to 10.77.X.1 / fd00:77:X::1 reaches the
host normally. Needs root and ``ip`` (Debian ``iproute2``); ``HarnessError`` otherwise.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from .errors import HarnessError, require_binary

BLACKHOLE_MAC = "02:00:5e:77:00:fe"
TIMEOUT = 15.0  # seconds per command

_SENDER = r"""
import socket, sys
dst, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = bytes.fromhex(sys.argv[4])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
with socket.socket(fam, socket.SOCK_DGRAM) as s:
    for _ in range(count):
        s.sendto(payload, (dst, port))
"""


def _run(
    *argv: str, check: bool = True, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"timed out after {timeout} s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        raise HarnessError(f"exit {proc.returncode}: {' '.join(argv)}\n{proc.stderr.strip()}")
    return proc


def _used_octets() -> set[int]:
    out = _run("ip", "-o", "-4", "addr", "show").stdout
    used = set()
    for line in out.splitlines():
        for word in line.split():
            if word.startswith("10.77."):
                used.add(int(word.split(".")[2]))
    return used


@dataclass
class NetNs:
    """The namespace and veth pair; a context manager that always deletes what it created."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    octet: int = 0  # 0: pick a free one
    _created_ns: bool = field(default=False, init=False, repr=False)
    _created_link: bool = field(default=False, init=False, repr=False)

    @property
    def name(self) -> str:
        """The namespace name (``ip netns exec NAME …``)."""
        return f"sentinel-e2e-{self.suffix}"

    @property
    def host_if(self) -> str:
        """The host end of the veth pair: capture here."""
        return f"sv{self.suffix}h"

    @property
    def ns_if(self) -> str:
        return f"sv{self.suffix}n"

    @property
    def host_ip(self) -> str:
        return f"10.77.{self.octet}.1"

    @property
    def ns_ip(self) -> str:
        return f"10.77.{self.octet}.2"

    @property
    def gateway_ip(self) -> str:
        return f"10.77.{self.octet}.254"

    @property
    def host_ip6(self) -> str:
        return f"fd00:77:{self.octet:x}::1"

    @property
    def ns_ip6(self) -> str:
        return f"fd00:77:{self.octet:x}::2"

    @property
    def gateway_ip6(self) -> str:
        return f"fd00:77:{self.octet:x}::fe"

    @property
    def local_networks(self) -> list[str]:
        """The namespace side's networks, as a policy's ``local_networks`` would list them."""
        return [f"10.77.{self.octet}.0/24", f"fd00:77:{self.octet:x}::/64"]

    def create(self) -> NetNs:
        require_binary("ip", "iproute2")
        if self.octet == 0:
            free = sorted(set(range(1, 254)) - _used_octets())
            if not free:
                raise HarnessError("no free 10.77.X.0/24 network for a test namespace")
            self.octet = random.choice(free)
        assert len(self.host_if) <= 15 and len(self.ns_if) <= 15
        try:
            _run("ip", "netns", "add", self.name)
            self._created_ns = True
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            self._created_link = True
            _run("ip", "link", "set", self.ns_if, "netns", self.name)
            # Host end: no forwarding, no IPv6 router behaviour, addresses without DAD delay.
            Path(f"/proc/sys/net/ipv4/conf/{self.host_if}/forwarding").write_text("0\n")
            _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
            _run("ip", "-6", "addr", "add", f"{self.host_ip6}/64", "dev", self.host_if, "nodad")
            _run("ip", "link", "set", self.host_if, "up")
            nx = ("ip", "-n", self.name)
            _run(*nx, "link", "set", "lo", "up")
            _run(*nx, "addr", "add", f"{self.ns_ip}/24", "dev", self.ns_if)
            _run(*nx, "-6", "addr", "add", f"{self.ns_ip6}/64", "dev", self.ns_if, "nodad")
            _run(*nx, "link", "set", self.ns_if, "up")
            for gw in (self.gateway_ip, self.gateway_ip6):
                _run(*nx, "neigh", "replace", gw, "lladdr", BLACKHOLE_MAC, "nud", "permanent",
                     "dev", self.ns_if)  # fmt: skip
            _run(*nx, "route", "add", "default", "via", self.gateway_ip, "dev", self.ns_if)
            _run(*nx, "-6", "route", "add", "default", "via", self.gateway_ip6, "dev", self.ns_if)
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        """Delete the veth pair and the namespace created here, by name. Idempotent."""
        errors = []
        if self._created_link:
            proc = _run("ip", "link", "del", self.host_if, check=False)
            # Deleting the namespace also removes its end; the host end may already be gone.
            if proc.returncode != 0 and "Cannot find device" not in proc.stderr:
                errors.append(proc.stderr.strip())
            self._created_link = False
        if self._created_ns:
            proc = _run("ip", "netns", "del", self.name, check=False)
            if proc.returncode != 0:
                errors.append(proc.stderr.strip())
            self._created_ns = False
        if errors:
            raise HarnessError("netns cleanup failed: " + "; ".join(errors))

    def exec(self, *argv: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace (``ip netns exec``); ``HarnessError`` on failure."""
        return _run("ip", "netns", "exec", self.name, *argv, timeout=timeout)

    def __enter__(self) -> NetNs:
        return self.create()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()


def send_udp_from_ns(ns: NetNs, dst_ip: str, dst_port: int, payload: bytes, count: int = 1) -> None:
    """Send ``count`` UDP datagrams of ``payload`` from inside ``ns`` to ``dst_ip:dst_port``.

    They leave over the veth towards the black-hole gateway (see the module docstring) and are
    seen on ``ns.host_if``; they are never routed beyond it. ``ValueError`` for a bad address,
    port or count; ``HarnessError`` when the sender fails.
    """
    ipaddress.ip_address(dst_ip)
    if not 0 < dst_port < 65536 or not 0 < count <= 10_000 or len(payload) > 1400:
        raise ValueError("port 1-65535, count 1-10000, payload ≤ 1400 bytes")
    python = sys.executable if Path(sys.executable).exists() else "python3"
    ns.exec(python, "-c", _SENDER, dst_ip, str(dst_port), str(count), payload.hex())
