"""MinIO audit entries (2019/2021/2024, NDJSON batches) and bucket notifications.

The MinIO samples are AGPL documentation examples: they are read from the corpus at test time,
never copied here. The secrets a test looks for are extracted from those files at run time.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.audit.parsers._redact import REDACTED, redact_bytes, redact_json
from sentinel.cli.main import cli
from sentinel.records import AuditEvent, Unparsed, sha256_hex
from sentinel.timefmt import format_ts
from tests.audit.parsers.util import REG, parse_one, read

M = f"{REG}/minio"
AUDIT_FILES = (
    "minio-audit-webhook-docs-2019.json",
    "minio-audit-webhook-docs-2021.json",
    "minio-audit-webhook-docs-2024.json",
    "minio-audit-kafka-docs-2024.jsonl",
)
_SIG = re.compile(rb"Signature=([0-9a-f]{64})")


def secrets_in(corpus: Path) -> set[bytes]:
    found: set[bytes] = set()
    for name in AUDIT_FILES:
        found |= set(_SIG.findall((corpus / M / name).read_bytes()))
    assert len(found) == 3  # one signature per schema year (2024 twice)
    return found


def test_audit_three_schemas(corpus: Path) -> None:
    rows = []
    for name in AUDIT_FILES:
        evs, bad = read(corpus / M / name, "minio-audit")
        assert not bad, name
        (ev,) = evs
        rows.append(
            (format_ts(ev.ts), ev.action, ev.outcome, ev.actor, ev.actor_verified, ev.artifact)
        )
        assert (ev.client_ip, ev.client_ip_source, ev.http_status) == ("127.0.0.1", "socket", 200)
        assert ev.detail == "minio PutObject"
        assert ev.raw_sha256 == sha256_hex((corpus / M / name).read_bytes())  # the original
    assert rows == [
        ("2019-08-12T21:34:37.187817Z", "push", "success", "minio", True, "testbucket/hosts"),
        ("2021-10-08T00:46:36.801714Z", "push", "success", "minio", True, "testbucket/hosts"),
        ("2024-05-09T07:38:10.449688Z", "push", "success", "minioadmin", True, "testbucket/hosts"),
        ("2024-05-09T07:38:10.449688Z", "push", "success", "minioadmin", True, "testbucket/hosts"),
    ]
    # 2021 carries the version id; the same 2024 entry via webhook and Kafka has one event id
    assert read(corpus / M / AUDIT_FILES[1], "minio-audit")[0][0].reference
    ids = {read(corpus / M / n, "minio-audit")[0][0].event_id for n in AUDIT_FILES[2:]}
    assert len(ids) == 1


def _entry(**over: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "version": "1",
        "deploymentid": "dep-1",
        "time": "2026-11-29T19:00:00.123456789Z",
        "api": {
            "name": "GetObject",
            "bucket": "models",
            "object": "bert/model.bin",
            "statusCode": 200,
        },
        "remotehost": "10.0.0.9",
        "requestID": "REQ1",
        "userAgent": "mc",
        "requestHeader": {
            "Authorization": "AWS4-HMAC-SHA256 Credential=ak-alice/20261129/us-east-1/s3/"
            "aws4_request,SignedHeaders=host,Signature=" + "f" * 64,
            "X-Amz-Security-Token": "sentinel-test-session-token",
        },
    }
    entry.update(over)
    return entry


def test_audit_ndjson_batch_actions_and_auth() -> None:
    batch = [
        _entry(),
        _entry(
            requestID="R2",
            api={"name": "DeleteObject", "bucket": "models", "object": "x", "statusCode": 204},
        ),
        _entry(
            requestID="R3",
            api={"name": "PutObject", "bucket": "models", "object": "y", "statusCode": 403},
            error="The request signature we calculated does not match the signature you provided.",
        ),
        _entry(
            requestID="R4",
            api={"name": "GetObject", "bucket": "models", "object": "z", "statusCode": 403},
            error="Access Denied.",
        ),
        _entry(
            requestID="R5", api={"name": "PutBucketPolicy", "bucket": "models", "statusCode": 204}
        ),
        _entry(
            requestID="R6", requestHeader={"X-Forwarded-For": "203.0.113.7"}, accessKey="ak-bob"
        ),
    ]
    raw = b"\n".join(json.dumps(e).encode() for e in batch) + b"\n"
    evs = parse_one("minio-audit", raw)
    assert all(isinstance(e, AuditEvent) for e in evs)
    got = [
        (e.action, e.outcome, e.actor, e.actor_verified, e.client_ip_source, e.src_pos) for e in evs
    ]  # type: ignore[union-attr]
    assert got == [
        ("pull", "success", "ak-alice", True, "socket", "t:0#0"),
        ("delete", "success", "ak-alice", True, "socket", "t:0#1"),
        ("auth_failure", "failure", "ak-alice", False, "socket", "t:0#2"),
        ("access_denied", "failure", "ak-alice", False, "socket", "t:0#3"),
        ("config_change", "success", "ak-alice", True, "socket", "t:0#4"),
        ("pull", "success", "ak-bob", True, "header", "t:0#5"),
    ]
    # a JSON array is a batch too
    assert len(parse_one("minio-audit", json.dumps(batch[:2]).encode())) == 2


def test_unparsed_minio_input_is_redacted_but_hash_is_of_original() -> None:
    secret = b"f" * 64
    token = b"sentinel-test-session-token"
    bad_time = json.dumps(_entry(time="yesterday")).encode()
    truncated = json.dumps(_entry()).encode()[:-40]  # not JSON any more, secret still inside
    presigned = (
        b'{"api": {"name": "GetObject"}, "requestPath": "/b/o?X-Amz-Signature='
        + secret
        + b'&X-Amz-Credential=ak%2F2026"'
    )
    for raw in (bad_time, truncated, presigned):
        (u,) = parse_one("minio-audit", raw)
        assert isinstance(u, Unparsed)
        assert u.raw_sha256 == sha256_hex(raw) and u.raw_len == len(raw)
        kept = json.dumps(u.to_json()).encode()
        assert secret not in kept and token not in kept, u.reason
        assert REDACTED.encode() in kept


def test_redaction_helpers() -> None:
    doc = {
        "requestHeader": {
            "authorization": "AWS4-HMAC-SHA256 Credential=AK/x,Signature=abc",
            "Cookie": "s=1",
        },
        "requestQuery": {"X-Amz-Signature": "abc"},
        "path": "/o?x=1&X-Amz-Credential=AK%2F1&y=2",
    }
    red = redact_json(doc)
    assert (
        red["requestHeader"]["authorization"]
        == "AWS4-HMAC-SHA256 Credential=AK/x,Signature=REDACTED"
    )
    assert red["requestHeader"]["Cookie"] == REDACTED
    assert red["requestQuery"]["X-Amz-Signature"] == REDACTED
    assert red["path"] == "/o?x=1&X-Amz-Credential=REDACTED&y=2"
    assert (
        redact_bytes(b'{"Authorization" : "Bearer abc\\"def", "a": 1}')
        == b'{"Authorization" : "REDACTED", "a": 1}'
    )


def test_ledger_never_contains_the_signature(corpus: Path, tmp_path: Path) -> None:
    secrets = secrets_in(corpus)
    # the corpus entries, plus a broken copy of one (becomes an unparsed record, kept in the ledger)
    broken = tmp_path / "broken.jsonl"
    text = (corpus / M / "minio-audit-kafka-docs-2024.jsonl").read_bytes()
    broken.write_bytes(text.replace(b'"time":"2024', b'"time":"x2024') + text[:700] + b"\n")
    db = tmp_path / "ledger.db"
    files = [str(corpus / M / n) for n in AUDIT_FILES] + [str(broken)]
    res = CliRunner().invoke(
        cli, ["audit", "ingest", "--format", "minio-audit", "--ledger", f"sqlite:///{db}", *files]
    )
    assert res.exit_code == 1, res.stderr  # the broken inputs are unparsed, still recorded
    assert "appended" in res.stdout
    con = sqlite3.connect(db)
    blob = b"".join(
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        for row in con.execute(f'SELECT * FROM "{table}"')
        for v in row
        if v is not None
    )
    con.close()
    assert b"testbucket/hosts" in blob and b"REDACTED" in blob  # the records are there ...
    for secret in secrets:
        assert secret not in blob  # ... the signatures are not
    for path in [db, *db.parent.glob("ledger.db*")]:
        raw = path.read_bytes()
        assert not any(s in raw for s in secrets), path


def test_notifications(corpus: Path) -> None:
    rows = []
    for name in (
        "minio-bucket-notification-kafka-docs.json",
        "minio-bucket-notification-logrus-wrapped-docs.json",
        "minio-bucket-notification-nsq-docs.json",
    ):
        evs, bad = read(corpus / M / name, "minio-notification")
        assert not bad
        (ev,) = evs
        rows.append((format_ts(ev.ts), ev.action, ev.artifact, ev.client_ip, ev.client_ip_source))
        assert ev.actor_verified and ev.event_id and ev.detail == "s3:ObjectCreated:Put"
    assert rows == [
        ("2019-09-10T17:41:54.000000Z", "push", "images/myphoto.jpg", "192.168.56.192", "header"),
        ("2017-07-07T18:46:37.000000Z", "push", "images/myphoto.jpg", "192.168.1.80", "header"),
        ("2018-10-31T09:31:11.000000Z", "push", "images/gopher.jpg", "10.1.1.1", "header"),
    ]


def test_notification_actions_and_errors() -> None:
    def msg(name: str, key: str = "a%20b/c.bin") -> dict[str, object]:
        return {
            "EventName": name,
            "Records": [
                {
                    "eventName": name,
                    "eventTime": "2026-01-01T00:00:00Z",
                    "s3": {"bucket": {"name": "m"}, "object": {"key": key, "sequencer": "1"}},
                }
            ],
        }

    raw = b"\n".join(
        json.dumps(msg(n)).encode()
        for n in (
            "s3:ObjectAccessed:Get",
            "s3:ObjectAccessed:Head",
            "s3:ObjectRemoved:Delete",
            "s3:BucketCreated",
        )
    )
    evs = parse_one("minio-notification", raw)
    assert [e.action for e in evs] == ["pull", "other", "delete", "other"]  # type: ignore[union-attr]
    assert evs[0].artifact == "m/a b/c.bin"  # type: ignore[union-attr]
    (u,) = parse_one("minio-notification", b'{"Records": "no"}')
    assert isinstance(u, Unparsed) and "no Records list" in u.reason


def test_ndjson_over_the_payload_limit_is_read_line_by_line(corpus: Path, tmp_path: Path) -> None:
    from sentinel.audit.files import parse_file
    from sentinel.audit.parsers import ParserOptions, build_parser
    from sentinel.errors import InputError

    line = (corpus / M / "minio-audit-kafka-docs-2024.jsonl").read_bytes().strip()
    entry = json.loads(line)
    big = tmp_path / "audit.jsonl"
    with big.open("wb") as f:
        for n in range(200):
            f.write(json.dumps({**entry, "requestID": f"R{n:05d}"}).encode() + b"\n")
            if n == 100:
                f.write(b"[]\nnull\n")  # finding 13: counted, never dropped
    limit = 64 * 1024
    assert big.stat().st_size > 4 * limit
    parser = build_parser("minio-audit", ParserOptions())
    items = list(parse_file(big, parser, "m", max_payload_file=limit))
    evs = [i for i in items if isinstance(i, AuditEvent)]
    bad = [i for i in items if isinstance(i, Unparsed)]
    assert len(evs) == 200 and len({e.event_id for e in evs}) == 200
    assert sorted(b.reason for b in bad) == [
        "MinIO audit entry is not a JSON object",
        "empty MinIO audit batch",
    ]
    # a line longer than the per-line bound is one Unparsed, and reading goes on
    with big.open("ab") as f:
        f.write(b'{"pad": "' + b"x" * 5000 + b'"}\n' + line + b"\n")
    items = list(parse_file(big, parser, "m", max_payload_file=limit, max_payload_line=4096))
    assert sum(isinstance(i, AuditEvent) for i in items) == 201
    assert any(isinstance(i, Unparsed) and "longer than 4096" in i.reason for i in items)
    # one JSON document (an array, pretty-printed) over the limit is still refused
    doc = tmp_path / "one.json"
    doc.write_text(json.dumps([entry] * 100, indent=2))
    with pytest.raises(InputError, match="not one JSON document per line"):
        list(parse_file(doc, parser, "m", max_payload_file=limit))
