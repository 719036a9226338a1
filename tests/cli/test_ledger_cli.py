"""`sentinel ledger verify|checkpoint|prove|consistency|export|stats` against a real ledger on
both backends, with keys written by `sentinel init`."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from sentinel.cli.main import cli
from sentinel.config import load_settings
from sentinel.ledger import Ledger, leaf_hash, merkle
from sentinel.runtime.setup import init_directory
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
    assert res.output.startswith("valid-unpinned: ledger 'sentinel'")  # no checkpoint yet
    assert "6 records" in res.output
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify", "--json"])
    assert res.exit_code == 0
    out = json.loads(res.output)
    assert (out["status"], out["size"], out["first_bad_seq"]) == ("valid-unpinned", 6, None)

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
    assert "no record" not in res.stderr
    res = runner.invoke(cli, ["--config", cfg, "ledger", "export", "--kind", "egress_violaton"])
    assert res.exit_code == 0 and res.stdout == ""
    assert "no record of kind 'egress_violaton' in the window" in res.stderr
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


def _init_site(tmp_path: Path, ledger_url: str) -> str:
    """A `sentinel init` directory using ``ledger_url`` (SQLite: the site's own state/)."""
    site = tmp_path / "site"
    init_directory(site)
    cfg = site / "sentinel.toml"
    if ledger_url.startswith("postgresql"):
        old = 'url = "sqlite:///state/ledger.db"'
        cfg.write_text(cfg.read_text().replace(old, f'url = "{ledger_url}"'))
    return str(cfg)


def test_checkpoint_verify_prove_consistency(ledger_url: str, tmp_path: Path) -> None:
    cfg = _init_site(tmp_path, ledger_url)
    url = load_settings(Path(cfg)).ledger_url
    _fill(url)
    runner = CliRunner()
    res = runner.invoke(cli, ["--config", cfg, "ledger", "checkpoint"])
    assert res.exit_code == 2 and "no checkpoint" in res.output
    res = runner.invoke(cli, ["--config", cfg, "ledger", "checkpoint", "--sign"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("sentinel/sentinel\n6\n")
    res = runner.invoke(cli, ["--config", cfg, "ledger", "checkpoint", "--json"])
    assert res.exit_code == 0
    printed = json.loads(res.output)
    assert (printed["size"], printed["line"]) == (6, 1)
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify"])
    assert res.exit_code == 0 and res.output.startswith("valid: ")
    assert "last checkpoint at 6" in res.output

    # an inclusion proof checks offline against the signed root
    res = runner.invoke(cli, ["--config", cfg, "ledger", "prove", "2", "--json"])
    assert res.exit_code == 0, res.output
    proof = json.loads(res.output)
    leaf = leaf_hash(proof["record"].encode())
    assert leaf.hex() == proof["leaf_hash"]
    merkle.verify_inclusion(
        2, 6, leaf, [bytes.fromhex(h) for h in proof["path"]], bytes.fromhex(printed["root"])
    )
    res = runner.invoke(cli, ["--config", cfg, "ledger", "prove", "2"])
    assert res.exit_code == 0 and f"root {printed['root']}" in res.output
    res = runner.invoke(cli, ["--config", cfg, "ledger", "prove", "6"])
    assert res.exit_code == 2 and "not in a tree of size 6" in res.output

    with Ledger.open(url) as led:
        led.append([audit_record(9)])
    res = runner.invoke(cli, ["--config", cfg, "ledger", "consistency", "6", "--json"])
    assert res.exit_code == 0, res.output
    cons = json.loads(res.output)
    assert cons["old_root"] == printed["root"] and cons["new"] == 7
    merkle.verify_consistency(
        6,
        7,
        bytes.fromhex(cons["old_root"]),
        bytes.fromhex(cons["new_root"]),
        [bytes.fromhex(h) for h in cons["path"]],
    )
    res = runner.invoke(cli, ["--config", cfg, "ledger", "consistency", "3", "5"])
    assert res.exit_code == 0 and res.output.startswith("old size 3 root ")
    res = runner.invoke(cli, ["--config", cfg, "ledger", "consistency", "3", "9"])
    assert res.exit_code == 2
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify", "--json"])
    assert json.loads(res.output)["status"] == "valid-unpinned" and res.exit_code == 0


def test_verify_exit_codes_for_truncation_and_unknown_key(ledger_url: str, tmp_path: Path) -> None:
    cfg = _init_site(tmp_path, ledger_url)
    settings = load_settings(Path(cfg))
    _fill(settings.ledger_url)
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", cfg, "ledger", "checkpoint", "--sign"]).exit_code == 0
    with raw(settings.ledger_url) as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq = 5"))
        conn.execute(sa.text("DELETE FROM ledger_tree WHERE level > 0 AND idx >= 2"))
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify", "--json"])
    assert res.exit_code == 1, res.output
    out = json.loads(res.output)
    assert (out["status"], out["first_bad_seq"]) == ("invalid", 5)
    assert "tail truncated" in out["problem"]
    # signing over a truncated ledger is refused, loudly, with exit 1
    res = runner.invoke(cli, ["--config", cfg, "ledger", "checkpoint", "--sign"])
    assert res.exit_code == 1 and "refusing to sign" in res.output
    # the public key is gone: the checkpoint cannot be checked
    key = settings.resolve(settings.ledger.signing_key)
    key.unlink()
    key.with_name("ledger-ed25519.pub.pem").unlink()
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify"])
    assert res.exit_code == 4 and res.output.startswith("unverifiable: "), res.output


def test_rotate_key(tmp_path: Path) -> None:
    cfg = _init_site(tmp_path, "sqlite")
    settings = load_settings(Path(cfg))
    _fill(settings.ledger_url)
    runner = CliRunner()
    key = settings.resolve(settings.ledger.signing_key)
    before = key.read_bytes()
    res = runner.invoke(cli, ["--config", cfg, "ledger", "rotate-key"])
    assert res.exit_code == 0, res.output
    assert "retired sentinel/sentinel+" in res.output and "signing with" in res.output
    assert key.read_bytes() != before and key.stat().st_mode & 0o777 == 0o600
    history = key.with_name("ledger-ed25519.history").read_text().split()
    assert len(history) == 1 and history[0] in res.output
    # both checkpoints (old key, new key) verify; the log stays valid
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify", "--json"])
    out = json.loads(res.output)
    assert (res.exit_code, out["status"], out["checkpoints_checked"]) == (0, "valid", 2)
    assert out["verifier"] == "c"  # a SQLite file: the compiled accelerator checked it
    # forgetting the history makes the old checkpoint unverifiable (exit 4), not invalid
    key.with_name("ledger-ed25519.history").unlink()
    res = runner.invoke(cli, ["--config", cfg, "ledger", "verify"])
    assert res.exit_code == 4, res.output
