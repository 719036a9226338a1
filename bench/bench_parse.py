"""Parse-and-normalize throughput per audit format, on generated input (issue 4, Performance).

Usage::

    .venv/bin/python bench/bench_parse.py [-n 1000000] [--seed 1] [--format F ...] [--keep DIR]

For each format (default: every entry of ``sentinel.audit.parsers.PARSERS``) a child process:

1. writes ``-n`` lines of that format to a temporary file, generated from a seeded
   ``random.Random`` (synthetic values in the shape of each upstream format; no corpus content
   is copied — the MinIO samples are AGPL);
2. reads the file back with the tailer's line reader (``sentinel.audit.lines.iter_lines``,
   1 MiB cap) and calls the format's parser on every line — the same work the tailer does per
   line before the ledger: decode, parse, classify, convert the time to UTC, build the frozen
   ``AuditEvent`` (and, for MinIO, redact), and counts events and ``Unparsed``;
3. reports lines, events, unparsed, wall and CPU seconds of step 2, events per wall second and
   per CPU second (the CPU figure is the one to compare when the machine is shared), and the
   child's peak RSS (``ru_maxrss``; the child holds only one line at a time).

Payload formats are fed one compact payload per line (the webhook receiver hands the parser one
body at a time). ``mlflow-webhook`` lines are capture records whose HMAC signatures are
verified (``webhook_secret`` set); ``jsonmap`` uses the default mapping (Sentinel's own event
JSON). Prints a table; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel.audit.lines import Oversize, iter_lines
from sentinel.audit.parsers import PARSERS, ParserOptions, build_parser
from sentinel.records import AuditEvent

SECRET = b"bench-webhook-secret"
START = datetime(2026, 11, 1, tzinfo=UTC)
USERS = ["alice", "ci-bot", "bob", "robot$models+ci", "mallory"]
REPOS = ["models/resnet50", "models/bert-base", "llm/llama-7b", "vision/yolo", "nlp/t5"]
UAS = [
    "skopeo/1.9.3",
    "docker/24.0.7 go/go1.20",
    "containerd/v1.7.2",
    "mlflow-python-client/3.17.2",
]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class Gen:
    """Seeded helpers shared by the line generators."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.t = START

    def tick(self) -> datetime:
        self.t += timedelta(microseconds=self.r.randrange(1, 400_000))
        return self.t

    def hexd(self, n: int = 64) -> str:
        return f"{self.r.getrandbits(4 * n):0{n}x}"

    def digest(self) -> str:
        return "sha256:" + self.hexd()

    def ip(self) -> str:
        return f"10.{self.r.randrange(256)}.{self.r.randrange(256)}.{self.r.randrange(1, 255)}"

    def pick(self, seq: list[str]) -> str:
        return seq[self.r.randrange(len(seq))]

    def uuid(self) -> str:
        h = self.hexd(32)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def rfc3339(self, ts: datetime, digits: int = 9) -> str:
        frac = f"{ts.microsecond:06d}{self.r.randrange(1000):03d}"[:digits]
        return ts.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if digits else "") + "Z"

    def request(self) -> tuple[str, str, int]:
        repo = self.pick(REPOS)
        kind = self.r.randrange(6)
        if kind == 0:
            return "PUT", f"/v2/{repo}/manifests/v{self.r.randrange(50)}", 201
        if kind == 1:
            return "GET", f"/v2/{repo}/manifests/v{self.r.randrange(50)}", 200
        if kind == 2:
            return "GET", f"/v2/{repo}/blobs/{self.digest()}", 200
        if kind == 3:
            return "HEAD", f"/v2/{repo}/blobs/{self.digest()}", 200
        if kind == 4:
            return "DELETE", f"/v2/{repo}/manifests/{self.digest()}", 202
        return "GET", f"/v2/{repo}/manifests/latest", self.r.choice((401, 403, 404))


def g_distribution_json(g: Gen) -> str:
    method, uri, status = g.request()
    return json.dumps(
        {
            "auth.user.name": g.pick(USERS),
            "go.version": "go1.19.8",
            "http.request.host": "127.0.0.1:5000",
            "http.request.id": g.uuid(),
            "http.request.method": method,
            "http.request.remoteaddr": f"{g.ip()}:{g.r.randrange(1024, 65535)}",
            "http.request.uri": uri,
            "http.request.useragent": g.pick(UAS),
            "http.response.contenttype": "application/json",
            "http.response.duration": "3.1ms",
            "http.response.status": status,
            "http.response.written": g.r.randrange(100000),
            "level": "info",
            "msg": "response completed",
            "time": g.rfc3339(g.tick()),
        },
        separators=(",", ":"),
    )


def g_distribution_text(g: Gen) -> str:
    method, uri, status = g.request()
    return (
        f'time="{g.rfc3339(g.tick())}" level=info msg="response completed" go.version=go1.19.8 '
        f'http.request.host="127.0.0.1:5000" http.request.id={g.uuid()} '
        f"http.request.method={method} "
        f'http.request.remoteaddr="{g.ip()}:{g.r.randrange(1024, 65535)}" '
        f'http.request.uri="{uri}" http.request.useragent="{g.pick(UAS)}" '
        f"http.response.duration=3.1ms http.response.status={status} http.response.written=512"
    )


def g_distribution_access(g: Gen) -> str:
    method, uri, status = g.request()
    ts = g.tick()
    return (
        f'{g.ip()} - - [{ts:%d}/{MONTHS[ts.month - 1]}/{ts:%Y:%H:%M:%S} +0000] "{method} {uri} '
        f'HTTP/1.1" {status} {g.r.randrange(100000)} "" "{g.pick(UAS)}"'
    )


def g_harbor_nginx(g: Gen) -> str:
    """Harbor's nginx access log (Helm chart ``log_format``): ``[time]:addr - "req" status
    bytes "referer" "agent" request_time upstream_time pipe``."""
    method, uri, status = g.request()
    ts = g.tick()
    return (
        f'[{ts:%d}/{MONTHS[ts.month - 1]}/{ts:%Y:%H:%M:%S} +0000]:{g.ip()} - "{method} {uri} '
        f'HTTP/1.1" {status} {g.r.randrange(100000)} "-" "{g.pick(UAS)}" '
        f"0.{g.r.randrange(999):03d} 0.{g.r.randrange(999):03d} ."
    )


def g_distribution_notifications(g: Gen) -> str:
    repo = g.pick(REPOS)
    action = g.pick(["push", "pull", "delete", "mount"])
    ev = {
        "id": g.uuid(),
        "timestamp": g.rfc3339(g.tick()),
        "action": action,
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": g.digest(),
            "size": 481,
            "repository": repo,
            "url": f"http://127.0.0.1:5000/v2/{repo}/manifests/x",
            "tag": f"v{g.r.randrange(50)}",
        },
        "request": {
            "id": g.uuid(),
            "addr": f"{g.ip()}:{g.r.randrange(1024, 65535)}",
            "host": "127.0.0.1:5000",
            "method": "GET" if action == "pull" else "PUT",
            "useragent": g.pick(UAS),
        },
        "actor": {"name": g.pick(USERS)},
        "source": {"addr": "vm:5000", "instanceID": g.uuid()},
    }
    return json.dumps({"events": [ev]}, separators=(",", ":"))


def _harbor_record(g: Gen, ts: datetime) -> str:
    op = g.pick(["pull", "create", "delete"])
    res = f"{g.pick(REPOS)}:" + (g.digest() if op == "delete" else f"v{g.r.randrange(50)}")
    go = (
        ts.strftime("%Y-%m-%d %H:%M:%S")
        + f".{ts.microsecond:06d}123 +0000 UTC m=+{g.r.random() * 1e5:.9f}"
    )
    return (
        f'{ts:%Y-%m-%dT%H:%M:%SZ} [INFO] [/pkg/audit/manager.go:75][operator="{g.pick(USERS)}" '
        f'time="{go}"]: action:{op}, resource:{res}'
    )


def g_harbor_audit_syslog(g: Gen) -> str:
    ts = g.tick()
    return f"<134>{ts:%Y-%m-%dT%H:%M:%SZ} harbor-core audit[1]: {_harbor_record(g, ts)}"


def g_harbor_audit_file(g: Gen) -> str:
    ts = g.tick()
    head = f"{MONTHS[ts.month - 1]} {ts.day:>2} {ts:%H:%M:%S}"
    return f"{head} 814da02eb5a8 audit[1]: {_harbor_record(g, ts)}"


def g_harbor_webhook(g: Gen) -> str:
    ts = g.tick()
    repo = g.pick(REPOS)
    data = {
        "resources": [
            {
                "digest": g.digest(),
                "tag": f"v{g.r.randrange(50)}",
                "resource_url": f"harbor.local/{repo}:v1",
            }
        ],
        "repository": {
            "date_created": 1680501893,
            "name": repo.split("/")[1],
            "namespace": repo.split("/")[0],
            "repo_full_name": repo,
            "repo_type": "private",
        },
    }
    if g.r.randrange(2):
        body = {
            "type": g.pick(["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"]),
            "occur_at": int(ts.timestamp()),
            "operator": g.pick(USERS),
            "event_data": data,
        }
    else:
        body = {
            "specversion": "1.0",
            "id": g.uuid(),
            "requestid": g.uuid(),
            "source": "/projects/2/webhook/policies/15",
            "type": g.pick(["harbor.artifact.pushed", "harbor.artifact.pulled"]),
            "datacontenttype": "application/json",
            "time": g.rfc3339(ts, 0),
            "data": data,
            "operator": g.pick(USERS),
        }
    return json.dumps(body, separators=(",", ":"))


def g_minio_audit(g: Gen) -> str:
    ts = g.tick()
    api = g.pick(["GetObject", "PutObject", "DeleteObject", "HeadObject", "PutBucketPolicy"])
    ak = g.pick(["minioadmin", "ak-alice", "ak-ci"])
    return json.dumps(
        {
            "version": "1",
            "deploymentid": g.uuid(),
            "time": g.rfc3339(ts),
            "event": "",
            "trigger": "incoming",
            "api": {
                "name": api,
                "bucket": "models",
                "object": f"{g.pick(REPOS)}/model.safetensors",
                "status": "OK",
                "statusCode": g.r.choice((200, 200, 204, 403)),
                "rx": 401,
                "tx": 0,
                "timeToResponse": "13309747ns",
            },
            "remotehost": g.ip(),
            "requestID": g.hexd(16).upper(),
            "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70",
            "requestPath": "/models/x",
            "requestHost": "minio.local:9000",
            "requestHeader": {
                "Authorization": f"AWS4-HMAC-SHA256 Credential={ak}/20261101/us-east-1/s3/"
                f"aws4_request,SignedHeaders=host;x-amz-date,Signature={g.hexd()}",
                "X-Amz-Date": "20261101T000000Z",
                "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD",
            },
            "responseHeader": {"ETag": g.hexd(32), "X-Amz-Request-Id": g.hexd(16).upper()},
            "accessKey": ak,
        },
        separators=(",", ":"),
    )


def g_minio_notification(g: Gen) -> str:
    ts = g.tick()
    name = g.pick(["s3:ObjectCreated:Put", "s3:ObjectAccessed:Get", "s3:ObjectRemoved:Delete"])
    rec = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": g.rfc3339(ts, 3),
        "eventName": name,
        "userIdentity": {"principalId": g.pick(["ak-alice", "ak-ci"])},
        "requestParameters": {"sourceIPAddress": g.ip()},
        "responseElements": {"x-amz-request-id": g.hexd(16).upper()},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {"name": "models", "arn": "arn:aws:s3:::models"},
            "object": {
                "key": "resnet%2Fmodel.bin",
                "size": 6474,
                "eTag": g.hexd(32),
                "sequencer": g.hexd(16).upper(),
            },
        },
        "source": {"host": "", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7"},
    }
    return json.dumps(
        {"EventName": name, "Key": "models/x", "Records": [rec]}, separators=(",", ":")
    )


def g_mlflow_access(g: Gen) -> str:
    ts = g.tick()
    path = g.pick(
        [
            "/api/2.0/mlflow/registered-models/create",
            "/api/2.0/mlflow/model-versions/create",
            "/api/2.0/mlflow/model-versions/get-download-uri?name=resnet50&version=3",
            "/api/2.0/mlflow/registered-models/get?name=resnet50",
            "/api/2.0/mlflow-artifacts/artifacts/1/models/m-0af1/artifacts/model.pkl",
            "/api/2.0/mlflow/runs/log-metric",
        ]
    )
    method = "GET" if "get" in path or "artifacts/1" in path else "POST"
    status = g.pick(["200", "200", "200", "401", "403"])
    if g.r.randrange(2):
        return (
            f"{ts:%Y/%m/%d %H:%M:%S} INFO:     {g.ip()}:{g.r.randrange(1024, 65535)} - "
            f'"{method} {path} HTTP/1.1" {status} OK'
        )
    return (
        f"{g.ip()} - {g.pick(USERS)} [{ts:%d}/{MONTHS[ts.month - 1]}/{ts:%Y:%H:%M:%S} +0000] "
        f'"{method} {path} HTTP/1.1" {status} 162 "-" "mlflow-python-client/3.17.2"'
    )


def g_mlflow_webhook(g: Gen) -> str:
    ts = g.tick()
    body = json.dumps(
        {
            "entity": "model_version",
            "action": "created",
            "timestamp": ts.isoformat(),
            "data": {
                "name": "resnet50",
                "version": str(g.r.randrange(99)),
                "source": "models:/m-1",
                "run_id": None,
                "tags": {},
            },
        }
    )
    delivery, stamp = g.uuid(), str(int(ts.timestamp()))
    mac = hmac.new(SECRET, f"{delivery}.{stamp}.".encode() + body.encode(), hashlib.sha256)
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }
    rec = {"received_at": ts.isoformat(), "path": "/mlflow", "headers": headers, "body": body}
    return json.dumps(rec, separators=(",", ":"))


def g_zot_audit(g: Gen) -> str:
    method, uri, status = g.request()
    method = "PUT" if method in ("GET", "HEAD") else method
    return json.dumps(
        {
            "level": "info",
            "clientIP": f"{g.ip()}:{g.r.randrange(1024, 65535)}",
            "subject": g.pick(USERS),
            "action": method,
            "object": uri,
            "status": 201 if status < 400 else 202,
            "time": g.rfc3339(g.tick()),
            "message": "HTTP API Audit",
        },
        separators=(",", ":"),
    )


def g_k8s_audit(g: Gen) -> str:
    verb = g.pick(["get", "list", "create", "delete", "patch"])
    ts = g.tick()
    return json.dumps(
        {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": g.uuid(),
            "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/ml/secrets/s3",
            "verb": verb,
            "user": {"username": g.pick(USERS), "groups": ["system:authenticated"]},
            "sourceIPs": [g.ip()],
            "userAgent": "kubectl/v1.29.0",
            "objectRef": {
                "resource": g.pick(["secrets", "pods", "deployments"]),
                "namespace": "ml",
                "name": "x",
                "apiVersion": "v1",
            },
            "responseStatus": {"metadata": {}, "code": g.r.choice((200, 201, 403))},
            "requestReceivedTimestamp": g.rfc3339(ts, 6),
            "stageTimestamp": g.rfc3339(ts, 6),
            "annotations": {"authorization.k8s.io/decision": "allow"},
        },
        separators=(",", ":"),
    )


def g_jsonmap(g: Gen) -> str:
    method, _uri, status = g.request()
    return json.dumps(
        {
            "ts": g.rfc3339(g.tick(), 6),
            "source": "reg",
            "source_kind": "distribution",
            "action": g.pick(["push", "pull", "delete", "other"]),
            "outcome": "success",
            "actor": g.pick(USERS),
            "actor_verified": True,
            "artifact": g.pick(REPOS),
            "reference": "v1",
            "digest": g.digest(),
            "client_ip": g.ip(),
            "client_ip_source": "socket",
            "user_agent": g.pick(UAS),
            "request_id": g.uuid(),
            "event_id": None,
            "http_method": method,
            "http_status": status,
        },
        separators=(",", ":"),
    )


GENERATORS: dict[str, Callable[[Gen], str]] = {
    "distribution-json": g_distribution_json,
    "distribution-text": g_distribution_text,
    "distribution-access": g_distribution_access,
    "distribution-notifications": g_distribution_notifications,
    "harbor-audit-syslog": g_harbor_audit_syslog,
    "harbor-audit-file": g_harbor_audit_file,
    "harbor-webhook": g_harbor_webhook,
    "harbor-nginx": g_harbor_nginx,
    "minio-audit": g_minio_audit,
    "minio-notification": g_minio_notification,
    "mlflow-access": g_mlflow_access,
    "mlflow-webhook": g_mlflow_webhook,
    "zot-audit": g_zot_audit,
    "k8s-audit": g_k8s_audit,
    "jsonmap": g_jsonmap,
}


def generate(fmt: str, n: int, seed: int, path: Path) -> int:
    g = Gen(seed)
    gen = GENERATORS[fmt]
    size = 0
    with path.open("w", encoding="utf-8") as out:
        chunk: list[str] = []
        for _ in range(n):
            chunk.append(gen(g))
            if len(chunk) == 10_000:
                text = "\n".join(chunk) + "\n"
                size += out.write(text)
                chunk.clear()
        if chunk:
            size += out.write("\n".join(chunk) + "\n")
    return size


def one(fmt: str, n: int, seed: int, workdir: Path) -> dict[str, object]:
    """Runs in the child: generate, then time read + parse. Returns the figures."""
    path = workdir / f"{fmt}.log"
    t0 = time.perf_counter()
    size = generate(fmt, n, seed, path)
    gen_s = time.perf_counter() - t0
    options = ParserOptions(webhook_secret=SECRET if fmt == "mlflow-webhook" else None)
    parser = build_parser(fmt, options)
    lines = events = unparsed = 0
    t1 = time.perf_counter()
    c1 = time.process_time()
    with path.open("rb") as fh:
        for line in iter_lines(fh, 0):
            lines += 1
            if isinstance(line.data, Oversize):
                unparsed += 1
                continue
            for item in parser.parse(line.data, source="bench", src_pos=f"f:{line.start}"):
                if isinstance(item, AuditEvent):
                    events += 1
                else:
                    unparsed += 1
    secs = time.perf_counter() - t1
    cpu = time.process_time() - c1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "format": fmt,
        "lines": lines,
        "events": events,
        "unparsed": unparsed,
        "bytes": size,
        "gen_s": gen_s,
        "cpu": cpu,
        "secs": secs,
        "rss_kib": rss,
    }


def _child_results(
    args: argparse.Namespace, formats: list[str], workdir: Path
) -> Iterator[dict[str, object]]:
    for fmt in formats:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            fmt,
            "-n",
            str(args.n),
            "--seed",
            str(args.seed),
            "--workdir",
            str(workdir),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res = json.loads(out.strip().splitlines()[-1])
        if not args.keep:
            (workdir / f"{fmt}.log").unlink(missing_ok=True)
        yield res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="lines per format (default 1000000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--format", action="append", choices=sorted(GENERATORS), dest="formats")
    ap.add_argument("--keep", type=Path, default=None, help="keep generated files in DIR")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.child, args.n, args.seed, args.workdir)))
        return
    assert set(GENERATORS) == set(PARSERS), "a format without a generator"
    formats = args.formats or list(GENERATORS)
    print(
        f"bench_parse: {args.n} lines per format, seed {args.seed}, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    cols = (
        "lines",
        "events",
        "unparsed",
        "MB",
        "wall s",
        "cpu s",
        "events/s",
        "ev/cpu-s",
        "RSS MiB",
    )
    widths = (9, 9, 9, 6, 8, 8, 10, 10, 9)
    header = f"{'format':<28}" + "".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True))
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for r in _child_results(args, formats, workdir):
            secs, cpu = float(str(r["secs"])), float(str(r["cpu"]))
            lines, events = int(str(r["lines"])), int(str(r["events"]))
            values = (
                f"{lines}",
                f"{events}",
                f"{r['unparsed']}",
                f"{int(str(r['bytes'])) / 1e6:.0f}",
                f"{secs:.1f}",
                f"{cpu:.1f}",
                f"{events / secs:.0f}",
                f"{events / cpu:.0f}",
                f"{int(str(r['rss_kib'])) / 1024:.0f}",
            )
            row = "".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
            print(f"{r['format']!s:<28}{row}", flush=True)


if __name__ == "__main__":
    main()
