"""Self-tests of the end-to-end harness on the real components (docker-registry, skopeo, netns)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
from pathlib import Path

import pytest

from .conftest import RegistryFactory, model_payload
from .harness import (
    HarnessError,
    NetNs,
    NotificationListener,
    OciLayout,
    RegistryProcess,
    Skopeo,
    make_model_oci_layout,
    read_model_file,
    require_binary,
    send_udp_from_ns,
)
from .harness.netns import BLACKHOLE_MAC

ACCESS_RE = re.compile(r'^\S+ \S+ (\S+) \[[^\]]+\] "(\w+) (\S+) HTTP/[\d.]+" (\d{3}) ')


def _access_lines(path: Path) -> list[tuple[str, str, str, int]]:
    """(user, method, path, status) of each combined-format line; every line must parse."""
    rows = []
    for line in path.read_text().splitlines():
        m = ACCESS_RE.match(line)
        assert m, f"unparsed access-log line: {line!r}"
        rows.append((m[1], m[2], m[3], int(m[4])))
    return rows


def test_oci_layout_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    a = make_model_oci_layout(tmp_path / "a", name="m", tag="v1", payload=b"weights")
    b = make_model_oci_layout(tmp_path / "b", name="m", tag="v1", payload=b"weights")
    c = make_model_oci_layout(tmp_path / "a", name="m", tag="v2", payload=b"other")
    assert (a.manifest_digest, a.layer_digest) == (b.manifest_digest, b.layer_digest)
    assert c.manifest_digest != a.manifest_digest
    assert read_model_file(tmp_path / "a", "v1") == b"weights"
    assert read_model_file(tmp_path / "a", "v2") == b"other"
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
        "v1",
        "v2",
    ]
    with pytest.raises(KeyError):
        read_model_file(tmp_path / "a", "v3")


@pytest.mark.registry
def test_registry_scenario_leaves_logs_and_notifications(
    tmp_path: Path,
    registry: RegistryFactory,
    skopeo: Skopeo,
    oci_model: OciLayout,
    notification_listener: NotificationListener,
) -> None:
    token = secrets.token_urlsafe(24)
    reg = registry(notification_listener.url, token)
    assert reg.running and reg.pid > 0
    v1 = reg.ref("models/resnet50", "v1")
    prod = reg.ref("models/resnet50", "prod")

    skopeo.push(oci_model, v1)
    skopeo.pull(v1, tmp_path / "pulled")
    assert read_model_file(tmp_path / "pulled", "v1") == model_payload()
    skopeo.copy(v1, prod)
    assert skopeo.inspect(prod)["Digest"] == oci_model.manifest_digest
    skopeo.delete(prod)
    error = skopeo.failed_login(v1)
    assert "unauthorized" in error

    assert notification_listener.wait_for_actions({"push", "pull", "delete"}), (
        f"actions seen: {sorted({str(e.get('action')) for e in notification_listener.events()})}"
    )
    assert reg.stop() is not None
    assert not reg.running

    deliveries = list(notification_listener.deliveries)
    assert {d.headers["authorization"] for d in deliveries} == {f"Bearer {token}"}
    assert {d.headers["content-type"] for d in deliveries} == {
        "application/vnd.docker.distribution.events.v1+json"
    }
    events = notification_listener.events()
    pushed = [
        e
        for e in events
        if e["action"] == "push" and e["target"].get("digest") == oci_model.manifest_digest
    ]
    assert pushed and pushed[0]["actor"]["name"] == "alice"
    assert pushed[0]["target"]["repository"] == "models/resnet50"
    deleted = [e for e in events if e["action"] == "delete"]
    assert deleted[0]["target"]["digest"] == oci_model.manifest_digest

    access = _access_lines(reg.access_log)
    methods = [row[1] for row in access]
    assert methods.count("PUT") >= 3  # blob upload (layer, config) + manifest, twice with retag
    assert methods.count("GET") >= 3
    assert methods.count("DELETE") == 1
    assert sum(1 for row in access if row[3] == 401) >= 1
    # Every skopeo call (6, the failed login included) pings GET /v2/ anonymously first: a 401.
    assert len(skopeo.history) == 6
    assert sum(1 for row in access if row[1:3] == ("GET", "/v2/") and row[3] == 401) >= 6
    assert [row for row in access if row[3] == 401 and row[2] != "/v2/"] == [
        ("-", "GET", "/v2/models/resnet50/manifests/v1", 401)
    ]
    assert any(row[1] == "DELETE" and row[3] == 202 for row in access)

    app = [json.loads(line) for line in reg.app_log.read_text().splitlines() if line.strip()]
    completed = [r for r in app if str(r.get("msg")).startswith("response completed")]
    assert len(completed) == sum(1 for row in access if row[3] != 401)
    # distribution 2.8.2 names the user only on error responses (the notifications carry it always).
    assert {r.get("auth.user.name") for r in completed if r["msg"] == "response completed"} == {
        None
    }
    assert {r["auth.user.name"] for r in completed if r["msg"] != "response completed"} == {"alice"}
    app_methods = [r["http.request.method"] for r in completed]
    assert app_methods.count("PUT") == methods.count("PUT")
    assert app_methods.count("DELETE") == 1
    failures = [
        r
        for r in app
        if r.get("msg") == 'error authenticating user "alice": authentication failure'
    ]
    assert len(failures) == 1


def test_missing_binary_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HarnessError, match="install the Debian package `docker-registry`"):
        RegistryProcess(workdir=tmp_path / "reg").start()
    with pytest.raises(HarnessError, match="`skopeo`"):
        Skopeo(tmp_path / "skopeo")
    with pytest.raises(HarnessError, match="`iproute2`"):
        require_binary("ip", "iproute2")


@pytest.mark.registry
def test_registry_text_formatter(registry: RegistryFactory) -> None:
    reg = registry(log_formatter="text", log_fields={"service": "e2e"})
    reg.stop()
    text = reg.app_log.read_text()
    assert 'level=info msg="listening on 127.0.0.1:' in text
    assert "service=e2e" in text


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def _netns_exists(name: str) -> bool:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return any(line.split()[0] == name for line in out.splitlines() if line.strip())


@pytest.mark.root
def test_netns_sends_udp_captured_on_host_veth(netns: NetNs) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.sendrecv import AsyncSniffer

    assert len(netns.host_if) <= 15 and _link_exists(netns.host_if)
    ready = threading.Event()
    sniffer = AsyncSniffer(
        iface=netns.host_if,
        filter="udp and dst port 443",
        count=7,
        store=True,
        started_callback=ready.set,
    )
    sniffer.start()
    assert ready.wait(5)
    send_udp_from_ns(netns, "81.2.69.142", 443, b"sentinel-e2e", count=5)
    send_udp_from_ns(netns, "2001:db8::7", 443, b"sentinel-e2e-v6", count=2)
    sniffer.join(timeout=10)
    if sniffer.running:
        sniffer.stop()
    packets = list(sniffer.results or [])
    v4 = [p for p in packets if IP in p]
    v6 = [p for p in packets if IPv6 in p]
    assert [(p[IP].src, p[IP].dst, p[UDP].dport) for p in v4] == [
        (netns.ns_ip, "81.2.69.142", 443)
    ] * 5
    assert [(p[IPv6].src, p[IPv6].dst) for p in v6] == [(netns.ns_ip6, "2001:db8::7")] * 2
    assert all(bytes(p[UDP].payload).startswith(b"sentinel-e2e") for p in packets)
    # Addressed to the black-hole gateway, not to the host: the host's IP stack never routes them.
    assert {p[Ether].dst for p in packets} == {BLACKHOLE_MAC}


@pytest.mark.root
def test_netns_cleans_up_after_itself() -> None:
    with NetNs() as ns:
        names = (ns.name, ns.host_if)
        assert _netns_exists(ns.name) and _link_exists(ns.host_if)
        out = ns.exec("ip", "-4", "route", "show", "default").stdout
        assert f"via {ns.gateway_ip}" in out
    assert not _netns_exists(names[0])
    assert not _link_exists(names[1])
