"""MLflow 3.17.2 access logs (uvicorn, gunicorn + basic auth) and signed webhooks, captured live
(corpus mlflow-live; scenario-steps-*.txt say what the client did)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sentinel.audit.parsers import ParserOptions, verify_mlflow_signature
from sentinel.audit.parsers.mlflow_access import classify
from sentinel.audit.parsers.mlflow_webhook import UNVERIFIED, mlflow_signature
from sentinel.records import AuditEvent, Unparsed
from sentinel.timefmt import format_ts
from tests.audit.parsers.util import REG, parse_one, read

ML = f"{REG}/mlflow-live"
SECRET = b"placeholder-webhook-secret"  # SOURCES.md: the secret the capture run used


def test_uvicorn_access(corpus: Path) -> None:
    evs, bad = read(corpus / ML / "mlflow-3.17.2-uvicorn-access.log", "mlflow-access")
    assert [u.reason for u in bad] == ["not an MLflow access-log line (uvicorn or gunicorn)"]
    assert len(evs) == 59
    counts = Counter(e.action for e in evs if e.action != "other")
    # steps 2+3 register resnet50 v1, v2 (one create fails 400: the model exists); 5 artifact
    # files uploaded; alias set, stage transition, two download-uri + 5 artifact downloads,
    # alias deleted, version deleted, model deleted
    assert counts == Counter(
        {"register": 4, "push": 5, "tag": 1, "stage_change": 1, "pull": 7, "untag": 1, "delete": 2}
    )
    # no zone in uvicorn's lines: the configured one is assumed and said
    assert {e.ts_zone_assumed for e in evs} == {"UTC"}
    assert {(e.actor, e.client_ip_source) for e in evs} == {(None, "socket")}
    named = [(e.artifact, e.reference) for e in evs if e.action == "pull" and e.reference]
    assert named == [("resnet50", "1"), ("resnet50", "2")]
    # the model is not named on the registration line: flagged, not invented
    reg = [e for e in evs if e.action == "register"]
    assert all(e.artifact is None and e.detail and "not in the access log" in e.detail for e in reg)
    assert [e.outcome for e in reg] == ["success", "success", "failure", "success"]


def test_uvicorn_zone_is_configurable(corpus: Path) -> None:
    opts = ParserOptions(zone=ZoneInfo("Europe/Berlin"))
    evs, _ = read(corpus / ML / "mlflow-3.17.2-uvicorn-access.log", "mlflow-access", opts)
    assert format_ts(evs[0].ts) == "2026-11-29T18:16:39.000000Z"  # 19:16:39 CET
    assert evs[0].ts_zone_assumed == "Europe/Berlin"


def test_gunicorn_basic_auth_claimed_vs_verified(corpus: Path) -> None:
    evs, bad = read(corpus / ML / "mlflow-3.17.2-gunicorn-access-basic-auth.log", "mlflow-access")
    assert not bad
    assert len(evs) == 66
    assert all(e.ts_zone_assumed is None for e in evs)  # +0000 stated
    fails = [
        (e.action, e.actor, e.actor_verified, e.http_status) for e in evs if e.outcome == "failure"
    ]
    assert ("auth_failure", "alice", False, 401) in fails  # wrong password: claimed only
    assert ("access_denied", None, False, 401) in fails  # no credentials
    assert ("access_denied", "bob", True, 403) in fails  # authenticated, not permitted
    assert [e.actor for e in evs if e.action == "config_change"] == [
        "admin",
        "admin",
    ]  # users/create
    ok = [e for e in evs if e.actor == "alice" and e.outcome == "success"]
    assert ok and all(e.actor_verified for e in ok)
    assert {e.user_agent for e in evs} >= {"curl/7.88.1", "mlflow-python-client/3.17.2"}


def test_other_mlflow_logs_are_not_access_lines(corpus: Path) -> None:
    for name in ("mlflow-3.17.2-gunicorn-error.log", "mlflow-3.17.2-uvicorn-server-stderr.log"):
        evs, bad = read(corpus / ML / name, "mlflow-access")
        assert not evs and bad
        assert {u.reason for u in bad} == {"not an MLflow access-log line (uvicorn or gunicorn)"}


def test_access_line_edge_cases() -> None:
    (u,) = parse_one("mlflow-access", b'INFO:     127.0.0.1:1 - "GET /health HTTP/1.1" 200 OK')
    assert isinstance(u, Unparsed) and u.reason == "uvicorn access line has no time"
    (ev,) = parse_one(
        "mlflow-access",
        b"2026/11/29 19:16:39 INFO:     203.0.113.7:0 - "
        b'"GET /api/2.0/mlflow/registered-models/get?name=m HTTP/1.1" 200 OK',
    )
    assert isinstance(ev, AuditEvent)
    assert (ev.client_ip, ev.client_ip_source, ev.artifact) == ("203.0.113.7", "header", "m")
    assert classify("DELETE", "/ajax-api/2.0/mlflow/registered-models/delete")[0] == "delete"
    assert classify("POST", "/api/2.0/mlflow/users/update-password")[0] == "config_change"
    assert classify("GET", "/static-files/index.html")[0] == "other"


def test_signature_verification_on_the_captured_deliveries(corpus: Path) -> None:
    lines = (corpus / ML / "mlflow-3.17.2-webhooks-received.jsonl").read_text().splitlines()
    assert len(lines) == 7
    for line in lines:
        rec = json.loads(line)
        body = rec["body"].encode()
        assert verify_mlflow_signature(SECRET, rec["headers"], body)
        assert verify_mlflow_signature(
            SECRET.decode(), {k.lower(): v for k, v in rec["headers"].items()}, body
        )
        assert not verify_mlflow_signature(b"wrong", rec["headers"], body)
        assert not verify_mlflow_signature(SECRET, rec["headers"], body + b" ")
        assert not verify_mlflow_signature(
            SECRET, {**rec["headers"], "X-MLflow-Timestamp": "1"}, body
        )
        assert not verify_mlflow_signature(
            SECRET, {**rec["headers"], "X-MLflow-Signature": "v1,%%%"}, body
        )
        assert not verify_mlflow_signature(SECRET, {}, body)
        # replay window
        sent = datetime.fromtimestamp(int(rec["headers"]["X-MLflow-Timestamp"]), UTC)
        assert verify_mlflow_signature(SECRET, rec["headers"], body, tolerance=300, now=sent)
        assert not verify_mlflow_signature(
            SECRET, rec["headers"], body, tolerance=300, now=datetime(2030, 1, 1, tzinfo=UTC)
        )
    # rotation: several signatures, one valid
    h = json.loads(lines[0])["headers"]
    both = {**h, "X-MLflow-Signature": "v1,AAAA " + h["X-MLflow-Signature"]}
    assert verify_mlflow_signature(SECRET, both, json.loads(lines[0])["body"].encode())
    assert (
        mlflow_signature(
            SECRET,
            h["X-MLflow-Delivery-Id"],
            h["X-MLflow-Timestamp"],
            json.loads(lines[0])["body"].encode(),
        )
        == h["X-MLflow-Signature"]
    )


def test_webhook_events(corpus: Path) -> None:
    opts = ParserOptions(webhook_secret=SECRET)
    evs, bad = read(corpus / ML / "mlflow-3.17.2-webhooks-received.jsonl", "mlflow-webhook", opts)
    assert not bad
    got = [(e.action, e.artifact, e.reference) for e in evs]
    assert got == [
        ("register", "resnet50", None),
        ("register", "resnet50", "1"),
        ("register", "resnet50", "2"),
        ("tag", "resnet50", "champion"),
        ("other", "resnet50", "1"),
        ("untag", "resnet50", "champion"),
        ("register", "bert", None),
    ]
    assert all(e.event_id and e.event_id.startswith("body-sha256:") for e in evs)
    caps = [json.loads(x) for x in (corpus / ML / "mlflow-3.17.2-webhooks-received.jsonl").open()]
    assert [e.request_id for e in evs] == [c["headers"]["X-MLflow-Delivery-Id"] for c in caps]
    assert evs[3].detail == "model_version_alias.created: alias champion -> version 1"
    assert evs[4].detail == "model_version_tag.set: validated"
    # a wrong secret: every delivery is refused with a reason
    _, refused = read(
        corpus / ML / "mlflow-3.17.2-webhooks-received.jsonl",
        "mlflow-webhook",
        ParserOptions(webhook_secret=b"not-it"),
    )
    assert len(refused) == 7 and all("signature" in u.reason for u in refused)
    # bare bodies (no headers to verify) parse without a secret, and are the same event as
    # their captured delivery (the body's hash is the event id); with a secret they are
    # refused: nothing unverified becomes an event
    by_id = {e.event_id: e for e in evs}
    for name in (
        "mlflow-webhook-model_version-created.json",
        "mlflow-webhook-registered_model-created.json",
    ):
        (ev,) = read(corpus / ML / name, "mlflow-webhook")[0]
        assert ev.action == "register" and ev.event_id in by_id and ev.request_id is None
        assert (by_id[ev.event_id].artifact, by_id[ev.event_id].reference) == (
            ev.artifact,
            ev.reference,
        )
        evs2, refused2 = read(corpus / ML / name, "mlflow-webhook", opts)
        assert not evs2 and len(refused2) == 1
        assert refused2[0].reason.startswith("unverifiable: a bare body")


def test_webhook_rejects() -> None:
    (u,) = parse_one("mlflow-webhook", b'{"entity": "x"}')
    assert isinstance(u, Unparsed) and "no entity/action/timestamp" in u.reason
    (u2,) = parse_one("mlflow-webhook", b"{nope")
    assert isinstance(u2, Unparsed) and u2.reason.startswith("not JSON")


def _forged(corpus: Path) -> bytes:
    """The first captured delivery with its model renamed and its signature kept (sweep 2)."""
    first = (corpus / ML / "mlflow-3.17.2-webhooks-received.jsonl").read_bytes().splitlines()[0]
    rec = json.loads(first)
    assert '"resnet50"' in rec["body"]
    rec["body"] = rec["body"].replace('"resnet50"', '"evilnet"')
    return json.dumps(rec).encode()


def test_unverified_deliveries_say_so(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    from sentinel.audit.parsers import build_parser

    forged = _forged(corpus)
    body = (corpus / ML / "mlflow-webhook-registered_model-created.json").read_bytes()
    parser = build_parser("mlflow-webhook")
    with caplog.at_level(logging.WARNING):
        got = [
            *parser.parse(forged, source="t", src_pos="1"),
            *parser.parse(body, source="t", src_pos="2"),
        ]
    assert all(isinstance(e, AuditEvent) for e in got)
    for ev in got:
        assert isinstance(ev, AuditEvent)
        assert ev.detail == f"registered_model.created; {UNVERIFIED}"
        assert not ev.actor_verified
    assert [e.artifact for e in got if isinstance(e, AuditEvent)] == ["evilnet", "resnet50"]
    warned = [r for r in caplog.records if "NOT verified" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    # with the secret the forgery is refused; the daemon's receiver checks signatures itself,
    # so its parser does not mark events it hands over
    (refused,) = parse_one("mlflow-webhook", forged, ParserOptions(webhook_secret=SECRET))
    assert isinstance(refused, Unparsed) and "signature" in refused.reason
    genuine = (corpus / ML / "mlflow-3.17.2-webhooks-received.jsonl").read_bytes().splitlines()[0]
    for opts in (
        ParserOptions(webhook_secret=SECRET),
        ParserOptions(signature_checked_upstream=True),
    ):
        (ok,) = parse_one("mlflow-webhook", genuine, opts)
        assert isinstance(ok, AuditEvent) and ok.detail == "registered_model.created"


def test_cli_parse_warns_once_without_a_secret(corpus: Path, tmp_path: Path) -> None:
    capture = corpus / ML / "mlflow-3.17.2-webhooks-received.jsonl"
    forged = tmp_path / "forged.jsonl"
    forged.write_bytes(_forged(corpus) + b"\n")
    exe = str(Path(sys.executable).with_name("sentinel"))
    cmd = [exe, "audit", "parse", "--format", "mlflow-webhook", "--json"]
    res = subprocess.run(
        [*cmd, str(capture), str(forged)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    events = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(events) == 8
    assert all(e["detail"].endswith(UNVERIFIED) and not e["actor_verified"] for e in events)
    assert res.stderr.count("signatures are NOT verified") == 1
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    res2 = subprocess.run(
        [*cmd, "--webhook-secret-file", str(secret), str(capture), str(forged)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res2.returncode == 1 and "NOT verified" not in res2.stderr
    events2 = [json.loads(x) for x in res2.stdout.splitlines()]
    assert sum("unparsed" in e for e in events2) == 1
    assert next(e["detail"] for e in events2 if "unparsed" not in e) == "registered_model.created"
