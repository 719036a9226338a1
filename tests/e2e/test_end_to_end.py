"""End to end: a real docker-registry and real traffic → `sentinel run`'s service → ledger,
metrics, report.

The registry (Debian's docker-registry 2.8.2) writes its application log (json) and access log
to files the service tails, and POSTs its notifications to the service's webhook. skopeo pushes,
pulls, retags, mounts and deletes a small model packaged as an OCI artifact, and fails a login.
Meanwhile packets leave a network namespace over a veth pair the service captures on live.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sentinel.config import DEFAULT_CONFIG_TOML, load_settings
from sentinel.ledger import Ledger
from sentinel.report.build import build_report
from sentinel.report.render import render_html
from sentinel.runtime.service import Service
from sentinel.runtime.setup import init_directory
from sentinel.timefmt import utcnow
from tests.e2e.harness.netns import send_udp_from_ns

pytestmark = [pytest.mark.registry, pytest.mark.root]


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _config(tmp_path: Path, corpus: Path, reg_dir: Path, iface: str) -> str:
    text = DEFAULT_CONFIG_TOML
    text = text.replace(
        '# database = "/usr/share/GeoIP/dbip-city-lite.mmdb"',
        f'database = "{corpus / "geoip" / "GeoIP2-City-Test.mmdb"}"',
    )
    text = text.replace('interface = ""', f'interface = "{iface}"')
    text = text.replace("idle_timeout = 30.0", "idle_timeout = 1.0")
    text = text.replace(
        "# [[audit.files]]\n",
        f'[[audit.files]]\nid = "registry-app"\nformat = "distribution-json"\n'
        f'path = "{reg_dir / "app.log"}"\n\n'
        f'[[audit.files]]\nid = "registry-access"\nformat = "distribution-access"\n'
        f'path = "{reg_dir / "access.log"}"\n\n# [[audit.files]]\n',
    )
    text = text.replace(
        'enabled = false\nlisten = "127.0.0.1:9465"', 'enabled = true\nlisten = "127.0.0.1:0"'
    )
    text = text.replace('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:0"')
    text = text.replace('source = "registry"\nmax_body', 'source = "registry-hook"\nmax_body')
    return text


def _policy(local_networks: list[str]) -> str:
    nets = ", ".join(f'"{n}"' for n in local_networks)
    return (
        "jurisdiction:\n  name: EEA (e2e)\n  allow_countries: [EEA]\n  unknown: violation\n"
        f"local_networks: [{nets}]\nwaivers: []\n"
    )


def _records(service: Service, kind: str) -> list[dict[str, Any]]:
    assert service.ledger is not None
    return [r["data"] for r in service.ledger.query(kind=kind)]


def test_registry_and_traffic_end_to_end(
    tmp_path: Path, corpus: Path, registry: Any, skopeo: Any, oci_model: Any, netns: Any
) -> None:
    site = tmp_path / "site"
    reg_dir = tmp_path / "registry-0"  # where the registry fixture puts its logs
    init_directory(site, config_text=_config(tmp_path, corpus, reg_dir, netns.host_if))
    (site / "policy.yaml").write_text(_policy(netns.local_networks))
    token = (site / "keys" / "webhook.token").read_text().strip()
    settings = load_settings(site / "sentinel.toml")
    started = utcnow()

    service = Service(settings)
    service.start()
    try:
        reg = registry(notify_url=service.webhook_url, token=token)
        assert reg.app_log.parent == reg_dir

        # model traffic through the registry
        v1 = reg.ref("models/resnet50", "v1")
        skopeo.push(oci_model, v1)
        skopeo.pull(v1, tmp_path / "pulled")
        skopeo.copy(v1, reg.ref("models/resnet50", "prod"))
        skopeo.copy(v1, reg.ref("models/resnet50-mirror", "v1"))
        skopeo.delete(reg.ref("models/resnet50", "prod"))
        error = skopeo.failed_login(reg.ref("models/resnet50", "v1"), user="mallory")
        assert "unauthorized" in error

        # egress: one flow to GB (a violation), one to SE (allowed), from the namespace
        send_udp_from_ns(netns, "81.2.69.142", 443, b"model-bytes" * 50, count=5)
        send_udp_from_ns(netns, "89.160.20.112", 443, b"ok", count=3)

        _wait(
            lambda: (
                {"push", "pull", "delete"}
                <= {
                    e["action"]
                    for e in _records(service, "audit_event")
                    if e["source"] == "registry-hook"
                }
            ),
            "notifications of push, pull and delete",
        )
        _wait(
            lambda: any(
                e["action"] == "auth_failure"
                for e in _records(service, "audit_event")
                if e["source"] == "registry-app"
            ),
            "the failed login in the application log",
        )
        _wait(
            lambda: any(
                v["remote_ip"] == "81.2.69.142" for v in _records(service, "egress_violation")
            ),
            "the GB flow judged as a violation",
            timeout=40,
        )
        port = service.metrics_port
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        service.stop()

    # -- the ledger: complete, deduplicated, intact, no secret ---------------------------
    with Ledger.open(settings.ledger_url, log_id=settings.ledger.log_id) as ledger:
        assert ledger.verify().ok
        records = list(ledger.query())
        bodies = [e.body for e in ledger.iter_entries()]
    assert not any(token.encode() in b for b in bodies), "webhook token leaked into the ledger"
    events = [r["data"] for r in records if r["kind"] == "audit_event"]
    hook = [e for e in events if e["source"] == "registry-hook"]
    pushes = [e for e in hook if e["action"] == "push"]
    assert pushes and all(e["actor"] == "alice" and e["actor_verified"] for e in pushes)
    assert any(e["artifact"] == "models/resnet50" and e["reference"] == "v1" for e in pushes)
    assert any(e["action"] == "pull" and e["artifact"] == "models/resnet50" for e in hook)
    assert any(e["action"] == "mount" and e["artifact"] == "models/resnet50-mirror" for e in hook)
    assert any(e["action"] in {"delete", "untag"} for e in hook)
    ids = [e["event_id"] for e in hook]
    assert len(ids) == len(set(ids)), "a notification was recorded twice"
    failures = [e for e in events if e["action"] == "auth_failure"]
    assert any(e["actor"] == "mallory" and not e["actor_verified"] for e in failures)
    access = Counter(e["action"] for e in events if e["source"] == "registry-access")
    assert access["push"] and access["pull"] and access["auth_failure"]

    violations = [r["data"] for r in records if r["kind"] == "egress_violation"]
    gb = [v for v in violations if v["remote_ip"] == "81.2.69.142"]
    assert gb and gb[0]["country"] == "GB" and gb[0]["reason"] == "foreign country"
    assert gb[0]["packets"] == 5 and gb[0]["bytes_out"] == 5 * (20 + 8 + 550)
    assert not [v for v in violations if v["remote_ip"] == "89.160.20.112"]
    summaries = [r["data"] for r in records if r["kind"] == "egress_summary"]
    assert sum(s["by_country"].get("SE", {}).get("flows", 0) for s in summaries) == 1

    # -- sensor health: every source summarized at the stop, the capture with its packets --
    health = {
        (h["source"], h["event"]): h
        for h in (r["data"] for r in records if r["kind"] == "sensor_health")
    }
    cap = health[(f"capture:{netns.host_if}", "summary")]
    assert cap["source_kind"] == "capture" and cap["counts"]["activity"] >= 8
    assert "drops" in cap["counts"]  # the kernel's drop counter, read from the capture socket
    for audit_source in ("file:registry-app", "file:registry-access", "webhook:registry-hook"):
        assert health[(audit_source, "summary")]["counts"]["activity"] > 0

    # -- metrics counted what happened --------------------------------------------------
    text = metrics.decode()
    assert 'sentinel_egress_violations_total{country="GB",reason="foreign country"} 1.0' in text
    assert (
        'sentinel_audit_events_total{action="auth_failure",outcome="failure",source="registry-app"}'
        in text
    )
    assert 'action="push",outcome="success",source="registry-hook"' in text

    # -- the report shows them ------------------------------------------------------------
    data = build_report(
        records,
        start=started.replace(microsecond=0),
        end=utcnow(),
        verification={"status": "valid"},
        jurisdiction="EEA (e2e)",
    )
    html = render_html(data)
    status = {c["key"]: c["status"] for c in data["criteria"]}
    assert status["data_residency"] == "fail"
    assert status["access_control"] == "attention"
    assert "81.2.69.142" in html and "mallory" in html and "models/resnet50" in html
    assert html.count("not checked yet") >= 2
    covered = {c["source"] for c in data["coverage"]["sources"]}
    assert f"capture:{netns.host_if}" in covered and "webhook:registry-hook" in covered
    assert "Coverage of the evidence" in html
