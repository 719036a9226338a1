"""Harbor: audit log (syslog-forwarded and file) and webhooks, on the corpus' harbor/ samples."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sentinel.audit.parsers import ParserOptions
from sentinel.audit.parsers.harbor_audit import split_resource
from sentinel.records import AuditEvent, Unparsed
from sentinel.timefmt import format_ts
from tests.audit.parsers.util import REG, parse_one, read

H = f"{REG}/harbor"


def test_audit_file_corpus(corpus: Path) -> None:
    evs, bad = read(corpus / H / "harbor-audit-syslog.log", "harbor-audit-file")
    assert not bad
    got = [(e.action, e.actor, e.artifact, e.reference, e.digest) for e in evs]
    assert got == [
        ("delete", "admin", "test01/photon", None, None),
        (
            "delete",
            "admin",
            "test01/photon",
            None,
            "sha256:c371b24a3d8a0f52c5677215307fa760d3712924f55c0e07af2869bffc32a0ed",
        ),
        ("push", "admin", "library/golang", "1.18.3", None),
        (
            "delete",
            "admin",
            "library/nginx",
            None,
            "sha256:b71d05f4134bef16ca13143f5ff72a10aee23b05c2421e3f503c3f294bffa1c3",
        ),
        ("delete", None, "1", None, None),  # 2.9: operator="" resourceType="project"
    ]
    # a project delete removes every repository in it; Harbor logged only the project id
    assert evs[4].detail == (
        "project id 1 deleted (Harbor logged the project id, not its name): "
        "every repository in it is deleted"
    )
    # the operation time (Go time.String(), nanoseconds) wins over the syslog header
    assert format_ts(evs[0].ts) == "2022-07-19T06:54:41.148677Z"
    assert format_ts(evs[4].ts) == "2023-10-18T07:43:52.725217Z"
    # Harbor's audit log has no result and no client address (DESIGN.md known trap)
    assert {e.outcome for e in evs} == {"unknown"}
    assert {e.client_ip for e in evs} == {None}
    assert all(e.ts_zone_assumed is None for e in evs)
    assert [e.actor_verified for e in evs] == [True, True, True, True, False]


def test_audit_syslog_wire_forms() -> None:
    body = (
        b'2024-03-01T10:00:00Z [INFO] [/pkg/audit/manager.go:76][operator="ci-bot" '
        b'time="2024-03-01 10:00:00.5 +0000 UTC m=+1.0"]: action:pull, resource:models/bert:v2'
    )
    # Go log/syslog over TCP: <PRI>RFC3339 host tag[pid]: msg
    (ev,) = parse_one("harbor-audit-syslog", b"<134>2024-03-01T10:00:00Z core audit[1]: " + body)
    assert isinstance(ev, AuditEvent)
    assert (ev.action, ev.actor, ev.artifact, ev.reference) == (
        "pull",
        "ci-bot",
        "models/bert",
        "v2",
    )
    # RFC 5424
    (ev5,) = parse_one(
        "harbor-audit-syslog", b"<134>1 2024-03-01T10:00:00Z core audit 1 - - " + body
    )
    assert isinstance(ev5, AuditEvent) and ev5.action == "pull"
    # 2.13+ record: result and description present, untag of a tag
    new = (
        b"Mar  1 10:00:01 core audit[1]: 2024-03-01T10:00:01Z [INFO] [/pkg/audit/m.go:1]"
        b'[operator="alice"]: action:delete, resource:models/bert:v2, resourceType:tag, '
        b"operation_description:delete tag v2, operation_result:false"
    )
    (ev2,) = parse_one("harbor-audit-file", new)
    assert isinstance(ev2, AuditEvent)
    assert (ev2.action, ev2.outcome, ev2.detail) == ("untag", "failure", "delete tag v2")
    # login and a robot created
    login = new.replace(
        b"action:delete, resource:models/bert:v2, resourceType:tag",
        b"action:login, resource:alice, resourceType:user",
    )
    # (operation_result:false carried over: a failed login, sweep finding 10)
    assert parse_one("harbor-audit-file", login)[0].action == "auth_failure"  # type: ignore[union-attr]
    ok = login.replace(b"operation_result:false", b"operation_result:true")
    assert parse_one("harbor-audit-file", ok)[0].action == "login"  # type: ignore[union-attr]


def test_audit_time_falls_back_to_syslog_header_with_zone() -> None:
    line = (
        b'Nov 29 19:09:53 h audit[1]: not-a-time [INFO] [/x.go:1][operator="a"]: '
        b"action:pull, resource:p/r:1"
    )
    (item,) = parse_one("harbor-audit-file", line)
    assert isinstance(item, Unparsed)  # the record layout itself is broken
    ok = (
        b'Nov 29 19:09:53 h audit[1]: 2026-13-29T19:09:53Z [INFO] [/x.go:1][operator="a"]: '
        b"action:pull, resource:p/r:1"
    )
    opts = ParserOptions(clock=lambda: datetime(2026, 11, 30, tzinfo=UTC))
    (ev,) = parse_one("harbor-audit-file", ok, opts)
    assert isinstance(ev, AuditEvent)
    assert (format_ts(ev.ts), ev.ts_zone_assumed) == ("2026-11-29T19:09:53.000000Z", "UTC")


def test_other_harbor_components_are_rejected_with_reason(corpus: Path) -> None:
    for name, tag in [
        ("harbor-core-syslog-local-time.log", "core"),
        ("harbor-jobservice-multiline-syslog.log", "jobservice"),
        ("harbor-registry-panic-multiline-syslog.log", "registry"),
    ]:
        evs, bad = read(corpus / H / name, "harbor-audit-file")
        assert not evs
        assert bad and {u.reason for u in bad} == {
            f"not a Harbor audit record (syslog tag {tag!r})"
        }


def test_split_resource() -> None:
    d = "sha256:" + "a" * 64
    assert split_resource("p/r") == ("p/r", None, None)
    assert split_resource("p/r:1.0") == ("p/r", "1.0", None)
    assert split_resource(f"p/r:{d}") == ("p/r", None, d)
    assert split_resource(f"p/r@{d}") == ("p/r", None, d)
    assert split_resource("reg:5000/p/r") == ("reg:5000/p/r", None, None)
    assert split_resource("") == (None, None, None)


def test_webhooks_default_and_cloudevents(corpus: Path) -> None:
    pairs = {
        "artifact-deleted": ("delete", "harbor-jobservice", "3.8"),
        "artifact-pulled": (
            "pull",
            "robot$harbor+wHSYCuGD-Trivy-8e2e7505-d1e6-11ed-9e71-0242ac130009",
            None,
        ),
        "artifact-pushed": ("push", "harbor-jobservice", None),
        # a trigger type (MANUAL, auto) in "operator" is no actor: it goes to detail
        "tag-retention-finished": ("delete", None, "3.8"),
        "quota-exceeded": ("push", None, None),
        "scanning-completed": ("other", None, None),
        "scanning-failed": ("other", None, None),
        "replication-status-changed": ("other", None, None),
    }
    failures = {"quota-exceeded", "scanning-failed"}
    for kind, (action, actor, ref) in pairs.items():
        formats = ["default"] if kind == "artifact-pushed" else ["default", "cloudevents"]
        if kind == "artifact-pulled":
            formats = ["default"]
        for fmt in formats:
            evs, bad = read(corpus / H / f"webhook-{kind}-{fmt}-docs.json", "harbor-webhook")
            assert not bad, (kind, fmt)
            (ev,) = evs
            assert (ev.action, ev.actor, ev.reference, ev.outcome) == (
                action,
                actor,
                ref,
                "failure" if kind in failures else "success",
            )
            assert ev.actor_verified is (actor is not None)
            if fmt == "cloudevents":
                assert ev.event_id and ev.request_id
            else:  # no id in the payload: derived from its canonical content
                assert ev.event_id and ev.event_id.startswith("payload-sha256:")
    (ev,) = read(corpus / H / "webhook-artifact-deleted-cloudevents-docs.json", "harbor-webhook")[0]
    assert (ev.artifact, ev.digest, format_ts(ev.ts), ev.event_id) == (
        "harbor/alpine",
        "sha256:2bb501e6173d9d006e56de5bce2720eb06396803300fe1687b58a7ff32bf4c14",
        "2023-04-03T06:16:38.000000Z",
        "343f1623-7cba-487c-88f1-c5ebf55e93aa",
    )
    (pull,) = read(corpus / H / "webhook-artifact-pulled-default-docs.json", "harbor-webhook")[0]
    assert format_ts(pull.ts) == "2023-04-03T06:12:52.000000Z"  # occur_at 1680502372


def test_invalid_json_cloudevents_rejected_cleanly(corpus: Path) -> None:
    for name in (
        "webhook-artifact-pushed-cloudevents-docs.jsonc.txt",  # // comments
        "webhook-artifact-pulled-cloudevents-docs.jsonc.txt",  # missing comma
        "webhook-slack-rendered-message-docs.txt",
    ):
        evs, bad = read(corpus / H / name, "harbor-webhook")
        assert not evs
        (u,) = bad
        assert u.reason.startswith("not JSON: "), u.reason


def test_webhook_capture_record_and_many_resources() -> None:
    import json

    body = {
        "specversion": "1.0",
        "id": "e1",
        "type": "harbor.artifact.pushed",
        "time": "2024-01-01T00:00:00Z",
        "operator": "ci",
        "data": {
            "resources": [
                {"digest": "sha256:" + "1" * 64, "tag": "v1"},
                {"digest": "sha256:" + "2" * 64, "tag": "v2"},
            ],
            "repository": {"namespace": "m", "name": "bert"},
        },
    }
    capture = {"received_at": "x", "path": "/harbor", "headers": {}, "body": json.dumps(body)}
    evs = parse_one("harbor-webhook", json.dumps(capture).encode())
    assert [(e.artifact, e.reference, e.event_id) for e in evs if isinstance(e, AuditEvent)] == [
        ("m/bert", "v1", "e1"),
        ("m/bert", "v2", "e1#1"),
    ]
    (u,) = parse_one("harbor-webhook", b'{"hello": 1}')
    assert isinstance(u, Unparsed) and "no type/event_data" in u.reason


def test_audit_2_13_description_login_failure_and_redaction() -> None:
    # Harbor 2.13+ pkg/auditext: "action:%s, resource:%s, operation_description:%s"
    line = (
        b"<134>2026-01-01T00:00:00Z core audit[1]: 2026-01-01T00:00:00Z [INFO] "
        b'[/pkg/auditext/manager.go:82][operator="mallory" resourceType="user_login" '
        b'time="2026-01-01 00:00:00 +0000 UTC"]: action:login_failure, resource:mallory, '
        b"operation_description:login with password=hunter2"
    )
    (ev,) = parse_one("harbor-audit-syslog", line)
    assert isinstance(ev, AuditEvent)
    assert (ev.action, ev.actor, ev.actor_verified) == ("auth_failure", "mallory", False)
    assert ev.detail == "login with password=REDACTED"


def test_webhook_replication_keeps_artifact_and_both_endpoints(corpus: Path) -> None:
    for fmt in ("default", "cloudevents"):
        path = corpus / H / f"webhook-replication-status-changed-{fmt}-docs.json"
        (ev,) = read(path, "harbor-webhook")[0]
        assert (ev.action, ev.outcome, ev.artifact, ev.actor, ev.actor_verified) == (
            "other",
            "success",
            "library/alpine",
            None,
            False,
        )
        assert ev.detail == (
            "replication https://hub.docker.com (docker-hub, library) -> "
            "http://localhost (harbor, harbor); to harbor/alpine; policy by admin; "
            "trigger MANUAL"
        )
    # a failed artifact of the same job (derived from the docs sample) is a failure event
    doc = json.loads(
        (corpus / H / "webhook-replication-status-changed-default-docs.json").read_text()
    )
    rep = doc["event_data"]["replication"]
    rep["job_status"] = "Failed"
    rep["failed_artifact"] = [{"type": "image", "status": "Failed", "name_tag": "bert:v2"}]
    rep["operator"] = "scheduled"
    evs = parse_one("harbor-webhook", json.dumps(doc).encode())
    assert [(e.artifact, e.reference, e.outcome) for e in evs if isinstance(e, AuditEvent)] == [
        ("library/alpine", None, "success"),
        ("library/bert", "v2", "failure"),
    ]


def test_scanning_operator_auto_is_a_trigger_and_a_robot_stays_an_actor(corpus: Path) -> None:
    (scan,) = read(corpus / H / "webhook-scanning-failed-default-docs.json", "harbor-webhook")[0]
    assert (scan.actor, scan.outcome) == (None, "failure")
    assert scan.detail == "harbor scan.failed; trigger auto"
    (pull,) = read(corpus / H / "webhook-artifact-pulled-default-docs.json", "harbor-webhook")[0]
    assert pull.actor and pull.actor.startswith("robot$") and pull.actor_verified


def test_audit_2_13_login_with_result_false_is_an_auth_failure() -> None:
    line = (
        b"<134>2026-01-01T00:00:00Z core audit[1]: 2026-01-01T00:00:00Z [INFO] "
        b'[/pkg/auditext/manager.go:82][operator="mallory" resourceType="user_login" '
        b'time="2026-01-01 00:00:00 +0000 UTC"]: action:login, resource:mallory, '
        b"operation_description:user login, operation_result:false"
    )
    (ev,) = parse_one("harbor-audit-syslog", line)
    assert isinstance(ev, AuditEvent)
    assert (ev.action, ev.outcome, ev.actor, ev.actor_verified) == (
        "auth_failure",
        "failure",
        "mallory",
        False,
    )
    ok = line.replace(b"operation_result:false", b"operation_result:true")
    (ev,) = parse_one("harbor-audit-syslog", ok)
    assert isinstance(ev, AuditEvent)
    assert (ev.action, ev.outcome, ev.actor_verified) == ("login", "success", True)


def test_nginx_access_log_helm_and_syslog_forms(corpus: Path) -> None:
    evs, bad = read(corpus / H / "harbor-nginx-access-helm.log", "harbor-nginx")
    assert not bad
    assert [(e.action, e.client_ip, e.client_ip_source, e.http_status) for e in evs] == [
        ("other", "10.42.80.0", "socket", 200),  # HEAD of a blob: an existence check
        ("other", "10.64.9.77", "socket", 200),
        ("other", "10.42.80.0", "socket", 200),
        ("push", "10.42.80.0", "socket", 201),
    ]
    push = evs[3]
    assert (push.artifact, push.reference, format_ts(push.ts), push.ts_zone_assumed) == (
        "cariti/portfolio",
        "2.1.2-SNAPSHOT",
        "2021-11-25T15:28:20.000000Z",
        None,
    )
    assert push.user_agent and "(Java/1.8.0_302\\)" in push.user_agent  # \x5C decoded
    # the docker-compose form: the same line through Harbor's log container (syslog header)
    line = (corpus / H / "harbor-nginx-access-helm.log").read_bytes().splitlines()[3]
    body = line.split(b"]:", 1)[1]
    opts = ParserOptions(clock=lambda: datetime(2021, 12, 1, tzinfo=UTC))
    (ev,) = parse_one("harbor-nginx", b"Nov 25 15:28:20 172.18.0.1 proxy[1234]: " + body, opts)
    assert isinstance(ev, AuditEvent)
    assert (ev.action, ev.client_ip, format_ts(ev.ts), ev.ts_zone_assumed) == (
        "push",
        "10.42.80.0",
        "2021-11-25T15:28:20.000000Z",
        "UTC",
    )
    (u,) = parse_one("harbor-nginx", body)
    assert isinstance(u, Unparsed) and "no time" in u.reason


def test_registry_log_access_lines_behind_a_syslog_tag(corpus: Path) -> None:
    path = corpus / H / "harbor-registry-syslog-mixed-access-and-app.log"
    evs, bad = read(path, "distribution-access")
    assert [(e.http_method, e.client_ip, e.client_ip_source) for e in evs] == [
        ("POST", "172.17.0.7", "socket"),
        ("GET", "127.0.0.1", "socket"),
        ("GET", "127.0.0.1", "socket"),
    ]
    (u,) = bad  # the interleaved app-log line belongs to distribution-text
    assert u.reason == "not a combined-log-format line"
    line = path.read_bytes().splitlines()[1]
    (ev,) = parse_one("distribution-access", b"Jun 13 01:40:55 172.18.0.1 " + line)
    assert isinstance(ev, AuditEvent) and ev.client_ip == "172.17.0.7"


def test_audit_delete_by_resource_type(corpus: Path) -> None:
    """Line 5 of the corpus file (2.9, resourceType in the bracket) with other resource types:
    only content-removing deletes are deletes, a tag delete an untag, the rest settings."""
    line = (corpus / H / "harbor-audit-syslog.log").read_bytes().splitlines()[4]
    assert b'resourceType="project"' in line and line.endswith(b"action:delete, resource:1")

    def parse(rtype: bytes, resource: bytes) -> AuditEvent:
        raw = line.replace(b'"project"', b'"' + rtype + b'"').replace(
            b"resource:1", b"resource:" + resource
        )
        (ev,) = parse_one("harbor-audit-syslog", raw)
        assert isinstance(ev, AuditEvent)
        return ev

    named = parse(b"project", b"ml-models")
    assert (named.action, named.artifact) == ("delete", "ml-models")
    assert named.detail == "project ml-models deleted: every repository in it is deleted"
    repo = parse(b"repository", b"ml-models/bert")
    assert (repo.action, repo.artifact, repo.detail) == ("delete", "ml-models/bert", None)
    # an artifact deleted by tag takes the manifest and all its tags with it
    art = parse(b"artifact", b"ml-models/bert:v2")
    assert (art.action, art.artifact, art.reference) == ("delete", "ml-models/bert", "v2")
    tag = parse(b"tag", b"ml-models/bert:v2")
    assert (tag.action, tag.artifact, tag.reference) == ("untag", "ml-models/bert", "v2")
    for rtype in (b"project_member", b"member", b"robot", b"user", b"quota", b"policy"):
        ev = parse(rtype, b"7")
        assert (ev.action, ev.artifact, ev.detail) == ("config_change", "7", None), rtype
    # other project actions change settings, not content
    create = line.replace(b"action:delete", b"action:create")
    (ev,) = parse_one("harbor-audit-syslog", create)
    assert isinstance(ev, AuditEvent) and ev.action == "config_change"


def test_default_webhook_redelivery_is_one_event(corpus: Path, tmp_path: Path) -> None:
    """Sweep 2 finding 6: a default-format payload has no id; a redelivery (the same payload,
    re-indented, or as a capture record) is one event, a different operation is not."""
    from sentinel.audit.dedup import Deduplicator

    path = corpus / H / "webhook-artifact-pulled-default-docs.json"
    body = json.loads(path.read_bytes())
    compact = json.dumps(body).encode()
    capture = json.dumps(
        {"received_at": "x", "path": "/harbor", "headers": {}, "body": json.dumps(body)}
    ).encode()
    later = json.dumps({**body, "occur_at": body["occur_at"] + 1}).encode()
    (first,) = read(path, "harbor-webhook")[0]
    again = [e for raw in (compact, capture) for e in parse_one("harbor-webhook", raw)]
    assert [e.event_id for e in again if isinstance(e, AuditEvent)] == [first.event_id] * 2
    (other,) = parse_one("harbor-webhook", later)
    assert isinstance(other, AuditEvent) and other.event_id != first.event_id
    dedup = Deduplicator()
    kept = list(dedup.filter([first, *again, other]))
    assert kept == [first, other] and dedup.dropped == 2
    # several events from one payload keep distinct ids (#n), the same on a redelivery
    ret = json.loads((corpus / H / "webhook-tag-retention-finished-default-docs.json").read_bytes())
    deleted = ret["event_data"]["retention"]["deleted_artifact"]
    ret["event_data"]["retention"]["deleted_artifact"] = [
        *deleted,
        {**deleted[0], "name_tag": "x:y"},
    ]
    evs = parse_one("harbor-webhook", json.dumps(ret).encode())
    ids = [e.event_id for e in evs if isinstance(e, AuditEvent)]
    assert len(ids) == 2 and ids[1] == f"{ids[0]}#1"
    redelivered = parse_one("harbor-webhook", json.dumps(ret, indent=4).encode())
    assert [e.event_id for e in redelivered if isinstance(e, AuditEvent)] == ids
    # the CLI: the same payload as two files is one pull, and says a duplicate was dropped
    copy = tmp_path / "copy.json"
    copy.write_bytes(compact)
    from click.testing import CliRunner

    from sentinel.cli.main import cli

    res = CliRunner().invoke(
        cli, ["audit", "parse", "--format", "harbor-webhook", "--json", str(path), str(copy)]
    )
    assert res.exit_code == 0, res.output
    assert len(res.stdout.splitlines()) == 1 and "1 duplicate(s) dropped" in res.stderr
