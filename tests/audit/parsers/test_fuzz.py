"""Property: no parser raises, whatever the input — bytes, JSON of any shape, or a real record
with one field replaced by a value of the wrong type. Everything comes back as records."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.audit.parsers import PARSERS
from sentinel.records import AuditEvent, Unparsed

FIELDS = [
    "time",
    "timestamp",
    "eventTime",
    "stageTimestamp",
    "occur_at",
    "type",
    "specversion",
    "event_data",
    "data",
    "resources",
    "repository",
    "operator",
    "api",
    "name",
    "statusCode",
    "requestHeader",
    "Authorization",
    "Records",
    "eventName",
    "s3",
    "bucket",
    "object",
    "key",
    "entity",
    "action",
    "kind",
    "verb",
    "user",
    "username",
    "sourceIPs",
    "objectRef",
    "responseStatus",
    "code",
    "message",
    "clientIP",
    "subject",
    "status",
    "body",
    "headers",
    "received_at",
    "items",
    "ts",
    "outcome",
    "http_status",
    "requestID",
    "remotehost",
]
leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=25,
)

TEMPLATES: list[tuple[str, dict[str, Any]]] = [
    (
        "harbor-webhook",
        {
            "type": "PUSH_ARTIFACT",
            "occur_at": 1,
            "operator": "a",
            "event_data": {
                "resources": [{"digest": "d", "tag": "t"}],
                "repository": {"repo_full_name": "p/r"},
            },
        },
    ),
    (
        "harbor-webhook",
        {
            "specversion": "1.0",
            "id": "i",
            "type": "harbor.tag_retention.finished",
            "time": "2023-04-03T06:16:38Z",
            "data": {"retention": {"deleted_artifact": [{"name_tag": "a:1"}]}},
        },
    ),
    (
        "minio-audit",
        {
            "time": "2024-05-09T07:38:10Z",
            "api": {"name": "GetObject", "statusCode": 200},
            "requestHeader": {"Authorization": "x"},
            "remotehost": "1.2.3.4",
        },
    ),
    (
        "minio-notification",
        {
            "Records": [
                {
                    "eventName": "s3:ObjectCreated:Put",
                    "eventTime": "2019-09-10T17:41:54Z",
                    "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}},
                }
            ]
        },
    ),
    (
        "mlflow-webhook",
        {
            "entity": "model_version",
            "action": "created",
            "timestamp": "2026-11-29T19:19:16+00:00",
            "data": {"name": "m", "version": 1},
        },
    ),
    (
        "k8s-audit",
        {
            "kind": "Event",
            "verb": "get",
            "stageTimestamp": "2019-11-18T04:40:56Z",
            "user": {"username": "u"},
            "sourceIPs": ["1.2.3.4"],
            "objectRef": {"resource": "secrets"},
            "responseStatus": {"code": 200},
        },
    ),
    (
        "zot-audit",
        {
            "message": "HTTP API Audit",
            "action": "PUT",
            "object": "/v2/a/manifests/v1",
            "status": 201,
            "time": "2026-11-29T19:09:53Z",
            "clientIP": "1.2.3.4:5",
        },
    ),
    (
        "jsonmap",
        {"ts": "2026-11-29T19:09:53Z", "action": "pull", "outcome": "success", "http_status": 200},
    ),
]


def _check(fmt: str, raw: bytes) -> None:
    out = PARSERS[fmt].parse(raw, source="s", src_pos="p:1")
    assert isinstance(out, list)
    for item in out:
        assert isinstance(item, AuditEvent | Unparsed)
        assert item.src_pos.startswith("p:1")
        item.to_json()


NEW = sorted(f for f in PARSERS if not f.startswith("distribution-"))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(NEW), st.binary(max_size=300))
def test_bytes_never_raise(fmt: str, raw: bytes) -> None:
    _check(fmt, raw)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NEW), json_values)
def test_any_json_never_raises(fmt: str, value: Any) -> None:
    _check(fmt, json.dumps(value).encode())


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_real_record_with_one_wrong_field_never_raises(data: st.DataObject) -> None:
    fmt, template = data.draw(st.sampled_from(TEMPLATES))
    doc = json.loads(json.dumps(template))
    path = data.draw(st.sampled_from(_paths(doc)))
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = data.draw(json_values)
    _check(fmt, json.dumps(doc).encode())
    # and as a capture record around it
    capture = {
        "received_at": "x",
        "path": "/",
        "headers": {"X-MLflow-Signature": 1},
        "body": json.dumps(doc),
    }
    _check(fmt, json.dumps(capture).encode())
