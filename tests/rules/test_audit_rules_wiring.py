"""Audit rules in the daemon's recording path (``sentinel.runtime.rules_wiring``) on both ledger
backends, and the receivers built from the configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from sentinel.config import DEFAULT_CONFIG_TOML, load_settings
from sentinel.errors import ConfigError
from sentinel.ledger import Ledger
from sentinel.metrics import Metrics
from sentinel.policy.audit_rules import AuditRuleEngine, parse_rule
from sentinel.records import AuditEvent, Unparsed
from sentinel.runtime.rules_wiring import (
    RulesRecorder,
    default_rule_paths,
    load_audit_rules,
    syslog_from_settings,
    webhook_from_settings,
)

RULE = b"""id: burst
severity: medium
kind: threshold
match: {actions: [auth_failure]}
count: 3
window_seconds: 60
"""
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def failure(n: int) -> AuditEvent:
    return AuditEvent(
        ts=T0 + timedelta(seconds=n),
        source="reg",
        source_kind="distribution",
        action="auth_failure",
        outcome="failure",
        raw_sha256=f"{n:064x}",
        src_pos=f"f:{n}",
        client_ip="192.0.2.7",
        client_ip_source="socket",
        event_id=f"e{n}",
    )


def test_findings_reach_the_ledger_and_metrics_once(ledger_url: str) -> None:
    metrics = Metrics()
    with Ledger.open(ledger_url, log_id="t") as ledger:
        rec = RulesRecorder(ledger, metrics, AuditRuleEngine([parse_rule(RULE)]))
        batch: list[AuditEvent | Unparsed] = [failure(i) for i in range(4)]
        batch.append(Unparsed(source="reg", reason="junk", raw=b"??", src_pos="f:99"))
        rec.record_audit(batch)
        # the same events again (a redelivery, a re-read file): no new hit, no new finding
        rec.record_audit(batch)
        rec.flush_findings()
        rec.flush_findings()
        findings = [r["data"] for r in ledger.query(kind="audit_finding")]
        assert ledger.verify().ok
    assert [(f["status"], f["count"], f["subject"]) for f in findings] == [
        ("open", 1, "192.0.2.7"),
        ("aggregated", 2, "192.0.2.7"),
    ]
    text = metrics.exposition().decode()
    assert 'sentinel_audit_findings_total{rule="burst",severity="medium"} 2.0' in text
    assert 'sentinel_ledger_appended_records_total{kind="audit_finding"} 2.0' in text


def test_finding_append_failure_is_retried_not_raised(tmp_path: Path) -> None:
    metrics = Metrics()
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'l.db'}", log_id="t")
    rec = RulesRecorder(ledger, metrics, AuditRuleEngine([parse_rule(RULE)]))
    real_append = ledger.append
    calls = {"n": 0}

    def flaky(records, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if records and records[0]["kind"] == "audit_finding" and calls["n"] == 2:
            raise OSError("disk full")
        return real_append(records, **kw)

    ledger.append = flaky  # type: ignore[method-assign]
    try:
        rec.record_audit([failure(i) for i in range(3)])  # events ok, the finding fails
        assert list(ledger.query(kind="audit_finding")) == []
        assert 'sentinel_source_errors_total{source="audit-rules"} 1.0' in (
            metrics.exposition().decode()
        )
        rec.record_audit([failure(10)])  # the pending finding goes in with the next batch
        assert len(list(ledger.query(kind="audit_finding"))) == 1
    finally:
        ledger.close()


def _settings(tmp_path: Path, extra: str = ""):  # type: ignore[no-untyped-def]
    text = DEFAULT_CONFIG_TOML.replace('listen = "127.0.0.1:9465"', 'listen = "127.0.0.1:0"')
    text = text.replace('listen = "127.0.0.1:1514"', 'listen = "127.0.0.1:0"')
    for line in extra.splitlines():
        key = line.split("=", 1)[0].strip()
        text = text.replace(f"# {key} = ", f"{key} = ") if f"# {key} = " in text else text
    (tmp_path / "sentinel.toml").write_text(text)
    return load_settings(tmp_path / "sentinel.toml")


def test_receivers_from_settings(tmp_path: Path, corpus: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "mlflow-webhook.secret").write_text("placeholder-webhook-secret\n")
    settings = _settings(tmp_path, 'mlflow_secret_file = "keys/mlflow-webhook.secret"')
    assert settings.webhook.mlflow_secret_file is not None
    got: list[AuditEvent | Unparsed] = []
    rx = webhook_from_settings(settings, got.extend, "t" * 20)
    rx.start()
    try:
        assert set(rx.routes) == {"/notifications", "/mlflow"}
        assert requests.post(rx.url("/mlflow"), data=b"{}", timeout=5).status_code == 415
    finally:
        rx.stop()
    sl = syslog_from_settings(settings, got.extend)
    try:
        assert sl.server_address[0] == "127.0.0.1" and sl.parser.name == "harbor-audit-syslog"
    finally:
        sl.stop()
    (keys / "mlflow-webhook.secret").write_text("short")
    with pytest.raises(ConfigError) as info:
        webhook_from_settings(settings, got.extend, "t" * 20)
    assert info.value.key == "webhook.mlflow_secret_file"


def test_config_sections_validate(tmp_path: Path) -> None:
    bad = DEFAULT_CONFIG_TOML.replace('format = "harbor-audit-syslog"', 'format = "nope"')
    (tmp_path / "sentinel.toml").write_text(bad)
    settings = load_settings(tmp_path / "sentinel.toml")
    with pytest.raises(ConfigError) as info:
        syslog_from_settings(settings, lambda r: None)
    assert info.value.key == "syslog.format"
    (tmp_path / "sentinel.toml").write_text(
        DEFAULT_CONFIG_TOML.replace('listen = "127.0.0.1:1514"', 'listen = "nowhere"')
    )
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "sentinel.toml")
    assert info.value.key == "syslog.listen"


def test_rule_paths_default_and_configured(tmp_path: Path) -> None:
    assert default_rule_paths(None)[0].name == "audit"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "r.yaml").write_bytes(RULE)
    (tmp_path / "mine" / "bad.yaml").write_text("id: [")
    text = DEFAULT_CONFIG_TOML.replace('# audit_rules = "audit-rules"', 'audit_rules = "mine"')
    (tmp_path / "sentinel.toml").write_text(text)
    settings = load_settings(tmp_path / "sentinel.toml")
    assert default_rule_paths(settings) == [tmp_path.absolute() / "mine"]
    ruleset = load_audit_rules(settings)
    assert [r.id for r in ruleset.rules] == ["burst"] and len(ruleset.errors) == 1


def test_configured_routes_for_harbor_and_more(tmp_path: Path, corpus: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "harbor.token").write_text("harbor-token-0123456789\n")
    routes = (
        '\n[[webhook.routes]]\npath = "/harbor"\nsource = "harbor-hook"\n'
        'format = "harbor-webhook"\nsecret_file = "keys/harbor.token"\n'
    )
    base = DEFAULT_CONFIG_TOML.replace('listen = "127.0.0.1:9465"', 'listen = "127.0.0.1:0"')
    base = base.replace("\n[syslog]\n", routes + "\n[syslog]\n")
    (tmp_path / "sentinel.toml").write_text(base)
    settings = load_settings(tmp_path / "sentinel.toml")
    got: list[AuditEvent | Unparsed] = []
    rx = webhook_from_settings(settings, got.extend, "t" * 20)
    rx.start()
    try:
        body = (
            corpus / "registry-logs/harbor/webhook-artifact-pushed-default-docs.json"
        ).read_bytes()
        headers = {"Content-Type": "application/json"}
        assert (
            requests.post(rx.url("/harbor"), data=body, headers=headers, timeout=5).status_code
            == 401
        )
        headers["Authorization"] = "Bearer harbor-token-0123456789"
        assert requests.post(rx.url("/harbor"), data=body, headers=headers, timeout=5).ok
    finally:
        rx.stop()
    pushed = [r for r in got if isinstance(r, AuditEvent)]
    assert pushed and {(e.source, e.action) for e in pushed} == {("harbor-hook", "push")}

    for bad, key in [
        (routes.replace("harbor-webhook", "no-such-format"), "webhook.routes.0.format"),
        (routes.replace('"/harbor"', '"/notifications"'), "webhook.routes"),
    ]:
        (tmp_path / "sentinel.toml").write_text(base.replace(routes, bad))
        with pytest.raises(ConfigError) as info:
            webhook_from_settings(load_settings(tmp_path / "sentinel.toml"), got.extend, "t" * 20)
        assert info.value.key == key

    # MLflow signs and sends no token: a bearer/HMAC route would take unsigned MLflow events,
    # so such a route is refused when the configuration is loaded
    mlflow = routes.replace("harbor-webhook", "mlflow-webhook")
    for unsigned in (mlflow, mlflow.replace("secret_file", 'auth = "hmac-sha256"\nsecret_file')):
        (tmp_path / "sentinel.toml").write_text(base.replace(routes, unsigned))
        with pytest.raises(ConfigError) as info:
            load_settings(tmp_path / "sentinel.toml")
        assert info.value.key == "webhook.routes.0"
        assert 'needs auth = "mlflow-signature"' in str(info.value)
    signed = routes.replace("harbor-webhook", "mlflow-webhook").replace(
        "secret_file", 'auth = "mlflow-signature"\nsecret_file'
    )
    (tmp_path / "sentinel.toml").write_text(base.replace(routes, signed))
    rx2 = webhook_from_settings(load_settings(tmp_path / "sentinel.toml"), got.extend, "t" * 20)
    parser = rx2.routes["/harbor"].parser
    assert parser.name == "mlflow-webhook"
    assert parser.options.signature_checked_upstream  # type: ignore[attr-defined]
