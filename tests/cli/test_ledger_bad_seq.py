"""`sentinel ledger` commands on a SQLite ledger whose ``seq`` column was edited to a value that
is not an integer (SQLite keeps any type in any column and sorts TEXT and BLOB after every
number): verify reports it as tampering, the other commands fail with a clear error, never a
traceback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli.main import cli
from sentinel.config import load_settings
from sentinel.ledger import Ledger
from sentinel.runtime.setup import init_directory
from tests.ledger.helpers import FixedClock, audit_record


@pytest.fixture(params=["'20x'", "X'00'"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A `sentinel init` site: 30 records, a signed checkpoint at 30, then record 20's seq
    edited; returns the configuration file."""
    init_directory(tmp_path)
    cfg = str(tmp_path / "sentinel.toml")
    url = load_settings(Path(cfg)).ledger_url
    with Ledger.open(url, clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(30)])
    res = CliRunner().invoke(cli, ["--config", cfg, "ledger", "checkpoint", "--sign"])
    assert res.exit_code == 0, res.output
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute(f"UPDATE ledger_entries SET seq = {request.param} WHERE seq = 20")
    finally:
        conn.close()
    return cfg


@pytest.mark.parametrize("verifier", ["python", "auto"])
def test_verify_reports_the_first_bad_record(
    site: str, verifier: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTINEL_VERIFIER", verifier)
    runner = CliRunner()
    res = runner.invoke(cli, ["--config", site, "ledger", "verify", "--json"])
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    assert (out["status"], out["first_bad_seq"], out["records_checked"]) == ("invalid", 20, 20)
    assert "record 20 is missing" in out["problem"]
    assert "non-integer sequence number" in out["problem"]
    res = runner.invoke(cli, ["--config", site, "ledger", "verify"])
    assert res.exit_code == 1, res.output
    assert res.stdout.startswith("invalid: ") and "first bad sequence number 20" in res.stdout


@pytest.mark.parametrize(
    "args", [["stats"], ["export"], ["prove", "3"], ["consistency", "3", "10"]]
)
def test_other_commands_fail_cleanly(site: str, args: list[str]) -> None:
    res = CliRunner().invoke(cli, ["--config", site, "ledger", *args])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "non-integer sequence number" in res.stderr
