"""`sentinel audit parse|ingest` with the issue-4 formats, as a new user runs them on each
corpus folder; --zone, --mapping and --webhook-secret-file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli.main import cli
from tests.audit.parsers.util import REG


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize(
    ("fmt", "pattern", "code", "events"),
    [
        ("harbor-webhook", "harbor/webhook-*.json", 0, 18),
        ("harbor-webhook", "harbor/webhook-*", 1, 18),  # + the two .jsonc.txt and the Slack text
        ("harbor-audit-file", "harbor/harbor-audit-syslog.log", 0, 5),
        ("minio-audit", "minio/minio-audit-*", 0, 3),  # 2024 via webhook and Kafka: one event
        ("minio-notification", "minio/minio-bucket-*", 0, 3),
        ("mlflow-access", "mlflow-live/*access*.log", 1, 186),  # uvicorn's startup line x2
        # 7 captured deliveries + 5 bare bodies of 5 of them: 7 events (the body's hash is the
        # event id, so a bare body is recognised as the same delivery)
        ("mlflow-webhook", "mlflow-live/*webhook*.json*", 0, 7),
        ("k8s-audit", "kubernetes/*", 0, 4),
    ],
)
def test_parse_corpus_folders(corpus: Path, fmt: str, pattern: str, code: int, events: int) -> None:
    files = sorted(str(p) for p in (corpus / REG).glob(pattern))
    assert files
    rc, out, err = run("audit", "parse", "--format", fmt, "--json", *files)
    assert rc == code, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert sum("unparsed" not in r for r in rows) == events
    if code:
        assert "unparsed input(s)" in err
        assert all(r["unparsed"]["reason"] for r in rows if "unparsed" in r)


def test_zone_option(corpus: Path) -> None:
    log = corpus / REG / "mlflow-live" / "mlflow-3.17.2-uvicorn-access.log"
    rc, out, _ = run(
        "audit", "parse", "--format", "mlflow-access", "--zone", "Asia/Tokyo", "--json", str(log)
    )
    assert rc == 1  # the startup line
    first = next(r for r in map(json.loads, out.splitlines()) if "ts" in r)
    assert (first["ts"], first["ts_zone_assumed"]) == ("2026-11-29T10:16:39.000000Z", "Asia/Tokyo")
    rc, _, err = run("audit", "parse", "--format", "mlflow-access", "--zone", "Mars/Base", str(log))
    assert rc == 2 and "unknown time zone" in err


def test_secret_and_mapping_options(corpus: Path, tmp_path: Path) -> None:
    hooks = corpus / REG / "mlflow-live" / "mlflow-3.17.2-webhooks-received.jsonl"
    good, bad, empty = tmp_path / "good", tmp_path / "bad", tmp_path / "empty"
    good.write_text("placeholder-webhook-secret\n")
    bad.write_text("other\n")
    empty.write_text("\n")
    assert (
        run(
            "audit",
            "parse",
            "--format",
            "mlflow-webhook",
            "--webhook-secret-file",
            str(good),
            str(hooks),
        )[0]
        == 0
    )
    rc, _, err = run(
        "audit",
        "parse",
        "--format",
        "mlflow-webhook",
        "--webhook-secret-file",
        str(bad),
        str(hooks),
    )
    assert rc == 1 and "7 unparsed" in err and "signature" in err
    rc, _, err = run(
        "audit",
        "parse",
        "--format",
        "mlflow-webhook",
        "--webhook-secret-file",
        str(empty),
        str(hooks),
    )
    assert rc == 2 and "empty" in err
    mapping = tmp_path / "m.yaml"
    mapping.write_text("fields: {ts: when, action: what}\nactions: {get: pull}\n")
    data = tmp_path / "d.jsonl"
    data.write_text('{"when": 1795979955, "what": "get"}\n{"when": 1795979956, "what": "put"}\n')
    rc, out, _ = run(
        "audit", "parse", "--format", "jsonmap", "--mapping", str(mapping), "--json", str(data)
    )
    assert rc == 0
    assert [json.loads(line)["action"] for line in out.splitlines()] == ["pull", "other"]
    mapping.write_text("fields: {ts: when}\n")
    rc, _, err = run("audit", "parse", "--format", "jsonmap", "--mapping", str(mapping), str(data))
    assert rc == 2 and "fields.action" in err
