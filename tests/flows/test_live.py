"""Live capture over a veth pair in a network namespace the test creates (needs root)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from sentinel.flows.live import LiveCapture
from tests.waiting import wait_until


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def _veth(net: str, prefix: str) -> Iterator[tuple[str, str]]:
    """A namespace whose end of a veth pair is ``{net}.2/30`` and the host's ``{net}.1/30``,
    198.51.100.0/24 (a "foreign" documentation range) routed out through the host, and static
    neighbours both ways so packets leave without waiting on ARP. Yields (namespace, host
    interface); removes both afterwards."""
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces): run the suite as root, e.g. via .ci/run")
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"sentinel-test-{tag}", f"{prefix}l{tag}", f"{prefix}n{tag}"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{net}.1/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{net}.2/30", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "198.51.100.0/24", "via", f"{net}.1")
        with open(f"/sys/class/net/{host_if}/address") as fh:
            mac = fh.read().strip()
        _ip("-n", ns, "neigh", "add", f"{net}.1", "lladdr", mac, "dev", ns_if)
        ns_mac = subprocess.run(
            ["ip", "-n", ns, "-o", "link", "show", ns_if], capture_output=True, text=True,
            check=True,
        ).stdout.split("link/ether ")[1].split()[0]  # fmt: skip
        _ip("neigh", "add", f"{net}.2", "lladdr", ns_mac, "dev", host_if)
        yield ns, host_if
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _send_from(ns: str, source: str, port: int, count: int) -> None:
    """``count`` UDP datagrams of 100 bytes from ``source``:40404 in ``ns`` to 198.51.100.7."""
    sender = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.bind(({source!r}, 40404))\n"
        f"for i in range({count}):\n"
        f"    s.sendto(b'x' * 100, ('198.51.100.7', {port}))\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", ns, "python3", "-c", sender],
        check=True, capture_output=True, timeout=20,
    )  # fmt: skip


@pytest.mark.root
def test_live_capture_on_veth() -> None:
    with _veth("10.199.0", "st") as (ns, host_if):
        # start() returns with the packet socket bound: what is sent afterwards is captured
        cap = LiveCapture(host_if, ["10.199.0.0/30"], bpf="udp")
        cap.start()
        try:
            _send_from(ns, "10.199.0.2", 5353, 5)
            wait_until(lambda: cap.packets >= 5, "5 captured packets", timeout=5)
        finally:
            flows = cap.stop()
        assert cap.packets == 5
        (flow,) = flows
        assert (flow.protocol, flow.local_ip, flow.local_port) == (17, "10.199.0.2", 40404)
        assert (flow.remote_ip, flow.remote_port) == ("198.51.100.7", 5353)
        assert (flow.packets_out, flow.bytes_out) == (5, 5 * 128)
        # the counter is obtainable; frames the kernel queued before scapy attached the BPF
        # filter (IPv6 router solicitations on the new veth...) may show up as drops
        assert cap.kernel_drops is not None and cap.kernel_drops >= 0


@pytest.mark.root
def test_live_capture_names_flows_from_dns_answers() -> None:
    """An answer the capture sees (10.199.1.1:53 → 10.199.1.2) names the flow that follows."""
    import socket

    import dns.message
    import dns.rrset

    query = dns.message.make_query("far.example", "A", use_edns=False)
    answer = dns.message.make_response(query)
    answer.answer.append(dns.rrset.from_text("far.example.", 30, "IN", "A", "198.51.100.7"))
    with _veth("10.199.1", "sd") as (ns, host_if):
        cap = LiveCapture(host_if, ["10.199.1.0/30"], bpf="udp")
        cap.start()
        try:
            # the answer is on the wire before the sender process starts: it is seen first
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as resolver:
                resolver.bind(("10.199.1.1", 53))
                resolver.sendto(answer.to_wire(), ("10.199.1.2", 40000))
            _send_from(ns, "10.199.1.2", 443, 3)
            wait_until(lambda: cap.packets >= 4, "the answer and 3 packets", timeout=5)
        finally:
            flows = cap.stop()
        (flow,) = [f for f in flows if f.remote_ip == "198.51.100.7"]
        assert [(n.name, n.client, n.resolver, n.ttl) for n in flow.remote_names] == [
            ("far.example", "10.199.1.2", "10.199.1.1", 30)
        ]
        assert cap.dns_counts() == {"responses": 1, "addresses": 1}


@pytest.mark.root
def test_live_capture_bad_interface_is_a_capture_error() -> None:
    from sentinel.errors import CaptureError

    cap = LiveCapture("sentinel-no-such-if", [])
    with pytest.raises(CaptureError, match="sentinel-no-such-if"):
        cap.start()
    assert cap.stop() == []
