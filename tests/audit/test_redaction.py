"""Credentials never reach an Unparsed's kept copy: `audit parse --json` and the ledger file.

Issue 4, sweep finding 1: every format's broken input keeps up to 4 KiB as evidence; that copy
goes through ``sentinel.redact`` in ``Unparsed`` itself. Inputs are corpus records made
unreadable (a body cut short, a bad timestamp, a whole file cut mid-secret).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli.main import cli
from sentinel.records import Unparsed, sha256_hex
from sentinel.redact import REDACTED, redact_bytes

REG = "registry-logs"
K8S_SECRET = b"MzFiNGQ0YjctMDAyNi00YzI3LWJiMGItNDk5ZDZkZjg1ZGJi"  # the fixture Secret's data


def _capture(headers: dict[str, str], body: str) -> str:
    return json.dumps(
        {"received_at": "2026-11-29T19:09:53+00:00", "path": "/h", "headers": headers, "body": body}
    )


def _distribution(corpus: Path, tmp: Path) -> tuple[Path, list[bytes]]:
    lines = (corpus / REG / "distribution-live/notifications-received.jsonl").read_text()
    out = []
    for line in lines.splitlines()[:3]:
        rec = json.loads(line)
        assert rec["headers"]["Authorization"] == "Bearer placeholder-token"
        rec["body"] = rec["body"][: len(rec["body"]) // 2]  # body cut short: not JSON
        out.append(json.dumps(rec))
    # and a capture record itself cut short, after the secret
    out.append(lines.splitlines()[3][:400])
    path = tmp / "notif-bad.jsonl"
    path.write_text("\n".join(out) + "\n")
    return path, [b"placeholder-token"]


def _harbor(corpus: Path, tmp: Path) -> tuple[Path, list[bytes]]:
    body = (corpus / REG / "harbor/webhook-artifact-pushed-default-docs.json").read_text()
    headers = {
        "Authorization": "Bearer harbor-secret-token-123",
        "Content-Type": "application/json",
    }
    bad_body = _capture(headers, body[:200])
    # a bare delivery whose JSON is cut inside a quoted password
    cut = body.rstrip()[:-1] + ', "auth": {"password": "hunter2-harbor-pw'
    path = tmp / "harbor-bad.jsonl"
    path.write_text(bad_body + "\n" + _capture(headers, cut) + "\n")
    return path, [b"harbor-secret-token-123", b"hunter2-harbor-pw"]


def _k8s(corpus: Path, tmp: Path) -> tuple[Path, list[bytes]]:
    line = (corpus / REG / "kubernetes/k8s-audit-create-secret-falco-fixture.jsonl").read_bytes()
    line = line.strip()
    assert line.count(K8S_SECRET) == 2
    bad_time = line.replace(b'"2019-11-18T04:40:56.741993Z"', b'"yesterday"')
    bad_time = bad_time.replace(b'"stageTimestamp"', b'"x"').replace(
        b'"requestReceivedTimestamp":"2019-11-18T04:40:56.739299Z"',
        b'"requestReceivedTimestamp":"yesterday"',
    )
    cut = line[: line.index(K8S_SECRET, line.index(K8S_SECRET) + 1) + 10]  # cut in the secret
    path = tmp / "k8s-bad.jsonl"
    path.write_bytes(bad_time + b"\n" + cut + b"\n")
    return path, [K8S_SECRET, K8S_SECRET[:10]]


def _mlflow(corpus: Path, tmp: Path) -> tuple[Path, list[bytes]]:
    lines = (corpus / REG / "mlflow-live/mlflow-3.17.2-webhooks-received.jsonl").read_text()
    out, secrets = [], []
    for line in lines.splitlines()[:2]:
        rec = json.loads(line)
        secrets.append(rec["headers"]["X-MLflow-Signature"].split(",", 1)[1].encode())
        rec["body"] = rec["body"][:50]
        out.append(json.dumps(rec))
    path = tmp / "mlflow-bad.jsonl"
    path.write_text("\n".join(out) + "\n")
    return path, secrets


CASES = {
    "distribution-notifications": _distribution,
    "harbor-webhook": _harbor,
    "k8s-audit": _k8s,
    "mlflow-webhook": _mlflow,
}


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_secrets_never_printed_nor_stored(fmt: str, corpus: Path, tmp_path: Path) -> None:
    path, secrets = CASES[fmt](corpus, tmp_path)
    assert all(s in path.read_bytes() for s in secrets)  # the input does hold them
    runner = CliRunner()
    res = runner.invoke(cli, ["audit", "parse", "--format", fmt, "--json", str(path)])
    assert res.exit_code == 1, res.output
    rows = [json.loads(x)["unparsed"] for x in res.stdout.splitlines() if '"unparsed"' in x]
    assert len(rows) == len(path.read_bytes().splitlines())
    for secret in secrets:
        assert secret not in res.stdout_bytes and secret not in res.stderr_bytes
    assert all(REDACTED in r["raw_kept"] for r in rows)
    # raw_sha256 still names the original line
    originals = {sha256_hex(x) for x in path.read_bytes().splitlines()}
    assert {r["raw_sha256"] for r in rows} <= originals

    db = tmp_path / "ledger.db"
    res = runner.invoke(
        cli, ["audit", "ingest", "--format", fmt, "--ledger", f"sqlite:///{db}", str(path)]
    )
    assert res.exit_code == 1, res.output
    assert f"appended {len(rows)} record(s)" in res.stdout
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("ledger.db*"))
    assert REDACTED.encode() in stored
    for secret in secrets:
        assert secret not in stored


def test_redaction_shapes() -> None:
    cases = {
        b"GET / HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n": b"dXNlcjpwYXNz",
        b"header=map[Authorization:[Bearer zzzzzzzz] Accept:[*/*]]": b"zzzzzzzz",
        b'{"Authorization": ["Bearer qqqqqqqqq"]}': b"qqqqqqqqq",
        b'{"u": "https://bob:pw123@h/x?X-Amz-Signature=ffee&a=1"}': b"pw123",
        b'{"u": "/x?X-Amz-Signature=ffee11&a=1"}': b"ffee11",
        b'{"X-Hub-Signature-256": "sha256=abcdef"}': b"abcdef",
        b'{"body": "{\\"client_secret\\": \\"s3cr3t\\"}"}': b"s3cr3t",
        b'"last-applied":"{\\"data\\":{\\"k\\":\\"c2VjcmV0\\"},\\"kind\\":\\"Secret\\"}"': (
            b"c2VjcmV0"
        ),
        b'{"kind":"Secret","stringData":{"user":"admin-name"}}': b"admin-name",
    }
    for raw, secret in cases.items():
        out = redact_bytes(raw)
        assert secret not in out, out
        assert redact_bytes(out) == out  # idempotent
    # a non-secret "data" object elsewhere is left alone
    assert redact_bytes(b'{"data":{"name":"resnet50"}}') == b'{"data":{"name":"resnet50"}}'


def test_unparsed_redacts_a_window_and_keeps_the_original_hash() -> None:
    raw = b'{"pad": "' + b"x" * 4080 + b'", "Authorization": "Bearer ' + b"t" * 9000 + b'"}'
    u = Unparsed("s", "why", raw, "f:0")
    assert u.raw_sha256 == sha256_hex(raw) and u.raw_len == len(raw)
    assert b"tttttt" not in u.raw and len(u.raw) <= Unparsed.MAX_KEPT
    assert u.to_json()["raw_truncated"] is True
    small = Unparsed("s", "why", b'{"Cookie": "a=b"}', "f:0")
    assert small.to_json()["raw_truncated"] is False
    assert small.to_json()["raw_kept"] == '{"Cookie": "REDACTED"}'


REGISTRY_AUTH = base64.b64encode(
    json.dumps({"username": "bob", "password": "hunter2-reg-pw", "serveraddress": "r.io"}).encode()
)
AWS_SECRET = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_registry_auth_and_env_assignments_on_corpus_lines(corpus: Path) -> None:
    """Sweep 2 finding 13: X-Registry-Auth (base64 JSON with a password) and env-style
    ``*SECRET*``/``*PASSWORD*`` assignments, written into corpus lines in every usual form."""
    app = (corpus / REG / "distribution-live/registry-app-json.log").read_bytes().splitlines()[0]
    assert b"headers=map[Authorization:[Bearer placeholder-token]]" in app
    pw = b"hunter2-reg-pw"
    forms = [
        # mid-line header, Go header map, JSON member, escaped JSON, bare base64 value
        app.replace(b"timeout=2s", b"timeout=2s, X-Registry-Auth: " + REGISTRY_AUTH),
        app.replace(b"Authorization:[Bearer", b"X-Registry-Auth:[" + REGISTRY_AUTH + b" x"),
        app.replace(b'"level"', b'"X-Registry-Auth":"' + REGISTRY_AUTH + b'","level"'),
        app.replace(b"timeout=2s", b'body={\\"x-registry-auth\\": \\"' + REGISTRY_AUTH),
        app.replace(b"timeout=2s", b"auth=" + REGISTRY_AUTH.decode().rstrip("=").encode()),
        app.replace(b"timeout=2s", b"creds " + REGISTRY_AUTH),
        # environment / ini / shell assignments, a Kubernetes container env entry
        app.replace(b"timeout=2s", b"env AWS_SECRET_ACCESS_KEY=" + AWS_SECRET),
        app.replace(b"timeout=2s", b'export AWS_SECRET_ACCESS_KEY=\\"' + AWS_SECRET + b'\\"'),
        b"[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = " + AWS_SECRET,
        b"MINIO_ROOT_USER=admin MINIO_ROOT_PASSWORD='" + AWS_SECRET + b"' minio server /d",
        app.replace(b'"level"', b'"aws_secret_access_key":"' + AWS_SECRET + b'","level"'),
    ]
    for raw in forms:
        assert pw in raw or AWS_SECRET in raw or REGISTRY_AUTH.rstrip(b"=") in raw
        kept = Unparsed("s", "why", raw, "f:0").raw
        assert pw not in kept and AWS_SECRET not in kept, kept
        assert REGISTRY_AUTH.rstrip(b"=")[:20] not in kept, kept
        assert REDACTED.encode() in kept
        assert redact_bytes(kept) == kept  # idempotent
    # identifiers stay: the access key id, the user name, the rest of the line
    ini = Unparsed("s", "why", forms[8], "f:0").raw
    assert b"aws_access_key_id = AKIDEXAMPLE" in ini
    assert b"MINIO_ROOT_USER=admin" in Unparsed("s", "why", forms[9], "f:0").raw
    assert b"configuring endpoint sentinel" in Unparsed("s", "why", forms[6], "f:0").raw
    k8s = (corpus / REG / "kubernetes/k8s-audit-delete-deployment-falco-fixture.jsonl").read_bytes()
    env = b'"env":[{"name":"AWS_SECRET_ACCESS_KEY","value":"' + AWS_SECRET + b'"}],'
    pod = k8s.strip().replace(b'"kind":"Event"', env + b'"kind":"Event"', 1)
    assert AWS_SECRET in pod
    kept = Unparsed("s", "why", pod, "f:0").raw
    assert AWS_SECRET not in kept and b'"name":"AWS_SECRET_ACCESS_KEY"' in kept
    # base64 JSON without a secret (a JWT header) is left alone
    jwt_header = base64.urlsafe_b64encode(b'{"alg":"ES256","typ":"JWT"}').rstrip(b"=")
    assert redact_bytes(b"id " + jwt_header) == b"id " + jwt_header


def test_env_assignment_in_an_unparsed_mlflow_line(corpus: Path, tmp_path: Path) -> None:
    """The MLflow server's stderr (not an access log: every line unparsed) with the
    credentials a start script might echo: none reaches `audit parse --json`."""
    lines = (corpus / REG / "mlflow-live/mlflow-3.17.2-uvicorn-server-stderr.log").read_bytes()
    first = lines.splitlines()[0]
    extra = b" MLFLOW_TRACKING_PASSWORD=hunter2-mlflow AWS_SECRET_ACCESS_KEY=" + AWS_SECRET
    path = tmp_path / "stderr.log"
    path.write_bytes(first + extra + b"\n")
    res = CliRunner().invoke(
        cli, ["audit", "parse", "--format", "mlflow-access", "--json", str(path)]
    )
    assert res.exit_code == 1, res.output
    (row,) = [json.loads(x)["unparsed"] for x in res.stdout.splitlines()]
    assert b"hunter2-mlflow" not in res.stdout_bytes and AWS_SECRET not in res.stdout_bytes
    assert "MLFLOW_TRACKING_PASSWORD=REDACTED AWS_SECRET_ACCESS_KEY=REDACTED" in row["raw_kept"]
    assert row["raw_sha256"] == sha256_hex(first + extra)
