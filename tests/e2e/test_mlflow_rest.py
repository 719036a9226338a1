"""Reconstruction from MLflow's REST API against a real ``mlflow server`` (SQLite backend).

The MLflow client registers, transitions, downloads and deletes models in phases; after each
phase the tailer reads the server's real access log through ``ReconstructingParser`` into a
real ledger, as the daemon does, and the test checks which model and version each event names.
Also: the API down (nothing listening, and a server that never answers) records every event
unreconstructed and says so; the configuration's secrets reach only the request header.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel.audit.mlflow_rest import (
    MlflowReconstructor,
    MlflowRestClient,
    ReconstructingParser,
    RestOptions,
)
from sentinel.audit.parsers import PARSERS
from sentinel.audit.records import to_ledger_batch
from sentinel.audit.tailer import FileTailer, TailBatch
from sentinel.ledger import Ledger
from tests.e2e.harness import free_port
from tests.e2e.harness.mlflow import MlflowServer

PHASES = r"""
import os, sys
from pathlib import Path
import mlflow
from mlflow import MlflowClient

url, work = sys.argv[1], Path(sys.argv[2])
mlflow.set_tracking_uri(url)
c = MlflowClient(url)

def done(phase):
    print("PHASE", phase, flush=True)
    assert sys.stdin.readline().strip() == "next"

mlflow.set_experiment("sentinel-rest")
runs = []
for tag in ("a", "b"):
    weights = work / f"{tag}.safetensors"
    weights.write_bytes(os.urandom(2048))
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(weights), artifact_path="model")
    runs.append(run.info.run_id)
c.create_registered_model("resnet50")
c.create_model_version("resnet50", f"runs:/{runs[0]}/model", run_id=runs[0])
c.create_model_version("resnet50", f"runs:/{runs[0]}/model", run_id=runs[0])
c.create_registered_model("bert")
c.create_model_version("bert", f"runs:/{runs[1]}/model", run_id=runs[1])
done("registered")
c.transition_model_version_stage("resnet50", "2", "Production")
mlflow.artifacts.download_artifacts("models:/resnet50/1", dst_path=str(work / "dl"))
done("downloaded")
c.delete_model_version("resnet50", "2")
done("version deleted")
c.delete_registered_model("bert")
done("model deleted")
"""


class Feed:
    """The tailer on the server's access log, records and cursor into a SQLite ledger."""

    def __init__(self, tmp_path: Path, log: Path, parser: ReconstructingParser) -> None:
        self.ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
        self.tailer = FileTailer(log, "mlflow", parser, self.ledger, self._sink, use_watchdog=False)

    def _sink(self, batch: TailBatch) -> None:
        records, keys = to_ledger_batch(batch.records)
        self.ledger.append(records, dedup_keys=keys, cursors={batch.cursor_key: batch.cursor_value})

    def new_events(self) -> list[dict[str, Any]]:
        before = self.ledger.size()
        self.tailer.poll_once()
        return [e.record()["data"] for e in self.ledger.iter_entries(before, kind="audit_event")]

    def close(self) -> None:
        self.tailer.close()
        self.ledger.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MlflowServer]:
    srv = MlflowServer(tmp_path / "mlflow")
    srv.workdir.mkdir()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _named(events: list[dict[str, Any]], action: str) -> list[tuple[str | None, str | None]]:
    return [(e["artifact"], e["reference"]) for e in events if e["action"] == action]


def test_reconstructs_models_and_versions_from_the_rest_api(
    tmp_path: Path, server: MlflowServer
) -> None:
    reconstructor = MlflowReconstructor(MlflowRestClient(server.url), RestOptions(timeout=10))
    feed = Feed(
        tmp_path, server.access_log, ReconstructingParser(PARSERS["mlflow-access"], reconstructor)
    )
    work = tmp_path / "client"
    work.mkdir()
    client = subprocess.Popen(
        [sys.executable, "-c", PHASES, server.url, str(work)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=work,
        env={**os.environ, "MLFLOW_TRACKING_URI": server.url},
    )
    assert client.stdin is not None and client.stdout is not None

    def phase(name: str) -> list[dict[str, Any]]:
        line = "-"
        while line and not line.startswith("PHASE "):  # MLflow prints to stdout too
            line = client.stdout.readline() if client.stdout else ""
        if line.strip() != f"PHASE {name}":
            client.kill()
            _out, err = client.communicate(timeout=30)
            pytest.fail(f"client stopped before {name!r}: {line!r}\n{err[-3000:]}")
        events = feed.new_events()
        client.stdin.write("next\n")  # type: ignore[union-attr]
        client.stdin.flush()  # type: ignore[union-attr]
        return events

    try:
        registered = phase("registered")
        downloaded = phase("downloaded")
        deleted_version = phase("version deleted")
        deleted_model = phase("model deleted")
        assert client.wait(timeout=60) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=30)
        feed.close()

    # registrations: the lines name nothing; every one is reconstructed, in order
    regs = [e for e in registered if e["action"] == "register"]
    assert [(e["artifact"], e["reference"]) for e in regs] == [
        ("resnet50", None),
        ("resnet50", "1"),
        ("resnet50", "2"),
        ("bert", None),
        ("bert", "1"),
    ]
    assert all(e["reconstructed_from"] == "mlflow-rest" for e in regs)
    assert "model version resnet50/2 created" in regs[2]["detail"]
    # the run's artifact uploads belong to the versions registered from them
    pushes = _named(registered, "push")
    assert pushes and set(pushes) <= {("resnet50", None), ("bert", "1")}

    # stage change of version 2; a download of version 1, whose files version 2 shares
    assert _named(downloaded, "stage_change") == [("resnet50", "2")]
    stage = next(e for e in downloaded if e["action"] == "stage_change")
    assert "Production" in stage["detail"]
    pulls = [e for e in downloaded if e["action"] == "pull"]
    assert ("resnet50", "1") in _named(pulls, "pull")  # get-download-uri, named by the line
    files = [e for e in pulls if e.get("reconstructed_from")]
    assert files and all((e["artifact"], e["reference"]) == ("resnet50", "1") for e in files)
    assert all("named by the same client" in e["detail"] for e in files)

    # deletes: the version gone since it was listed, then the model gone
    assert _named(deleted_version, "delete") == [("resnet50", "2")]
    assert _named(deleted_model, "delete") == [("bert", None)]
    assert all(
        e["reconstructed_from"] == "mlflow-rest"
        for e in deleted_version + deleted_model
        if e["action"] == "delete"
    )


CORPUS_LOG = "registry-logs/mlflow-live/mlflow-3.17.2-uvicorn-access.log"


def _unreconstructed(
    corpus: Path, client: MlflowRestClient
) -> tuple[list[Any], MlflowReconstructor]:
    reconstructor = MlflowReconstructor(client, RestOptions(timeout=0.5, retry_after=3600))
    parser = ReconstructingParser(PARSERS["mlflow-access"], reconstructor)
    lines = (corpus / CORPUS_LOG).read_bytes().splitlines()
    out: list[Any] = []
    for i, line in enumerate(lines):
        out += parser.parse(line, source="mlflow", src_pos=f"corpus:{i}")
    assert len(out) == len(lines)  # one record per line: nothing dropped
    return out, reconstructor


def test_api_refusing_connections_records_events_unreconstructed(corpus: Path) -> None:
    client = MlflowRestClient(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    records, reconstructor = _unreconstructed(corpus, client)
    unnamed = [r for r in records if getattr(r, "detail", None) and "not reconstructed" in r.detail]
    assert len(unnamed) >= 5  # creates, transition, deletes
    for r in unnamed:
        assert r.reconstructed_from is None
        assert r.artifact is None or r.artifact.startswith("mlflow-artifacts:")
    assert "MLflow REST API unavailable" in unnamed[0].detail
    assert all("unavailable" in r.detail for r in unnamed)
    assert reconstructor.requests == 1  # then not asked again for retry_after seconds
    assert reconstructor.unavailable == len(unnamed)


def test_api_that_never_answers_times_out(corpus: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        port = silent.getsockname()[1]
        records, reconstructor = _unreconstructed(
            corpus, MlflowRestClient(f"http://127.0.0.1:{port}", timeout=0.5)
        )
    unnamed = [r for r in records if getattr(r, "detail", None) and "not reconstructed" in r.detail]
    assert unnamed and "timed out" in unnamed[0].detail
    assert reconstructor.requests == 1


BASIC_AUTH_CLIENT = r"""
import sys
from mlflow import MlflowClient
c = MlflowClient(sys.argv[1])
c.create_registered_model("llama")
c.create_model_version("llama", "s3://bucket/llama/weights", run_id=None)
"""


def test_basic_auth_password_from_a_file_reaches_only_the_header(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MLflow's basic-auth app: the right password (from a file) reconstructs; a wrong one is
    an unavailable API (HTTP 401), said in the event; the password is in no record or log."""
    import logging
    import secrets

    from sentinel.config import MlflowRest
    from sentinel.runtime.mlflow_wiring import reconstructing_parser

    password = "pw-" + secrets.token_urlsafe(16)
    workdir = tmp_path / "mlflow"
    workdir.mkdir()
    ini = workdir / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{workdir / 'auth.db'}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    server = MlflowServer(
        workdir,
        app_name="basic-auth",
        env={
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        },
    )
    server.start()
    try:
        done = subprocess.run(
            [sys.executable, "-c", BASIC_AUTH_CLIENT, server.url],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=workdir,
            env={
                **os.environ,
                "MLFLOW_TRACKING_USERNAME": "admin",
                "MLFLOW_TRACKING_PASSWORD": password,
            },
        )
        assert done.returncode == 0, done.stderr[-3000:]
        (tmp_path / "right.password").write_text(password + "\n")
        (tmp_path / "wrong.password").write_text("not-the-password\n")

        def parser(secret_file: str) -> ReconstructingParser:
            section = MlflowRest(url=server.url, username="admin", password_file=Path(secret_file))
            return reconstructing_parser(
                PARSERS["mlflow-access"], section, lambda p: tmp_path / p, config_path="t", key="k"
            )

        caplog.set_level(logging.DEBUG)
        lines = server.access_log.read_bytes().splitlines()
        right, wrong = parser("right.password"), parser("wrong.password")
        got = [
            r
            for i, line in enumerate(lines)
            for r in right.parse(line, source="m", src_pos=f"x:{i}")
        ]
        bad = [
            r
            for i, line in enumerate(lines)
            for r in wrong.parse(line, source="m", src_pos=f"x:{i}")
        ]
    finally:
        server.stop()

    regs = [
        (r.artifact, r.reference, r.reconstructed_from)
        for r in got
        if getattr(r, "action", "") == "register"
    ]
    assert regs == [("llama", None, "mlflow-rest"), ("llama", "1", "mlflow-rest")]
    refused = [r for r in bad if getattr(r, "action", "") == "register"]
    assert refused and all(
        r.reconstructed_from is None and "HTTP 401" in (r.detail or "") for r in refused
    )
    text = "\n".join(str(r.to_json()) for r in got + bad) + caplog.text
    assert password not in text and "not-the-password" not in text
