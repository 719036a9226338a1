"""The distribution parsers on the real corpus (distribution-live was produced by
docker-registry 2.8.2 + skopeo on this machine; scenario-steps-json-run.txt says what each
request was)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from sentinel.audit.parsers import PARSERS, get_parser
from sentinel.audit.parsers._distribution import classify, parse_apache_ts, split_addr
from sentinel.audit.parsers.interface import Parser, loads_limited
from sentinel.config import AUDIT_FORMATS
from sentinel.errors import ConfigError
from sentinel.records import AuditEvent, Unparsed, sha256_hex

LIVE = "registry-logs/distribution-live"
DOCS = "registry-logs/distribution"


def parse_lines(fmt: str, path: Path) -> list[AuditEvent | Unparsed]:
    out: list[AuditEvent | Unparsed] = []
    offset = 0
    for line in path.read_bytes().splitlines(keepends=True):
        out += PARSERS[fmt].parse(line.rstrip(b"\r\n"), source="reg", src_pos=f"f:{offset}")
        offset += len(line)
    return out


def events(items: list[AuditEvent | Unparsed]) -> list[AuditEvent]:
    return [i for i in items if isinstance(i, AuditEvent)]


def test_registry_is_closed_and_matches_config() -> None:
    assert set(PARSERS) == set(AUDIT_FORMATS)
    for name, parser in PARSERS.items():
        assert isinstance(parser, Parser)
        assert parser.name == name
        assert get_parser(name) is parser
    with pytest.raises(ConfigError, match="unknown audit format"):
        get_parser("harbor-syslog")


def test_app_json_log_live(corpus: Path) -> None:
    items = parse_lines("distribution-json", corpus / LIVE / "registry-app-json.log")
    assert not [i for i in items if isinstance(i, Unparsed)]
    evs = events(items)
    by_action = Counter(e.action for e in evs)
    # 9 PUTs: 6 blobs + 3 manifests into resnet50, 1 blob + 1 manifest into the mirror
    assert by_action["push"] == 9
    assert by_action["mount"] == 1
    assert by_action["delete"] == 1
    assert by_action["auth_failure"] == 2
    # the two failed logins: alice's wrong password (step 2) and mallory (step 13), claimed only
    failures = [e for e in evs if e.action == "auth_failure"]
    assert {(e.actor, e.actor_verified, e.http_status) for e in failures} == {
        ("alice", False, 401),
        ("mallory", False, 401),
    }
    # the /v2/ login challenges are not failures
    challenges = [e for e in evs if e.http_status == 401 and e.action == "other"]
    assert len(challenges) == 13
    assert all(e.artifact is None for e in challenges)
    # no HEAD is a download
    assert not [e for e in evs if e.action == "pull" and e.http_method == "HEAD"]
    # the forged X-Forwarded-For request (step 12) is header-sourced; the rest socket
    forged = [e for e in evs if e.client_ip_source == "header"]
    assert [(e.client_ip, e.action, e.reference) for e in forged] == [("203.0.113.7", "pull", "v1")]
    assert all(e.client_ip == "127.0.0.1" for e in evs if e.client_ip_source == "socket")
    # the missing tag (step 11) is a failed pull by a verified ci-bot
    (missing,) = [e for e in evs if e.reference == "v9"]
    assert (missing.action, missing.outcome, missing.actor, missing.actor_verified) == (
        "pull",
        "failure",
        "ci-bot",
        True,
    )
    (deleted,) = [e for e in evs if e.action == "delete"]
    assert deleted.digest == (
        "sha256:834fed30b2db3969771e0eb002ca97f7b3bac902006cebda668799a41057350c"
    )
    assert deleted.reference is None and deleted.artifact == "models/resnet50"
    assert deleted.request_id == "0647f958-9e23-49b1-ae69-c0f952537ebe"
    assert deleted.ts.isoformat() == "2026-11-29T19:09:53.491060+00:00"


def test_access_log_live_agrees_with_app_log(corpus: Path) -> None:
    access = events(
        parse_lines("distribution-access", corpus / LIVE / "registry-access-combined.log")
    )
    assert len(access) == 63  # one event per line
    app = events(parse_lines("distribution-json", corpus / LIVE / "registry-app-json.log"))
    key = lambda e: (e.action, e.outcome, e.http_method, e.http_status, e.artifact, e.digest)  # noqa: E731
    # both logs of the same run describe the same 63 requests with the same meaning
    assert Counter(map(key, access)) == Counter(map(key, app))
    first = access[0]
    assert first.ts.isoformat() == "2026-11-29T19:09:53+00:00"
    assert (first.action, first.http_status, first.user_agent) == ("other", 401, "curl/7.88.1")
    assert all(e.client_ip_source == "socket" and e.actor is None for e in access)
    mount = [e for e in access if e.action == "mount"]
    assert mount[0].artifact == "models/resnet50-mirror"
    assert (
        mount[0].digest == "sha256:f5599cdddd863dda50b9b12bbecc9f965a71ae66cd342315d57a99ea6115efa4"
    )


def test_notifications_live(corpus: Path) -> None:
    items = parse_lines(
        "distribution-notifications", corpus / LIVE / "notifications-received.jsonl"
    )
    evs = events(items)
    assert len(evs) == len(items) == 27
    assert len({e.event_id for e in evs}) == 27
    counts = Counter(e.action for e in evs)
    assert counts == {"push": 9, "pull": 12, "other": 3, "mount": 1, "delete": 1, "untag": 1}
    assert all(e.actor_verified and e.actor in {"alice", "ci-bot"} for e in evs)
    assert all(e.http_method == "HEAD" for e in evs if e.action == "other")
    # the delete by digest: two events, distinct ids, same request
    dels = [e for e in evs if e.http_method == "DELETE"]
    assert {e.action for e in dels} == {"delete", "untag"}
    assert len({e.event_id for e in dels}) == 2 and len({e.request_id for e in dels}) == 1
    (untag,) = [e for e in dels if e.action == "untag"]
    assert (untag.reference, untag.digest) == ("v2", None)


@pytest.mark.parametrize(
    ("name", "action", "ip", "ip_source", "reference"),
    [
        ("notification-pull-forged-xff.json", "pull", "203.0.113.7", "header", "v1"),
        ("notification-pull-manifest.json", "pull", "127.0.0.1", "socket", "v1"),
        ("notification-pull-blob-head.json", "other", "127.0.0.1", "socket", None),
        ("notification-push-manifest.json", "push", "127.0.0.1", "socket", "v1"),
        ("notification-push-blob.json", "push", "127.0.0.1", "socket", None),
        ("notification-mount.json", "mount", "127.0.0.1", "socket", None),
        ("notification-delete-manifest.json", "delete", "127.0.0.1", "socket", None),
        ("notification-delete-tag.json", "untag", "127.0.0.1", "socket", "v2"),
    ],
)
def test_single_envelopes(
    corpus: Path, name: str, action: str, ip: str, ip_source: str, reference: str | None
) -> None:
    raw = (corpus / LIVE / name).read_bytes()
    (ev,) = PARSERS["distribution-notifications"].parse(raw, source="reg", src_pos="hook:1")
    assert isinstance(ev, AuditEvent)
    assert (ev.action, ev.client_ip, ev.client_ip_source, ev.reference) == (
        action,
        ip,
        ip_source,
        reference,
    )
    assert ev.raw_sha256 == sha256_hex(raw)
    assert ev.src_pos == "hook:1#0"
    assert ev.dedup_key == f"reg:event:{json.loads(raw)['events'][0]['id']}"


def test_docs_envelopes(corpus: Path) -> None:
    parser = PARSERS["distribution-notifications"]
    raw = (corpus / DOCS / "notification-envelope-3-events-testfixture-v2.8.2.json").read_bytes()
    evs = parser.parse(raw, source="reg", src_pos="x")
    assert [type(e) for e in evs] == [AuditEvent] * 3
    assert [e.event_id for e in evs if isinstance(e, AuditEvent)] == [
        f"asdf-asdf-asdf-asdf-{i}" for i in range(3)
    ]
    (pull,) = parser.parse(
        (corpus / DOCS / "notification-pull-docs-example.json").read_bytes(),
        source="r",
        src_pos="x",
    )
    assert isinstance(pull, AuditEvent)
    # "actor": {} — nobody authenticated; timestamp with a -08:00 offset converted to UTC
    assert (pull.actor, pull.actor_verified) == (None, False)
    assert pull.ts.isoformat() == "2016-03-09T22:44:26.402973+00:00"
    assert (pull.client_ip, pull.client_ip_source) == ("192.168.64.11", "socket")
    # a fragment without "events" is not an envelope
    (frag,) = parser.parse(
        (corpus / DOCS / "notification-delete-target-docs-fragment.json").read_bytes(),
        source="r",
        src_pos="x",
    )
    assert isinstance(frag, Unparsed) and "envelope" in frag.reason


def test_text_tty_lines_give_no_event_and_no_error(corpus: Path) -> None:
    for name in (
        "registry-text-tty-debug-head-manifest.log",
        "registry-text-log-notification-docs.log",
    ):
        assert parse_lines("distribution-text", corpus / DOCS / name) == []


def test_text_formatter_lines() -> None:
    parser = PARSERS["distribution-text"]
    line = (
        b'time="2026-11-29T19:09:53.524148087Z" level=info msg="response completed" '
        b'go.version=go1.19.8 http.request.host="127.0.0.1:5000" '
        b"http.request.id=047b1f2a-d3c1-423e-a5fb-488a00221c76 http.request.method=GET "
        b'http.request.remoteaddr="[2001:db8::1]:52584" '
        b'http.request.uri="/v2/models/resnet50/manifests/v1" '
        b'http.request.useragent="curl/7.88.1 \\"x\\"" '
        b"http.response.status=200 http.response.written=481"
    )
    (ev,) = parser.parse(line, source="reg", src_pos="t:0")
    assert isinstance(ev, AuditEvent)
    assert (ev.action, ev.http_status, ev.artifact, ev.reference) == (
        "pull",
        200,
        "models/resnet50",
        "v1",
    )
    assert (ev.client_ip, ev.client_ip_source) == ("2001:db8::1", "socket")
    assert ev.user_agent == 'curl/7.88.1 "x"'
    failed = (
        b'time="2026-11-29T19:09:53.532880645Z" level=error '
        b'msg="error authenticating user \\"mallory\\": authentication failure" '
        b'http.request.method=GET http.request.remoteaddr="127.0.0.1:50812" '
        b"http.request.uri=/v2/models/resnet50/manifests/v1 "
        b"vars.name=models/resnet50 vars.reference=v1"
    )
    (ev,) = parser.parse(failed, source="reg", src_pos="t:1")
    assert isinstance(ev, AuditEvent)
    assert (ev.action, ev.actor, ev.actor_verified) == ("auth_failure", "mallory", False)
    # TTY layout, event-bearing, without wall-clock time → Unparsed with the reason
    tty = (
        b"\x1b[36mINFO\x1b[0m[0005] response completed                           "
        b"http.request.method=GET http.request.uri=/v2/a/manifests/v1 http.response.status=200"
    )
    (bad,) = parser.parse(tty, source="reg", src_pos="t:2")
    assert isinstance(bad, Unparsed) and "wall-clock" in bad.reason
    full = tty.replace(b"[0005]", b"[2026-11-29T19:09:53Z]")
    (ok,) = parser.parse(full, source="reg", src_pos="t:3")
    assert isinstance(ok, AuditEvent) and ok.action == "pull"


@pytest.mark.parametrize(
    ("fmt", "raw", "reason"),
    [
        ("distribution-json", b"{not json", "not JSON"),
        ("distribution-json", b"[1, 2]", "not a JSON object"),
        ("distribution-json", b'{"msg": "x"}', "no time/msg"),
        ("distribution-json", b'{"msg": "x", "time": "yesterday"}', "bad time"),
        ("distribution-json", b"[" * 100_000, "not JSON"),
        ("distribution-json", b"\xff\xfe garbage", "not JSON"),
        ("distribution-text", b"just some words", "no time/msg"),
        ("distribution-access", b"127.0.0.1 - - garbage", "combined-log-format"),
        (
            "distribution-access",
            b'1.2.3.4 - - [29/Nov/2026:19:09:53 +0000] "\\x16\\x03" 400 0 "" ""',
            "request line",
        ),
        (
            "distribution-access",
            b'1.2.3.4 - - [31/Foo/2026:19:09:53 +0000] "GET / HTTP/1.1" 200 0 "" ""',
            "Apache",
        ),
        ("distribution-notifications", b'{"events": 3}', "envelope"),
        ("distribution-notifications", b'{"events": [1]}', "not a JSON object"),
        (
            "distribution-notifications",
            b'{"events": [{"action": "pull", "timestamp": "x"}]}',
            "bad timestamp",
        ),
        ("distribution-notifications", b'{"body": "{nope"}', "capture record body"),
    ],
)
def test_malformed_input_is_unparsed_never_raised(fmt: str, raw: bytes, reason: str) -> None:
    (item,) = PARSERS[fmt].parse(raw, source="reg", src_pos="p:7")
    assert isinstance(item, Unparsed)
    assert reason in item.reason
    assert (item.src_pos.split("#")[0], item.raw_sha256) == ("p:7", sha256_hex(raw))


def test_blank_lines_give_nothing() -> None:
    for parser in PARSERS.values():
        assert parser.parse(b"  ", source="r", src_pos="x") == []


def test_json_depth_limit() -> None:
    assert loads_limited(b'{"a": [[1]]}') == {"a": [[1]]}
    with pytest.raises(ValueError, match="deeper"):
        loads_limited(b"[" * 40 + b"]" * 40)


@pytest.mark.parametrize(
    ("method", "uri", "status", "expected"),
    [
        ("GET", "/v2/a/b/manifests/v1", 200, ("pull", "success", "a/b", "v1", None)),
        ("HEAD", "/v2/a/manifests/v1", 200, ("other", "success", "a", "v1", None)),
        (
            "HEAD",
            "/v2/a/blobs/sha256:" + "a" * 64,
            200,
            ("other", "success", "a", None, "sha256:" + "a" * 64),
        ),
        ("DELETE", "/v2/a/manifests/v1", 202, ("untag", "success", "a", "v1", None)),
        (
            "DELETE",
            "/v2/a/blobs/sha256:" + "b" * 64,
            202,
            ("delete", "success", "a", None, "sha256:" + "b" * 64),
        ),
        ("GET", "/v2/a/manifests/v1", 403, ("access_denied", "failure", "a", "v1", None)),
        ("GET", "/v2/", 401, ("other", "failure", None, None, None)),
        ("GET", "/v2/a/tags/list", 401, ("auth_failure", "failure", "a", None, None)),
        (
            "POST",
            "/v2/a/blobs/uploads/?from=b&mount=sha256%3A" + "c" * 64,
            202,
            ("other", "success", "a", None, "sha256:" + "c" * 64),
        ),
        ("GET", "/metrics", 200, ("other", "success", None, None, None)),
    ],
)
def test_classify(method: str, uri: str, status: int, expected: tuple[object, ...]) -> None:
    m = classify(method, uri, status)
    assert (m.action, m.outcome, m.artifact, m.reference, m.digest) == expected


def test_addresses_and_apache_time() -> None:
    assert split_addr("127.0.0.1:50474") == ("127.0.0.1", "socket")
    assert split_addr("[2001:db8::1]:52584") == ("2001:db8::1", "socket")
    assert split_addr("203.0.113.7") == ("203.0.113.7", "header")
    assert split_addr("2001:db8:0::1") == ("2001:db8::1", "header")
    assert split_addr("client.local") == ("client.local", "header")
    assert split_addr(None) == (None, None)
    assert parse_apache_ts("29/Nov/2026:20:01:02 +0130").isoformat() == "2026-11-29T18:31:02+00:00"


@pytest.mark.parametrize("bad", [b"1e400", b'"abc"', b"true", b"99999", b"-1", b'"\xd9\xa3"'])
def test_bad_response_status_is_unparsed_not_an_invented_event(corpus: Path, bad: bytes) -> None:
    lines = (corpus / LIVE / "registry-app-json.log").read_bytes().splitlines()
    line = next(x for x in lines if b'"http.response.status":200' in x)
    (good,) = PARSERS["distribution-json"].parse(line, source="r", src_pos="p:0")
    assert isinstance(good, AuditEvent) and good.http_status == 200
    raw = line.replace(b'"http.response.status":200', b'"http.response.status":' + bad)
    (item,) = PARSERS["distribution-json"].parse(raw, source="r", src_pos="p:0")
    assert isinstance(item, Unparsed), item
    assert "not an HTTP status code" in item.reason
