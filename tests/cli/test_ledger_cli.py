"""`sentinel ledger verify|export|stats` against a real ledger on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from sentinel.cli.main import cli
from sentinel.ledger import Ledger, leaf_hash
from tests.ledger.helpers import FixedClock, audit_record, raw


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "sentinel.toml"
    path.write_text(f'[ledger]\nurl = "{url}"\nlog_id = "sentinel"\n', encoding="utf-8")
    return path


def _fill(url: str) -> None:
    with Ledger.open(url, clock=FixedClock()) as led:
        led.append([audit_record(i, ts=f"2026-03-0{i + 1}T08:00:00.000000Z") for i in range(5)])
        led.append([{"kind": "egress_violation", "data": {"ts": "2026-03-02T09:00:00.000000Z"}}])


def test_verify_valid_then_invalid(ledger_url: str, tmp_path: Path) -> None:
    _fill(ledger_url)
    cfg = str(_config(tmp_path, ledger_url))
    runner = CliRunner()
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("valid: ledger 'sentinel'")
    assert "6 records" in res.output
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify", "--json"])
    assert res.exit_code == 0
    out = json.loads(res.output)
    assert (out["status"], out["size"], out["first_bad_seq"]) == ("valid", 6, None)

    with raw(ledger_url) as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq = 3"))
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify"])
    assert res.exit_code == 1
    assert "first bad sequence number 3" in res.output
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify", "--json"])
    assert res.exit_code == 1
    out = json.loads(res.output)
    assert (out["status"], out["first_bad_seq"]) == ("invalid", 3)
    assert "missing" in out["problem"]


def test_export_window_prints_hashed_bytes(ledger_url: str, tmp_path: Path) -> None:
    _fill(ledger_url)
    cfg = str(_config(tmp_path, ledger_url))
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "--config",
            cfg,
            "ledger",
            "export",
            "--from",
            "2026-03-02T00:00:00Z",
            "--to",
            "2026-03-04T00:00:00Z",
        ],
    )
    assert res.exit_code == 0, res.output
    lines = res.stdout_bytes.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 5]
    with Ledger.open(ledger_url) as led:
        stored = {e.seq: e.leaf_hash for e in led.iter_entries()}
    assert [leaf_hash(line) for line in lines] == [stored[1], stored[2], stored[5]]
    res = runner.invoke(cli, ["--config", cfg, "ledger", "export", "--kind", "egress_violation"])
    assert [json.loads(x)["seq"] for x in res.stdout_bytes.splitlines()] == [5]
    res = runner.invoke(cli, ["--config", cfg, "ledger", "export", "--from", "yesterday"])
    assert res.exit_code == 2
    assert "RFC 3339" in res.output


def test_stats(ledger_url: str, tmp_path: Path) -> None:
    _fill(ledger_url)
    res = CliRunner().invoke(
        cli, ["--config", str(_config(tmp_path, ledger_url)), "ledger", "stats", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["size"] == 6
    assert out["kinds"] == {"audit_event": 5, "egress_violation": 1}


def test_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    cfg = _config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    res = runner.invoke(cli, ["--config", str(cfg), "ledger", "verify"])
    assert res.exit_code == 2
    assert res.output.startswith("sentinel: error: ledger: opening")
    assert len(res.output.strip().splitlines()) == 1
    res = runner.invoke(cli, ["--config", str(tmp_path / "none.toml"), "ledger", "verify"])
    assert res.exit_code == 2
    assert "no such file" in res.output


def test_relative_sqlite_url_resolved_against_config(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text('[ledger]\nurl = "sqlite:///state/ledger.db"\n', encoding="utf-8")
    _fill(f"sqlite:///{tmp_path / 'state' / 'ledger.db'}")
    res = CliRunner().invoke(cli, ["--config", str(cfg), "ledger", "verify"])
    assert res.exit_code == 0, res.output
    assert "6 records" in res.output
