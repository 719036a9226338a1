"""Corpus sweep (issue 4, item 7): every file under ../shared/corpus/registry-logs, read the
way `sentinel audit parse --format F FILE` reads it, gives exactly the listed number of events
and of ``Unparsed`` records, with the listed reasons — no exception, no silent empty result,
and no file left out (a new corpus file fails the sweep until it is listed here).

Files that are not registry input (SOURCES.md, the scenario step notes, server stderr) are
pointed at the format of their folder on purpose: a user who does the same must get a clear
rejection, not a crash and not silence.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from sentinel.audit.files import parse_file
from sentinel.audit.parsers import PARSERS
from sentinel.records import AuditEvent, Unparsed

#: path under registry-logs → (format, events, unparsed, reasons (text before the first ":"))
EXPECTED: dict[str, tuple[str, int, int, set[str]]] = {
    "SOURCES.md": ("jsonmap", 0, 82, {"not JSON"}),
    "distribution/debug-vars-notifications-docs.json": (
        "distribution-notifications",
        0,
        1,
        {"not a notification envelope (no events list)"},
    ),
    "distribution/notification-delete-target-docs-fragment.json": (
        "distribution-notifications",
        0,
        1,
        {"not a notification envelope (no events list)"},
    ),
    "distribution/notification-envelope-3-events-testfixture-v2.8.2.json": (
        "distribution-notifications",
        3,
        0,
        set(),
    ),
    "distribution/notification-pull-docs-example.json": ("distribution-notifications", 1, 0, set()),
    "distribution/notification-push-envelope-docs-http-request.txt": (
        "distribution-notifications",
        0,
        1,
        {"not JSON"},
    ),
    "distribution/registry-text-log-notification-docs.log": ("distribution-text", 0, 0, set()),
    "distribution/registry-text-tty-debug-head-manifest.log": ("distribution-text", 0, 0, set()),
    "distribution-live/notification-delete-manifest.json": (
        "distribution-notifications",
        1,
        0,
        set(),
    ),
    "distribution-live/notification-delete-tag.json": ("distribution-notifications", 1, 0, set()),
    "distribution-live/notification-mount.json": ("distribution-notifications", 1, 0, set()),
    "distribution-live/notification-pull-blob-head.json": (
        "distribution-notifications",
        1,
        0,
        set(),
    ),
    "distribution-live/notification-pull-forged-xff.json": (
        "distribution-notifications",
        1,
        0,
        set(),
    ),
    "distribution-live/notification-pull-manifest.json": (
        "distribution-notifications",
        1,
        0,
        set(),
    ),
    "distribution-live/notification-push-blob.json": ("distribution-notifications", 1, 0, set()),
    "distribution-live/notification-push-manifest.json": (
        "distribution-notifications",
        1,
        0,
        set(),
    ),
    "distribution-live/notifications-received.jsonl": ("distribution-notifications", 27, 0, set()),
    "distribution-live/registry-access-combined.log": ("distribution-access", 63, 0, set()),
    "distribution-live/registry-app-json.log": ("distribution-json", 63, 0, set()),
    "distribution-live/scenario-steps-json-run.txt": (
        "distribution-json",
        0,
        32,
        {"not JSON", "not a JSON object", "not a logrus JSON entry (no time/msg)"},
    ),
    "harbor/harbor-audit-syslog.log": ("harbor-audit-file", 5, 0, set()),
    "harbor/harbor-core-syslog-local-time.log": (
        "harbor-audit-file",
        0,
        1,
        {"not a Harbor audit record (syslog tag 'core')"},
    ),
    "harbor/harbor-jobservice-multiline-syslog.log": (
        "harbor-audit-file",
        0,
        6,
        {"not a Harbor audit record (syslog tag 'jobservice')"},
    ),
    "harbor/harbor-nginx-access-helm.log": ("harbor-nginx", 4, 0, set()),
    "harbor/harbor-registry-k8s-stdout-access.log": ("distribution-access", 5, 0, set()),
    "harbor/harbor-registry-panic-multiline-syslog.log": (
        "distribution-text",
        0,
        9,
        {"not a logrus text entry (no time/msg)"},
    ),
    "harbor/harbor-registry-response-completed-slow.log": (
        "distribution-text",
        0,
        2,
        {"not a logrus text entry (no time/msg)"},
    ),
    "harbor/harbor-registry-syslog-error-line.log": ("distribution-text", 1, 0, set()),
    "harbor/harbor-registry-syslog-mixed-access-and-app.log": (
        "distribution-text",
        1,
        3,
        {"not a logrus text entry (no time/msg)"},
    ),
    "harbor/webhook-artifact-deleted-cloudevents-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-artifact-deleted-default-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-artifact-pulled-cloudevents-docs.jsonc.txt": (
        "harbor-webhook",
        0,
        1,
        {"not JSON"},
    ),
    "harbor/webhook-artifact-pulled-default-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-artifact-pushed-cloudevents-docs.jsonc.txt": (
        "harbor-webhook",
        0,
        1,
        {"not JSON"},
    ),
    "harbor/webhook-artifact-pushed-default-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-quota-exceeded-cloudevents-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-quota-exceeded-default-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-quota-near-threshold-cloudevents-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-quota-near-threshold-default-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-replication-status-changed-cloudevents-docs.json": (
        "harbor-webhook",
        1,
        0,
        set(),
    ),
    "harbor/webhook-replication-status-changed-default-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-scanning-completed-cloudevents-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-scanning-completed-default-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-scanning-failed-cloudevents-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-scanning-failed-default-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-scanning-stopped-cloudevents-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-scanning-stopped-default-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-slack-rendered-message-docs.txt": ("harbor-webhook", 0, 1, {"not JSON"}),
    "harbor/webhook-tag-retention-finished-cloudevents-docs.json": ("harbor-webhook", 1, 0, set()),
    "harbor/webhook-tag-retention-finished-default-docs.json": ("harbor-webhook", 1, 0, set()),
    "kubernetes/k8s-audit-create-secret-falco-fixture.jsonl": ("k8s-audit", 1, 0, set()),
    "kubernetes/k8s-audit-delete-deployment-falco-fixture.jsonl": ("k8s-audit", 1, 0, set()),
    "kubernetes/k8s-audit-exec-pod-responsestarted-falco-fixture.jsonl": ("k8s-audit", 1, 0, set()),
    "kubernetes/k8s-audit-v1beta1-anonymous-create-namespace-falco-fixture.jsonl": (
        "k8s-audit",
        1,
        0,
        set(),
    ),
    "minio/minio-audit-kafka-docs-2024.jsonl": ("minio-audit", 1, 0, set()),
    "minio/minio-audit-webhook-docs-2019.json": ("minio-audit", 1, 0, set()),
    "minio/minio-audit-webhook-docs-2021.json": ("minio-audit", 1, 0, set()),
    "minio/minio-audit-webhook-docs-2024.json": ("minio-audit", 1, 0, set()),
    "minio/minio-bucket-notification-kafka-docs.json": ("minio-notification", 1, 0, set()),
    "minio/minio-bucket-notification-logrus-wrapped-docs.json": ("minio-notification", 1, 0, set()),
    "minio/minio-bucket-notification-nsq-docs.json": ("minio-notification", 1, 0, set()),
    "mlflow-live/mlflow-3.17.2-basic-auth-server-stderr.log": (
        "mlflow-access",
        0,
        16,
        {"not an MLflow access-log line (uvicorn or gunicorn)"},
    ),
    "mlflow-live/mlflow-3.17.2-gunicorn-access-basic-auth.log": ("mlflow-access", 66, 0, set()),
    "mlflow-live/mlflow-3.17.2-gunicorn-error.log": (
        "mlflow-access",
        0,
        8,
        {"not an MLflow access-log line (uvicorn or gunicorn)"},
    ),
    "mlflow-live/mlflow-3.17.2-uvicorn-access-webhook-run.log": (
        "mlflow-access",
        61,
        1,
        {"not an MLflow access-log line (uvicorn or gunicorn)"},
    ),
    "mlflow-live/mlflow-3.17.2-uvicorn-access.log": (
        "mlflow-access",
        59,
        1,
        {"not an MLflow access-log line (uvicorn or gunicorn)"},
    ),
    "mlflow-live/mlflow-3.17.2-uvicorn-server-stderr.log": (
        "mlflow-access",
        0,
        14,
        {"not an MLflow access-log line (uvicorn or gunicorn)"},
    ),
    "mlflow-live/mlflow-3.17.2-webhooks-received.jsonl": ("mlflow-webhook", 7, 0, set()),
    "mlflow-live/mlflow-webhook-model_version-created.json": ("mlflow-webhook", 1, 0, set()),
    "mlflow-live/mlflow-webhook-model_version_alias-created.json": ("mlflow-webhook", 1, 0, set()),
    "mlflow-live/mlflow-webhook-model_version_alias-deleted.json": ("mlflow-webhook", 1, 0, set()),
    "mlflow-live/mlflow-webhook-model_version_tag-set.json": ("mlflow-webhook", 1, 0, set()),
    "mlflow-live/mlflow-webhook-registered_model-created.json": ("mlflow-webhook", 1, 0, set()),
    "mlflow-live/scenario-steps-gunicorn-basic-auth-run.txt": (
        "mlflow-access",
        0,
        27,
        {"not an MLflow access-log line (uvicorn or gunicorn)"},
    ),
    "mlflow-live/scenario-steps-uvicorn-run.txt": (
        "mlflow-access",
        0,
        27,
        {"not an MLflow access-log line (uvicorn or gunicorn)"},
    ),
    "mlflow-live/scenario-steps-webhook-run.txt": ("mlflow-webhook", 0, 1, {"not JSON"}),
}

#: files that give neither events nor unparsed records, and why that is right: every line is a
#: well-formed application log line that records no access (checked below, line by line)
NO_EVENTS = {
    "distribution/registry-text-log-notification-docs.log": "startup/notification-retry lines",
    "distribution/registry-text-tty-debug-head-manifest.log": "DEBU lines before the response",
}
_LOGRUS_TTY = re.compile(r"^(INFO|ERRO|WARN|DEBU)\[\d+\] \S")


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_every_corpus_file_is_listed(corpus: Path) -> None:
    assert _all_files(corpus / "registry-logs") == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sweep(corpus: Path, name: str) -> None:
    fmt, n_events, n_unparsed, reasons = EXPECTED[name]
    path = corpus / "registry-logs" / name
    items = list(parse_file(path, PARSERS[fmt], "sweep"))
    events = [i for i in items if isinstance(i, AuditEvent)]
    bad = [i for i in items if isinstance(i, Unparsed)]
    assert len(events) + len(bad) == len(items)
    assert (len(events), len(bad)) == (n_events, n_unparsed)
    assert {u.reason.split(":")[0] for u in bad} == reasons
    assert all(u.reason and u.raw_sha256 and u.src_pos for u in bad)
    for ev in events:
        assert ev.ts.utcoffset() is not None and ev.ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert ev.source == "sweep" and ev.source_kind == PARSERS[fmt].source_kind
        assert ev.raw_sha256 and ev.src_pos
        ev.to_json()  # serialisable for the ledger
    if not items:
        assert name in NO_EVENTS, f"{name}: silent empty result"
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        assert lines and all(_LOGRUS_TTY.match(ln) for ln in lines)


def test_sweep_totals() -> None:
    # guards the table itself against an edit that turns every row into (0, 0)
    totals: Counter[str] = Counter()
    for fmt, n_events, _unparsed, _ in EXPECTED.values():
        totals[fmt] += n_events
    # no corpus sample exists for zot (SOURCES.md "Not found") nor for jsonmap (user-defined);
    # Harbor's audit corpus is the on-disk file form (the syslog form is tested in test_harbor)
    no_sample = ("zot-audit", "jsonmap", "harbor-audit-syslog")
    assert all(totals[fmt] > 0 for fmt in PARSERS if fmt not in no_sample)
    assert sum(totals.values()) >= 400
