"""End to end: repeated failed logins against a real docker-registry fire the shipped
``auth-failure-burst`` rule through the daemon's service, into the ledger and the metrics.

The registry (Debian's docker-registry 2.8.2) writes its JSON application log and access log
to files the service tails; skopeo pushes a model once (successful traffic the rules must not
flag), then fails to log in as ``mallory`` six times. The audit rules are attached with
``sentinel.runtime.rules_wiring.attach_rules`` (what ``Service.start`` will do once wired).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sentinel.config import DEFAULT_CONFIG_TOML, load_settings
from sentinel.ledger import Ledger
from sentinel.runtime.rules_wiring import attach_rules
from sentinel.runtime.service import Service
from sentinel.runtime.setup import init_directory

pytestmark = [pytest.mark.registry]

FAILED_LOGINS = 6


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _config(reg_dir: Path) -> str:
    text = DEFAULT_CONFIG_TOML.replace(
        "# [[audit.files]]\n",
        f'[[audit.files]]\nid = "registry-app"\nformat = "distribution-json"\n'
        f'path = "{reg_dir / "app.log"}"\n\n'
        f'[[audit.files]]\nid = "registry-access"\nformat = "distribution-access"\n'
        f'path = "{reg_dir / "access.log"}"\n\n# [[audit.files]]\n',
    )
    text = text.replace("poll_interval = 1.0", "poll_interval = 0.2")
    return text.replace('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:0"')


def _failures(service: Service, source: str) -> list[dict[str, Any]]:
    assert service.ledger is not None
    return [
        r["data"]
        for r in service.ledger.query(kind="audit_event")
        if r["data"]["source"] == source and r["data"]["action"] == "auth_failure"
    ]


def _findings(service: Service) -> list[dict[str, Any]]:
    assert service.ledger is not None
    return [r["data"] for r in service.ledger.query(kind="audit_finding")]


def test_failed_logins_fire_the_brute_force_rule(
    tmp_path: Path, registry: Any, skopeo: Any, oci_model: Any
) -> None:
    site = tmp_path / "site"
    reg_dir = tmp_path / "registry-0"  # where the registry fixture puts its logs
    init_directory(site, config_text=_config(reg_dir))
    settings = load_settings(site / "sentinel.toml")

    service = Service(settings)
    service.start()
    try:
        recorder = attach_rules(service)
        assert {r.id for r in recorder.engine.rules} >= {"auth-failure-burst"}
        reg = registry()
        ref = reg.ref("models/resnet50", "v1")
        skopeo.push(oci_model, ref)
        for _ in range(FAILED_LOGINS):
            assert "unauthorized" in skopeo.failed_login(ref, user="mallory")
        _wait(
            lambda: (
                len(_failures(service, "registry-access")) >= FAILED_LOGINS
                and len(_failures(service, "registry-app")) >= FAILED_LOGINS
            ),
            "every failed login in both logs",
        )
        _wait(
            lambda: any(f["rule"] == "auth-failure-burst" for f in _findings(service)),
            "the brute-force finding",
        )
        recorder.flush_findings()  # shutdown closes the aggregation period
        port = service.metrics_port
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        service.stop()

    with Ledger.open(settings.ledger_url, log_id=settings.ledger.log_id) as ledger:
        assert ledger.verify().ok
        records = [r for r in ledger.query()]
    events = [r["data"] for r in records if r["kind"] == "audit_event"]
    failures = [e for e in events if e["action"] == "auth_failure"]
    assert len([e for e in failures if e["source"] == "registry-access"]) >= FAILED_LOGINS
    assert {e["actor"] for e in failures if e["source"] == "registry-app"} == {"mallory"}
    findings = [r["data"] for r in records if r["kind"] == "audit_finding"]
    burst = [f for f in findings if f["rule"] == "auth-failure-burst"]
    opened = [f for f in burst if f["status"] == "open"]
    assert len(opened) == 1, burst  # one finding per address, not one per failure
    first = opened[0]
    assert first["subject"] == "127.0.0.1" and first["severity"] == "medium"
    assert first["details"]["client_ip"] == "127.0.0.1"
    assert first["details"]["actor"] in {"mallory", None}
    # later failures in the period are counted on the aggregated record
    agg = [f for f in burst if f["status"] == "aggregated"]
    total_hits = sum(f["count"] for f in agg) if agg else 1
    assert total_hits >= 2
    # the successful push by alice is no finding of any rule
    assert not [f for f in findings if f["details"].get("actor") == "alice"]
    # the metric counts every hit
    text = metrics.decode()
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith('sentinel_audit_findings_total{rule="auth-failure-burst"')
    )
    assert 'severity="medium"' in line and float(line.rsplit(" ", 1)[1]) == total_hits
