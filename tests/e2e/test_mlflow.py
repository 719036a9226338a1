"""End to end: a real MLflow 3 tracking server (``mlflow server``, SQLite backend, local
artifacts) driven by the MLflow client → signed webhooks and the access log → the daemon's
service → ledger events naming model and version.

MLflow is an optional test extra (``pip install -e '.[e2e-mlflow]'``); when it is missing the
test fails saying how to install it (never skipped). The server runs on 127.0.0.1 on a free
port; every process it starts (uvicorn, job runner, huey consumers) is stopped by PID, children
first. The client runs in a subprocess so its threads and imports stay out of the test process.

What MLflow can tell (3.17): webhooks for model registration, new versions, aliases and
version tags (signed, ``X-MLflow-Signature``), none for downloads or deletes; the access log
shows downloads (``get-download-uri?name=…&version=…`` names both) and deletes (the model is in
the request body, so the event says it is not named).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel.config import DEFAULT_CONFIG_TOML, load_settings
from sentinel.ledger import Ledger
from sentinel.runtime.rules_wiring import attach_rules, webhook_from_settings
from sentinel.runtime.service import Service
from sentinel.runtime.setup import init_directory
from tests.e2e.harness.mlflow import MlflowServer

CLIENT = r"""
import os, sys, time
from pathlib import Path
import mlflow
from mlflow import MlflowClient

url, hook_url, secret, work = sys.argv[1:5]
work = Path(work)
mlflow.set_tracking_uri(url)
c = MlflowClient(url)
c.create_webhook(
    "sentinel", hook_url, secret=secret,
    events=["registered_model.created", "model_version.created", "model_version_alias.created",
            "model_version_alias.deleted", "model_version_tag.set"],
)
weights = work / "model.safetensors"
weights.write_bytes(os.urandom(4096))
mlflow.set_experiment("sentinel-e2e")
with mlflow.start_run() as run:
    mlflow.log_artifact(str(weights), artifact_path="model")
source = f"runs:/{run.info.run_id}/model"
c.create_registered_model("resnet50")
v1 = c.create_model_version("resnet50", source, run_id=run.info.run_id)
v2 = c.create_model_version("resnet50", source, run_id=run.info.run_id)
c.set_registered_model_alias("resnet50", "champion", v1.version)
c.set_model_version_tag("resnet50", v1.version, "validated", "true")
out = mlflow.artifacts.download_artifacts("models:/resnet50@champion", dst_path=str(work / "dl"))
assert (Path(out) / "model.safetensors").read_bytes() == weights.read_bytes()
c.get_model_version_download_uri("resnet50", v2.version)
c.delete_registered_model_alias("resnet50", "champion")
c.delete_model_version("resnet50", v2.version)
c.delete_registered_model("resnet50")
print("client done", v1.version, v2.version)
"""


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path / "mlflow")
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _config(access_log: Path) -> str:
    text = DEFAULT_CONFIG_TOML.replace(
        "# [[audit.files]]\n",
        f'[[audit.files]]\nid = "mlflow-access"\nformat = "mlflow-access"\n'
        f'path = "{access_log}"\n\n# [[audit.files]]\n',
    )
    text = text.replace("poll_interval = 1.0", "poll_interval = 0.2")
    text = text.replace('listen = "127.0.0.1:9465"', 'listen = "127.0.0.1:0"')
    text = text.replace('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:0"')
    text = text.replace(
        '# mlflow_secret_file = "keys/mlflow-webhook.secret"',
        'mlflow_secret_file = "keys/mlflow-webhook.secret"',
    )
    return text.replace('mlflow_source = "mlflow"', 'mlflow_source = "mlflow-hook"')


def _events(service: Service, source: str) -> list[dict[str, Any]]:
    assert service.ledger is not None
    return [
        r["data"] for r in service.ledger.query(kind="audit_event") if r["data"]["source"] == source
    ]


def test_mlflow_model_lifecycle_end_to_end(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    site = tmp_path / "site"
    init_directory(site, config_text=_config(mlflow_server.access_log))
    secret = secrets.token_urlsafe(24)
    (site / "keys" / "mlflow-webhook.secret").write_text(secret + "\n")
    settings = load_settings(site / "sentinel.toml")
    token = (site / "keys" / "webhook.token").read_text().strip()

    service = Service(settings)
    service.start()
    receiver = None
    try:
        recorder = attach_rules(service)
        # the webhook with its MLflow route, as Service._make_webhook will build it once wired
        receiver = webhook_from_settings(
            settings, lambda items: recorder.record_audit(items), token
        )
        receiver.start()
        work = tmp_path / "client"
        work.mkdir()
        client = subprocess.run(
            [
                sys.executable,
                "-c",
                CLIENT,
                mlflow_server.url,
                receiver.url("/mlflow"),
                secret,
                str(work),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=work,
            env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url},
        )
        assert client.returncode == 0, client.stderr[-3000:]
        _wait(
            lambda: (
                {("register", "2"), ("untag", "champion")}
                <= {(e["action"], e["reference"]) for e in _events(service, "mlflow-hook")}
            ),
            "the webhooks of version 2 and of the alias deletion",
        )
        _wait(
            lambda: sum(e["action"] == "delete" for e in _events(service, "mlflow-access")) >= 2,
            "the deletes in the access log",
        )
        recorder.flush_findings()
    finally:
        if receiver is not None:
            receiver.stop()
        service.stop()

    with Ledger.open(settings.ledger_url, log_id=settings.ledger.log_id) as ledger:
        assert ledger.verify().ok
        records = list(ledger.query())
        bodies = [e.body for e in ledger.iter_entries()]
    assert not any(secret.encode() in b for b in bodies), "the webhook secret leaked"
    events = [r["data"] for r in records if r["kind"] == "audit_event"]
    hook = [e for e in events if e["source"] == "mlflow-hook"]
    named = {(e["action"], e["artifact"], e["reference"]) for e in hook}
    assert ("register", "resnet50", None) in named  # registered_model.created
    assert {("register", "resnet50", "1"), ("register", "resnet50", "2")} <= named
    alias = [e for e in hook if e["action"] == "tag" and e["reference"] == "champion"]
    assert alias and "version 1" in alias[0]["detail"]
    assert ("untag", "resnet50", "champion") in named
    assert all(e["source_kind"] == "mlflow" and e["event_id"] for e in hook)
    ids = [e["event_id"] for e in hook]
    assert len(ids) == len(set(ids)), "a delivery was recorded twice"

    access = [e for e in events if e["source"] == "mlflow-access"]
    pulls = {(e["artifact"], e["reference"]) for e in access if e["action"] == "pull"}
    assert ("resnet50", "1") in pulls  # the alias download resolved to version 1
    assert ("resnet50", "2") in pulls  # get-download-uri of version 2
    deletes = [e for e in access if e["action"] == "delete"]
    assert len(deletes) >= 2 and all(e["client_ip"] == "127.0.0.1" for e in deletes)
    assert all(e["detail"] for e in deletes)  # says the line does not name the model

    # MLflow sends no user: the shipped delete rule reports deletes by an unknown actor
    findings = [r["data"] for r in records if r["kind"] == "audit_finding"]
    assert any(f["rule"] == "delete-outside-policy" and f["subject"] == "unknown" for f in findings)
