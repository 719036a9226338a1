"""``[audit.files.mlflow_rest]``: validation, where secrets come from, and the source matching
(the reconstruction itself runs against a real MLflow server in tests/e2e/test_mlflow_rest.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import ValidationError

from sentinel.audit.mlflow_rest import MlflowRestClient, _covers
from sentinel.config import AuditFile, MlflowRest, load_settings
from sentinel.errors import ConfigError
from sentinel.runtime.mlflow_wiring import authorization_header, reconstructing_parser

RUN = "d3819a170a934a678b40a2621000706c"
MODEL = "m-426b63c6afcf46caa41dba99d9c7a104"


def _fail(problem: str) -> None:
    raise ConfigError("sentinel.toml", problem, key="audit.files[m].mlflow_rest")


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "http://admin:pw@127.0.0.1:5000"},  # credentials in the URL
        {"url": "ftp://127.0.0.1"},
        {"url": "http://127.0.0.1:5000", "username": "a"},  # no password source
        {"url": "http://127.0.0.1:5000", "password_env": "X"},  # password without user
        {"url": "http://h", "username": "a", "password_file": "f", "password_env": "X"},
        {"url": "http://h", "token_file": "f", "token_env": "X"},
        {"url": "http://h", "username": "a", "password_env": "X", "token_env": "Y"},
        {"url": "http://h", "timeout": 0},
    ],
)
def test_bad_sections_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        MlflowRest(**fields)  # type: ignore[arg-type]


def test_only_for_mlflow_access() -> None:
    rest = MlflowRest(url="http://127.0.0.1:5000")
    assert AuditFile(id="m", format="mlflow-access", path=Path("a"), mlflow_rest=rest)
    with pytest.raises(ValidationError, match="mlflow-access only"):
        AuditFile(id="d", format="distribution-json", path=Path("a"), mlflow_rest=rest)


def test_the_config_file_reads_the_table(tmp_path: Path) -> None:
    (tmp_path / "sentinel.toml").write_text(
        '[[audit.files]]\nid = "m"\nformat = "mlflow-access"\npath = "a.log"\n'
        '[audit.files.mlflow_rest]\nurl = "http://127.0.0.1:5000"\ntoken_env = "MLFLOW_TOKEN"\n'
        "match_window = 5\n"
    )
    (spec,) = load_settings(tmp_path / "sentinel.toml").audit.files
    assert spec.mlflow_rest is not None and spec.mlflow_rest.match_window == 5


def test_secrets_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    basic = MlflowRest(url="http://h", username="admin", password_file=Path("pw"))
    header = authorization_header(basic, lambda p: tmp_path / p, _fail)
    assert header == "Basic " + base64.b64encode(b"admin:s3cret").decode()
    monkeypatch.setenv("MLFLOW_TOKEN", "tok-123")
    token = MlflowRest(url="http://h", token_env="MLFLOW_TOKEN")
    assert authorization_header(token, lambda p: tmp_path / p, _fail) == "Bearer tok-123"
    assert authorization_header(MlflowRest(url="http://h"), lambda p: p, _fail) is None


def test_missing_secrets_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    section = MlflowRest(url="http://h", token_env="NOT_SET_ANYWHERE")
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set") as info:
        reconstructing_parser(
            object(),  # type: ignore[arg-type]
            section,
            lambda p: tmp_path / p,
            config_path="sentinel.toml",
            key="audit.files[m].mlflow_rest",
        )
    assert info.value.key == "audit.files[m].mlflow_rest"
    (tmp_path / "empty").write_text("\n")
    empty = MlflowRest(url="http://h", username="a", password_file=Path("empty"))
    with pytest.raises(ConfigError, match="empty"):
        authorization_header(empty, lambda p: tmp_path / p, _fail)
    gone = MlflowRest(url="http://h", username="a", password_file=Path("nope"))
    with pytest.raises(ConfigError, match="cannot read"):
        authorization_header(gone, lambda p: tmp_path / p, _fail)


def test_client_keeps_the_header_out_of_its_repr() -> None:
    client = MlflowRestClient("http://127.0.0.1:5000/", authorization="Bearer hush")
    assert "hush" not in repr(client) and client.base_url == "http://127.0.0.1:5000"
    with pytest.raises(ValueError, match="credentials"):
        MlflowRestClient("http://a:b@127.0.0.1:5000")


@pytest.mark.parametrize(
    ("source", "owner", "sub", "expected"),
    [
        (f"runs:/{RUN}/model", RUN, "model/w.bin", True),
        (f"runs:/{RUN}/model", RUN, "model", True),
        (f"runs:/{RUN}/model", RUN, "other/w.bin", False),
        (f"runs:/{RUN}/model", RUN, "modelx/w.bin", False),
        (f"mlflow-artifacts:/1/{RUN}/artifacts/model", RUN, "model/MLmodel", True),
        (f"models:/{MODEL}", MODEL, "MLmodel", True),
        (f"mlflow-artifacts:/1/models/{MODEL}/artifacts", MODEL, "conda.yaml", True),
        (f"runs:/{'0' * 32}/model", RUN, "model/w.bin", False),
    ],
)
def test_version_sources_cover_artifact_files(
    source: str, owner: str, sub: str, expected: bool
) -> None:
    assert _covers(source, owner, sub) is expected
