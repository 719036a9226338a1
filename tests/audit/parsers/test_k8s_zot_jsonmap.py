"""Kubernetes audit events (falco fixtures), zot audit lines (shape from zot's source) and
jsonmap with a configured mapping; the closed registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.audit.parsers import FACTORIES, PARSERS, ParserOptions, build_parser, load_mapping
from sentinel.audit.parsers.interface import Parser
from sentinel.audit.parsers.jsonmap import JsonMapping, split_path
from sentinel.cli.main import cli
from sentinel.config import AUDIT_FORMATS, AuditFile
from sentinel.errors import ConfigError
from sentinel.records import AuditEvent, Unparsed
from sentinel.timefmt import format_ts
from tests.audit.parsers.util import REG, parse_one, read

K = f"{REG}/kubernetes"


def test_registry_closed_every_kind_builds() -> None:
    assert set(FACTORIES) == set(PARSERS) == set(AUDIT_FORMATS)
    for name in AUDIT_FORMATS:
        parser = build_parser(name, ParserOptions())
        assert isinstance(parser, Parser) and parser.name == name
        AuditFile(id="x", format=name, path=Path("x"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        build_parser("harbor", ParserOptions())


def test_k8s_fixtures(corpus: Path) -> None:
    rows = {}
    for path in sorted((corpus / K).glob("*.jsonl")):
        evs, bad = read(path, "k8s-audit")
        assert not bad, path
        (ev,) = evs
        rows[path.name.split("-falco")[0]] = (
            ev.action,
            ev.outcome,
            ev.actor,
            ev.actor_verified,
            ev.artifact,
            ev.client_ip,
            ev.http_status,
        )
        assert ev.event_id and ":" not in ev.event_id  # the auditID: one event per request
    assert rows == {
        "k8s-audit-create-secret": (
            "config_change",
            "success",
            "minikube-user",
            True,
            "sysdig-agent/secrets/sysdig-agent",
            "10.0.2.15",
            201,
        ),
        "k8s-audit-delete-deployment": (
            "delete",
            "success",
            "minikube-user",
            True,
            "default/deployments/nginx-deployment",
            "192.168.99.1",
            200,
        ),
        "k8s-audit-exec-pod-responsestarted": (  # only a non-final stage: outcome unknown
            "other",
            "unknown",
            "minikube-user",
            True,
            "default/pods/exec/nginx-deployment-7998647bdf-phvq7",
            "192.168.99.1",
            101,
        ),
        "k8s-audit-v1beta1-anonymous-create-namespace": (
            "config_change",
            "success",
            "system:anonymous",
            False,
            "namespaces/foo",
            "192.168.99.1",
            201,
        ),
    }
    (secret,) = read(corpus / K / "k8s-audit-create-secret-falco-fixture.jsonl", "k8s-audit")[0]
    assert format_ts(secret.ts) == "2019-11-18T04:40:56.741993Z"  # stageTimestamp
    # the secret's data is in the raw event but in no event field
    assert "MzFiNGQ0" not in json.dumps(secret.to_json())


def _stages(corpus: Path, name: str) -> dict[str, bytes]:
    """The fixture's event at its own stage and at the stages the API server also logs for
    the same request (same auditID), as the default audit policy (no ``omitStages``) does."""
    line = (corpus / K / name).read_bytes().strip()
    ev = json.loads(line)
    received = {k: v for k, v in ev.items() if k not in ("responseStatus", "responseObject")}
    received.update(stage="RequestReceived", stageTimestamp=ev["requestReceivedTimestamp"])
    complete = {**ev, "stage": "ResponseComplete"}
    complete["stageTimestamp"] = "2030-01-01T00:00:00Z" if "exec" in name else ev["stageTimestamp"]
    return {
        ev["stage"]: line,
        "RequestReceived": json.dumps(received).encode(),
        "ResponseComplete": json.dumps(complete).encode(),
    }


def test_k8s_one_event_per_request_from_its_final_stage(corpus: Path, tmp_path: Path) -> None:
    secret = _stages(corpus, "k8s-audit-create-secret-falco-fixture.jsonl")
    exec_ = _stages(corpus, "k8s-audit-exec-pod-responsestarted-falco-fixture.jsonl")
    delete = _stages(corpus, "k8s-audit-delete-deployment-falco-fixture.jsonl")
    log = tmp_path / "audit.log"
    log.write_bytes(
        b"\n".join(
            [
                secret["RequestReceived"],
                exec_["RequestReceived"],
                delete["RequestReceived"],
                secret["ResponseComplete"],
                exec_["ResponseStarted"],
                delete["ResponseComplete"],
                exec_["ResponseComplete"],
                delete["ResponseComplete"],  # the same final stage again: one event still
            ]
        )
        + b"\n"
    )
    parser = build_parser("k8s-audit", ParserOptions())
    from sentinel.audit.files import parse_file

    items = list(parse_file(log, parser, "k8s"))
    evs = [e for e in items if isinstance(e, AuditEvent)]
    assert len(items) == len(evs) == 4  # 3 requests, the repeated final stage deduped later
    assert parser.stages_merged == 4 and parser.pending == 0  # type: ignore[attr-defined]
    by_id = {e.event_id: e for e in evs}
    assert len(by_id) == 3
    assert [(e.action, e.outcome, e.http_status) for e in by_id.values()] == [
        ("config_change", "success", 201),
        ("delete", "success", 200),
        ("other", "success", 101),
    ]
    assert format_ts(by_id[json.loads(exec_["ResponseComplete"])["auditID"]].ts) == (
        "2030-01-01T00:00:00.000000Z"  # the final stage's time: the exec session ended then
    )
    # through the CLI (and its dedup): 3 events, the delete counted once
    res = CliRunner().invoke(cli, ["audit", "parse", "--format", "k8s-audit", "--json", str(log)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert sorted(r["action"] for r in rows) == ["config_change", "delete", "other"]


def test_k8s_request_seen_only_at_a_non_final_stage_is_kept(corpus: Path, tmp_path: Path) -> None:
    secret = _stages(corpus, "k8s-audit-create-secret-falco-fixture.jsonl")
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(secret["RequestReceived"] + b"\n")
    second.write_bytes(secret["ResponseComplete"] + b"\n")
    evs, bad = read(first, "k8s-audit")  # the file ends: the held stage is recorded
    assert not bad and len(evs) == 1
    assert (evs[0].action, evs[0].outcome) == ("config_change", "unknown")
    assert evs[0].detail == "seen only at stage RequestReceived (no final stage)"
    # stages split over two files of one run are merged (the CLI flushes after the last)
    res = CliRunner().invoke(
        cli, ["audit", "parse", "--format", "k8s-audit", "--json", str(first), str(second)]
    )
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [(r["outcome"], r["http_status"]) for r in rows] == [("success", 201)]
    assert "no audit records found" not in res.stderr  # the first file's stage was held
    # more requests pending than the bound: the oldest is recorded, nothing is lost
    parser = build_parser("k8s-audit", ParserOptions())
    import sentinel.audit.parsers.k8s_audit as k8s

    base = json.loads(secret["RequestReceived"])
    out: list[AuditEvent | Unparsed] = []
    for n in range(k8s.MAX_PENDING + 3):
        raw = json.dumps({**base, "auditID": f"id-{n}"}).encode()
        out += parser.parse(raw, source="k8s", src_pos=f"f:{n}")
    assert [e.event_id for e in out] == ["id-0", "id-1", "id-2"]  # type: ignore[union-attr]
    assert len(parser.flush("k8s")) == k8s.MAX_PENDING  # type: ignore[attr-defined]


def test_k8s_eventlist_forwarded_ips_and_denials() -> None:
    ev = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "auditID": "a1",
        "stage": "ResponseComplete",
        "verb": "get",
        "user": {"username": "eve"},
        "sourceIPs": ["203.0.113.7", "10.0.0.5"],
        "objectRef": {"resource": "secrets", "namespace": "ml", "name": "s3-creds"},
        "responseStatus": {"code": 403},
        "stageTimestamp": "2026-01-01T00:00:00Z",
    }
    ok = {**ev, "auditID": "a2", "responseStatus": {"code": 200}}
    unauth = {
        **ev,
        "auditID": "a3",
        "responseStatus": {"code": 401},
        "user": {"username": "system:anonymous"},
    }
    raw = json.dumps(
        {
            "kind": "EventList",
            "apiVersion": "audit.k8s.io/v1",
            "items": [ev, ok, unauth, {"kind": "Nope"}],
        }
    ).encode()
    out = parse_one("k8s-audit", raw)
    assert [(e.action, e.client_ip, e.client_ip_source) for e in out[:3]] == [  # type: ignore[union-attr]
        ("access_denied", "10.0.0.5", "socket"),
        ("pull", "10.0.0.5", "socket"),
        ("auth_failure", "10.0.0.5", "socket"),
    ]
    assert isinstance(out[3], Unparsed) and "kind is not Event" in out[3].reason
    (v2,) = parse_one("k8s-audit", json.dumps({**ev, "apiVersion": "audit.k8s.io/v2"}).encode())
    assert isinstance(v2, Unparsed) and "unsupported audit apiVersion" in v2.reason


def zot_line(**over: object) -> bytes:
    # the fields zot's SessionAuditLogger writes (pkg/api/session.go), zerolog JSON
    rec: dict[str, object] = {
        "level": "info",
        "clientIP": "127.0.0.1:53204",
        "subject": "alice",
        "action": "PUT",
        "object": "/v2/models/bert/manifests/v1",
        "status": 201,
        "time": "2026-11-29T19:09:53.123456789Z",
        "message": "HTTP API Audit",
    }
    rec.update(over)
    return json.dumps(rec).encode()


def test_zot_audit_lines() -> None:
    d = "sha256:" + "ab" * 32
    cases = [
        (zot_line(), ("push", "models/bert", "v1", None, "alice", True)),
        (
            zot_line(action="DELETE", object=f"/v2/models/bert/manifests/{d}", status=202),
            ("delete", "models/bert", None, d, "alice", True),
        ),
        (
            zot_line(
                action="DELETE", object="/v2/models/bert/manifests/v1", status=202, subject=""
            ),
            ("untag", "models/bert", "v1", None, None, False),
        ),
        (
            zot_line(
                action="POST",
                object=f"/v2/models/x/blobs/uploads/?mount={d}&from=models/bert",
                status=201,
            ),
            ("mount", "models/x", None, d, "alice", True),
        ),
    ]
    for raw, expected in cases:
        (ev,) = parse_one("zot-audit", raw)
        assert isinstance(ev, AuditEvent)
        assert (
            ev.action,
            ev.artifact,
            ev.reference,
            ev.digest,
            ev.actor,
            ev.actor_verified,
        ) == expected
        assert (ev.client_ip, ev.client_ip_source) == ("127.0.0.1", "socket")
    (unix,) = parse_one("zot-audit", zot_line(time=1795979955))
    assert format_ts(unix.ts) == "2026-11-29T19:19:15.000000Z"  # type: ignore[union-attr]
    for raw, reason in [
        (zot_line(message="HTTP API"), "not a zot audit record"),
        (zot_line(time="soon"), "bad time"),
        (b"[1]", "not a zot audit record"),
        (b"{", "not JSON"),
    ]:
        (u,) = parse_one("zot-audit", raw)
        assert isinstance(u, Unparsed) and u.reason.startswith(reason), u.reason


MAPPING_YAML = """
fields:
  ts: time
  action: /event/type
  actor: user.name
  artifact: model.name
  reference: model.version
  client_ip: remote
  http_status: status
time_format: auto
actions:
  model.download: pull
  model.upload: push
default_action: null
actor_verified: true
client_ip_source: socket
"""


def test_jsonmap_with_mapping_file(tmp_path: Path) -> None:
    mfile = tmp_path / "map.yaml"
    mfile.write_text(MAPPING_YAML)
    opts = ParserOptions(
        mapping=load_mapping(mfile), zone=UTC, clock=lambda: datetime(2026, 12, 1, tzinfo=UTC)
    )
    line = {
        "time": "2026-11-29 19:09:53",
        "event": {"type": "model.download"},
        "user": {"name": "alice"},
        "model": {"name": "bert", "version": 3},
        "remote": "10.1.2.3",
        "status": 200,
    }
    (ev,) = parse_one("jsonmap", json.dumps(line).encode(), opts)
    assert isinstance(ev, AuditEvent)
    assert (ev.action, ev.outcome, ev.actor, ev.actor_verified, ev.artifact, ev.reference) == (
        "pull",
        "success",
        "alice",
        True,
        "bert",
        "3",
    )
    assert (ev.client_ip_source, ev.ts_zone_assumed, ev.source_kind) == ("socket", "UTC", "jsonmap")
    (u,) = parse_one(
        "jsonmap", json.dumps({**line, "event": {"type": "model.view"}}).encode(), opts
    )
    assert isinstance(u, Unparsed) and u.reason == "unmapped action 'model.view'"
    (u2,) = parse_one("jsonmap", json.dumps({"event": {"type": "model.upload"}}).encode(), opts)
    assert isinstance(u2, Unparsed) and u2.reason == "no time at 'time'"
    (syslog,) = parse_one("jsonmap", json.dumps({**line, "time": "Nov 29 19:09:53"}).encode(), opts)
    assert format_ts(syslog.ts) == "2026-11-29T19:09:53.000000Z"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fields: {ts: t}\n", "fields.action"),
        ("fields: {ts: t, action: a}\nactions: {x: steal}\n", "actions.x"),
        ("fields: {ts: t, action: a, actor: 'a b'}\n", "fields.actor"),
        ("fields: {ts: t, action: a}\ntime_format: '__import__(\"os\")'\n", "time_format"),
        ("fields: {ts: t, action: a}\neval: 1\n", "eval"),
        ("- not a mapping\n", ""),
        ("fields: [\n", ""),
    ],
)
def test_jsonmap_mapping_validated(tmp_path: Path, text: str, problem: str) -> None:
    mfile = tmp_path / "bad.yaml"
    mfile.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_mapping(mfile)
    assert problem in str(info.value)


def test_jsonmap_default_reimports_sentinel_output(corpus: Path, tmp_path: Path) -> None:
    src = corpus / REG / "distribution-live" / "registry-app-json.log"
    res = CliRunner().invoke(
        cli, ["audit", "parse", "--format", "distribution-json", "--json", str(src)]
    )
    assert res.exit_code == 0
    out = tmp_path / "events.jsonl"
    out.write_text(res.stdout)
    again = CliRunner().invoke(cli, ["audit", "parse", "--format", "jsonmap", "--json", str(out)])
    assert again.exit_code == 0, again.stderr
    first = [json.loads(line) for line in res.stdout.splitlines()]
    second = [json.loads(line) for line in again.stdout.splitlines()]
    keep = (
        "ts",
        "action",
        "outcome",
        "actor",
        "actor_verified",
        "artifact",
        "reference",
        "digest",
        "client_ip",
        "client_ip_source",
        "http_status",
    )
    assert [{k: r[k] for k in keep} for r in first] == [{k: r[k] for k in keep} for r in second]


def test_split_path() -> None:
    assert split_path("a.b.0") == ("a", "b", "0")
    assert split_path("/a~1b/c~0d") == ("a/b", "c~d")
    with pytest.raises(ValueError):
        split_path("a..b")
    assert (
        JsonMapping.model_validate({"fields": {"ts": "t", "action": "a"}}).default_action == "other"
    )
