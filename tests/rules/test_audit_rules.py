"""Audit rules: every shipped rule against its sample and expected findings (one generated test
per rule file), schema validation of bad files, the CLI, window and aggregation semantics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli.main import cli
from sentinel.errors import ConfigError
from sentinel.geo.database import GeoDatabase
from sentinel.policy.audit_rules import (
    AuditRuleEngine,
    iter_events_jsonl,
    load_rule_file,
    load_rules,
    parse_rule,
    rule_json_schema,
)
from sentinel.policy.egress import EgressPolicy
from sentinel.records import AuditEvent

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules" / "audit"
SAMPLES = RULES / "samples"
SHIPPED = sorted(RULES.glob("*.yaml"))
GEOIP = "geoip/GeoIP2-City-Test.mmdb"


def test_rules_are_shipped() -> None:
    assert len(SHIPPED) >= 3
    kinds = {load_rule_file(p).model.kind for p in SHIPPED}
    assert kinds == {"foreign_client", "actor_policy", "threshold"}


@pytest.mark.parametrize("rule_file", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_rule_gives_its_expected_findings(rule_file: Path, corpus: Path) -> None:
    rule = load_rule_file(rule_file)
    sample = SAMPLES / f"{rule.id}.jsonl"
    expected_file = SAMPLES / f"{rule.id}.expected.jsonl"
    assert sample.is_file() and expected_file.is_file(), f"{rule.id} needs a sample + expected"
    expected = [json.loads(line) for line in expected_file.read_text().splitlines()]
    assert expected, "a sample must make the rule fire"
    with sample.open("rb") as fh:
        events = list(iter_events_jsonl(fh))
    policy = EgressPolicy.load(REPO / "rules" / "egress-policy.yaml")
    with GeoDatabase.open(corpus / GEOIP) as geo:
        engine = AuditRuleEngine([rule], geo=geo, policy=policy)
        findings, hits = engine.observe(events)
        findings += engine.flush()
    assert [f.to_json() for f in findings] == expected
    assert len(hits) >= len([f for f in findings if f.status == "open"])
    # the dry-run command prints the same findings
    result = CliRunner().invoke(
        cli,
        [
            "rules",
            "test",
            str(rule_file),
            str(sample),
            "--geoip",
            str(corpus / GEOIP),
            "--policy",
            str(REPO / "rules" / "egress-policy.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert printed == expected
    assert f"{len(findings)} findings" in result.stderr


def test_rules_test_by_id_and_on_a_raw_log(corpus: Path, tmp_path: Path) -> None:
    # the corpus distribution app log holds two failed logins from 127.0.0.1
    rule = tmp_path / "two.yaml"
    rule.write_text(
        "id: two-failures\nseverity: low\nkind: threshold\n"
        "match: {actions: [auth_failure]}\ncount: 2\nwindow_seconds: 86400\n"
        "group_by: client_ip\n"
    )
    log = corpus / "registry-logs/distribution-live/registry-app-json.log"
    result = CliRunner().invoke(
        cli, ["rules", "test", str(rule), str(log), "--format", "distribution-json"]
    )
    assert result.exit_code == 0, result.output
    findings = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(f["rule"], f["subject"]) for f in findings] == [("two-failures", "127.0.0.1")]
    assert findings[0]["details"]["action"] == "auth_failure"
    by_id = CliRunner().invoke(
        cli, ["rules", "test", "auth-failure-burst", str(SAMPLES / "auth-failure-burst.jsonl")]
    )
    assert by_id.exit_code == 0 and "auth-failure-burst" in by_id.stdout
    missing = CliRunner().invoke(cli, ["rules", "test", "no-such-rule", str(log)])
    assert missing.exit_code == 2 and "no-such-rule" in missing.stderr


BAD = {
    "not-yaml.yaml": ("id: x\nseverity: [unclosed\n", None, "not valid YAML"),
    "python-tag.yaml": (
        "id: x\nseverity: high\nkind: threshold\ncount: !!python/object/apply:os.system [id]\n",
        None,
        "not valid YAML",
    ),
    "no-kind.yaml": ("id: x\nseverity: high\n", "kind", "missing"),
    "bad-kind.yaml": ("id: x\nseverity: high\nkind: eval\n", "kind", ""),
    "import-key.yaml": (
        "id: x\nseverity: high\nkind: threshold\ncount: 3\nwindow_seconds: 60\nimport: os\n",
        "import",
        "Extra inputs",
    ),
    "bad-action.yaml": (
        "id: x\nseverity: high\nkind: threshold\ncount: 3\nwindow_seconds: 60\n"
        "match: {actions: [pul]}\n",
        "match.actions",
        "unknown action",
    ),
    "bad-window.yaml": (
        "id: x\nseverity: high\nkind: actor_policy\n"
        "change_windows: [{days: [mon], start: '19:00', end: '07:00'}]\n",
        "change_windows.0",
        "before end",
    ),
    "bad-group.yaml": (
        "id: x\nseverity: high\nkind: actor_policy\nallowed_groups: [admins]\n",
        None,
        "not defined",
    ),
    "bad-severity.yaml": (
        "id: x\nseverity: urgent\nkind: threshold\ncount: 3\nwindow_seconds: 60\n",
        "severity",
        "",
    ),
    "bad-id.yaml": ("id: 'X Y'\nseverity: high\nkind: foreign_client\n", "id", "must match"),
    "list.yaml": ("- id: x\n", None, "expected a mapping"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_rule_files_are_rejected_with_file_and_key(name: str, tmp_path: Path) -> None:
    text, key, words = BAD[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rule_file(path)
    err = info.value
    assert err.path == str(path)
    if key is not None:
        assert err.key == key, err.diagnostics()
    assert words in err.diagnostics()


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    for p in SHIPPED:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "broken.yaml").write_text(BAD["import-key.yaml"][0])
    (tmp_path / "dupe.yml").write_text((RULES / "auth-failure-burst.yaml").read_text())
    (tmp_path / "big.yaml").write_text("# " + "x" * 70_000)
    (tmp_path / "notes.txt").write_text("not a rule")
    ruleset = load_rules([tmp_path])
    assert sorted(r.id for r in ruleset.rules) == sorted(p.stem for p in SHIPPED)
    problems = {Path(e.path).name: e for e in ruleset.errors}
    assert set(problems) == {"broken.yaml", "dupe.yml", "big.yaml"}
    assert problems["dupe.yml"].key == "id" and "duplicate" in problems["dupe.yml"].problem

    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "broken.yaml: import: Extra inputs are not permitted" in result.stderr
    assert result.stdout.count("ok  ") == len(SHIPPED)
    good = CliRunner().invoke(cli, ["rules", "check", *map(str, SHIPPED)])
    assert good.exit_code == 0 and "3 valid, 0 invalid" in good.stderr
    missing = CliRunner().invoke(cli, ["rules", "check", str(tmp_path / "nothing-here")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr  # a bad argument
    # a file named twice (directory + file) is checked once, not a duplicate of itself
    twice = CliRunner().invoke(cli, ["rules", "check", str(RULES), str(SHIPPED[0])])
    assert twice.exit_code == 0 and "3 valid, 0 invalid" in twice.stderr


def test_every_validation_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("id: 'X Y'\nseverity: urgent\nkind: threshold\ncount: 3\n")
    with pytest.raises(ConfigError) as info:
        load_rule_file(path)
    text = info.value.diagnostics()
    # the id pattern, the unknown severity and the missing window, in one message
    assert "must match" in text and "severity" in text and "window_seconds" in text


def test_rules_test_warns_when_a_location_rule_has_no_geoip(corpus: Path) -> None:
    rule = RULES / "foreign-client-access.yaml"
    sample = RULES / "samples" / "foreign-client-access.jsonl"
    bare = CliRunner().invoke(cli, ["rules", "test", str(rule), str(sample)])
    assert bare.exit_code == 0 and "no GeoIP database is given" in bare.stderr
    geoip = corpus / "geoip" / "GeoIP2-City-Test.mmdb"
    located = CliRunner().invoke(
        cli, ["rules", "test", str(rule), str(sample), "--geoip", str(geoip)]
    )
    assert located.exit_code == 0 and "warning" not in located.stderr
    other = CliRunner().invoke(
        cli,
        [
            "rules",
            "test",
            str(RULES / "auth-failure-burst.yaml"),
            str(RULES / "samples" / "auth-failure-burst.jsonl"),
        ],
    )
    assert other.exit_code == 0 and "warning" not in other.stderr


def test_default_paths_and_schema_export() -> None:
    result = CliRunner().invoke(cli, ["--config", "/nonexistent.toml", "rules", "check"])
    assert result.exit_code == 2  # an explicit config that does not exist is an error
    shipped = CliRunner().invoke(cli, ["rules", "check"])
    assert shipped.exit_code == 0 and "foreign-client-access" in shipped.stdout
    schema = json.loads(CliRunner().invoke(cli, ["rules", "check", "--schema"]).stdout)
    assert set(schema["discriminator"]["mapping"]) == {
        "foreign_client",
        "actor_policy",
        "threshold",
    }
    assert schema == rule_json_schema()


# -- semantics ----------------------------------------------------------------------------------

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def failure(n: int, ip: str, seconds: float, actor: str | None = None) -> AuditEvent:
    return AuditEvent(
        ts=T0 + timedelta(seconds=seconds),
        source="reg",
        source_kind="distribution",
        action="auth_failure",
        outcome="failure",
        raw_sha256="",
        src_pos="",
        actor=actor,
        client_ip=ip,
        client_ip_source="socket",
        event_id=f"e{n}",
    )


def threshold_rule(**extra: object) -> str:
    lines = [
        "id: burst",
        "severity: medium",
        "kind: threshold",
        "match: {actions: [auth_failure]}",
        "count: 3",
        "window_seconds: 60",
        "aggregate_seconds: 600",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def test_sliding_window_and_aggregation_across_batches() -> None:
    engine = AuditRuleEngine([parse_rule(threshold_rule().encode())])
    f1, h1 = engine.observe([failure(1, "192.0.2.1", 0), failure(2, "192.0.2.1", 30)])
    assert f1 == [] and h1 == []
    f2, _ = engine.observe([failure(3, "192.0.2.1", 59)])
    assert [(f.status, f.count, f.subject) for f in f2] == [("open", 1, "192.0.2.1")]
    # 61 s after the first: the first drops out of the window, 30..61 still holds 3
    f3, h3 = engine.observe([failure(4, "192.0.2.1", 61)])
    assert f3 == [] and len(h3) == 1
    assert engine.flush(T0 + timedelta(seconds=300)) == []  # period (600 s) not over yet
    closed = engine.flush(T0 + timedelta(seconds=700))
    assert [(f.status, f.count) for f in closed] == [("aggregated", 2)]
    assert closed[0].first_seen == T0 + timedelta(seconds=59)
    assert closed[0].last_seen == T0 + timedelta(seconds=61)
    assert engine.flush() == []
    # a new burst later is a new open finding
    later = [failure(10 + i, "192.0.2.1", 2000 + i) for i in range(3)]
    assert [f.status for f in engine.observe(later)[0]] == ["open"]


def test_threshold_memory_is_bounded() -> None:
    rule = parse_rule(threshold_rule(max_keys=50).encode())
    engine = AuditRuleEngine([rule])
    engine.observe(failure(i, f"10.0.{i // 250}.{i % 250}", i) for i in range(2000))
    assert len(rule._stamps) == 50
    engine.observe(failure(5000 + i, "192.0.2.9", i) for i in range(1000))
    assert len(rule._stamps["192.0.2.9"]) <= 3


def test_group_by_actor_skips_events_without_one() -> None:
    engine = AuditRuleEngine([parse_rule(threshold_rule(group_by="actor").encode())])
    events = [failure(i, f"192.0.2.{i}", i, actor="mallory") for i in range(3)]
    events += [failure(10 + i, "192.0.2.50", i) for i in range(5)]
    findings, _ = engine.observe(events)
    assert [f.subject for f in findings] == ["mallory"]


def test_foreign_client_with_explicit_countries_and_internal_addresses(corpus: Path) -> None:
    rule = parse_rule(
        b"id: eu-only\nseverity: high\nkind: foreign_client\nallow_countries: [EU]\n"
        b"header_addresses: ignore\n"
    )
    base = failure(0, "x", 0)
    from dataclasses import replace

    events = [
        replace(
            base,
            action="pull",
            outcome="success",
            client_ip=ip,
            client_ip_source=src,
            event_id=f"p{i}",
        )
        for i, (ip, src) in enumerate(
            [
                ("89.160.20.112", "socket"),
                ("81.2.69.142", "socket"),
                ("81.2.69.142", "header"),
                ("10.1.2.3", "socket"),
                ("::ffff:81.2.69.142", "socket"),
                ("not-an-ip", "socket"),
            ]
        )
    ]
    with GeoDatabase.open(corpus / GEOIP) as geo:
        findings, _ = AuditRuleEngine([rule], geo=geo).observe(events)
    # SE is in the EU; GB is not; the header address is ignored; private is never foreign;
    # IPv4-mapped IPv6 is the IPv4 address (the same subject: aggregated); a logged address
    # that is not an IP address is an unknown location: fail closed
    assert events[4].client_ip == "81.2.69.142"
    assert [(f.subject, f.details["country"]) for f in findings] == [
        ("81.2.69.142", "GB"),
        ("(not an IP address)", None),
    ]
    assert "'not-an-ip' is not an IP address" in findings[1].message


def test_foreign_client_without_policy_or_countries_is_a_config_error() -> None:
    rule = parse_rule(b"id: f\nseverity: high\nkind: foreign_client\n")
    event = failure(0, "81.2.69.142", 0)
    from dataclasses import replace

    with pytest.raises(ConfigError, match="egress policy"):
        AuditRuleEngine([rule]).observe([replace(event, action="pull")])


def test_disabled_rule_and_match_on_source() -> None:
    off = parse_rule(threshold_rule(enabled="false").encode())
    assert AuditRuleEngine([off]).observe(failure(i, "192.0.2.1", i) for i in range(5)) == ([], [])
    other = parse_rule(
        threshold_rule().replace("{actions: [auth_failure]}", "{sources: [elsewhere]}").encode()
    )
    assert AuditRuleEngine([other]).observe(failure(i, "192.0.2.1", i) for i in range(5))[0] == []
