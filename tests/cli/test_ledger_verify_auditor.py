"""`sentinel ledger verify` for an auditor: a copy of the database, the checkpoint log and the
public keys verified without the operator's configuration; the database opened read-only
(never created, migrated or written); progress on stderr."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sentinel.cli.main import cli
from sentinel.config import load_settings
from sentinel.errors import LedgerError
from sentinel.ledger import Ledger
from sentinel.ledger.schema import VERSION_TABLE
from sentinel.runtime.setup import init_directory
from tests.cli.test_ledger_cli import _init_site
from tests.ledger.helpers import FixedClock, audit_record, raw
from tests.ledger.test_migrations import _make_v1

REPO = Path(__file__).resolve().parents[2]


def _site(tmp_path: Path, ledger_url: str) -> tuple[Path, str]:
    """A `sentinel init` site with 40 records, a key rotation and a checkpoint after it."""
    cfg = Path(_init_site(tmp_path, ledger_url))
    url = load_settings(cfg).ledger_url
    runner = CliRunner()
    with Ledger.open(url, clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(30)])
    assert runner.invoke(cli, ["--config", str(cfg), "ledger", "rotate-key"]).exit_code == 0
    with Ledger.open(url, clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(30, 40)])
    res = runner.invoke(cli, ["--config", str(cfg), "ledger", "checkpoint", "--sign"])
    assert res.exit_code == 0, res.output
    return cfg, url


def _auditor_copy(tmp_path: Path, site: Path, url: str) -> tuple[str, list[str]]:
    """What an auditor receives, in a directory of its own: the database (SQLite: the file),
    the checkpoint log and the public key files; returns the --ledger value and the options."""
    box = tmp_path / "auditor"
    shutil.copytree(site / "checkpoints", box / "checkpoints")
    (box / "keys").mkdir()
    shutil.copy(site / "keys" / "ledger-ed25519.pub.pem", box / "keys")
    shutil.copy(site / "keys" / "ledger-ed25519.history", box / "keys")
    if url.startswith("sqlite"):
        with sa.create_engine(url).connect() as conn:  # a consistent copy, WAL folded in
            conn.exec_driver_sql(f"VACUUM INTO '{box / 'ledger.db'}'")
        ledger = str(box / "ledger.db")
    else:
        ledger = url
    opts = [
        "--checkpoint-dir",
        str(box / "checkpoints"),
        "--public-key",
        str(box / "keys" / "ledger-ed25519.pub.pem"),
        "--key-history",
        str(box / "keys" / "ledger-ed25519.history"),
    ]
    return ledger, opts


def test_auditor_verifies_a_copy_without_configuration(
    ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, url = _site(tmp_path, ledger_url)
    ledger, opts = _auditor_copy(tmp_path, cfg.parent, url)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)  # no ./sentinel.toml
    runner = CliRunner()
    res = runner.invoke(cli, ["ledger", "verify", "--ledger", ledger, *opts, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["status"], out["size"], out["checkpoints_checked"]) == ("valid", 40, 3)

    # without the key history the checkpoints by the retired key are unverifiable
    res = runner.invoke(cli, ["ledger", "verify", "--ledger", ledger, *opts[:4]])
    assert res.exit_code == 4 and res.output.startswith("unverifiable: "), res.output
    # a key of another site is not trusted
    other = tmp_path / "other"
    init_directory(other)
    foreign = str(other / "keys" / "ledger-ed25519.pub.pem")
    res = runner.invoke(
        cli, ["ledger", "verify", "--ledger", ledger, *opts[:2], "--public-key", foreign]
    )
    assert res.exit_code == 4, res.output
    # a wrong log id is an error naming the logs the database holds, not a valid empty log
    res = runner.invoke(cli, ["ledger", "verify", "--ledger", ledger, *opts, "--log-id", "x"])
    assert res.exit_code == 2 and "no record of log 'x' (--log-id)" in res.output, res.output

    # the copy, truncated, is caught by the checkpoint log
    with raw(ledger if "://" in ledger else f"sqlite:///{ledger}") as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq >= 35"))
    res = runner.invoke(cli, ["ledger", "verify", "--ledger", ledger, *opts, "--json"])
    assert res.exit_code == 1, res.output
    assert json.loads(res.output)["status"] == "invalid"


def test_options_override_the_configuration(tmp_path: Path) -> None:
    cfg, url = _site(tmp_path, "sqlite")
    ledger, opts = _auditor_copy(tmp_path, cfg.parent, url)
    (cfg.parent / "state" / "ledger.db").unlink()  # the configured database is gone
    runner = CliRunner()
    res = runner.invoke(cli, ["--config", str(cfg), "ledger", "verify"])
    assert res.exit_code == 2 and "no such database file" in res.output, res.output
    assert not (cfg.parent / "state" / "ledger.db").exists()  # verify created nothing
    # --ledger alone: the configured checkpoint log and keys still apply
    res = runner.invoke(cli, ["--config", str(cfg), "ledger", "verify", "--ledger", ledger])
    assert res.exit_code == 0 and res.output.startswith("valid: "), res.output
    # --checkpoint-dir replaces the configured one: an empty one is an error, not unpinned
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    args = ["--config", str(cfg), "ledger", "verify", "--ledger", ledger]
    res = runner.invoke(cli, [*args, "--checkpoint-dir", str(empty)])
    assert res.exit_code == 2 and "no checkpoint in" in res.output, res.output
    # --origin replaces the expected origin: the logged checkpoints name another one
    res = runner.invoke(
        cli, ["--config", str(cfg), "ledger", "verify", "--ledger", ledger, *opts, "--origin", "o"]
    )
    assert res.exit_code == 4 and "'sentinel/sentinel', not 'o'" in res.output, res.output


def test_without_configuration_the_error_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["ledger", "verify"])
    assert res.exit_code == 2
    line = res.output.strip()
    assert len(line.splitlines()) == 1
    for name in ("no configuration file found", "--ledger", "--checkpoint-dir", "--public-key"):
        assert name in line, line
    res = runner.invoke(cli, ["ledger", "verify", "--ledger", "x.db", "--checkpoint-dir", "c"])
    assert res.exit_code == 2
    assert "--public-key" in res.output and "--checkpoint-dir" not in res.output
    # an explicit key file that is not a key is an error, not an untrusted key
    (tmp_path / "k.pem").write_text("not a key\n")
    res = runner.invoke(
        cli,
        ["ledger", "verify", "--ledger", "x.db", "--checkpoint-dir", "c", "--public-key", "k.pem"],
    )
    assert res.exit_code == 2 and "k.pem: not a PEM public key" in res.output, res.output
    assert not (tmp_path / "x.db").exists()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_old_and_new_schemas_are_refused_without_a_write(ledger_url: str, tmp_path: Path) -> None:
    _make_v1(ledger_url, {"sentinel": 7})
    ledger = (
        ledger_url.removeprefix("sqlite:///") if ledger_url.startswith("sqlite") else ledger_url
    )
    before = _digest(Path(ledger)) if "://" not in ledger else None
    opts = ["--checkpoint-dir", str(tmp_path / "cp"), "--key-history", os.devnull]
    res = CliRunner().invoke(cli, ["ledger", "verify", "--ledger", ledger, *opts])
    assert res.exit_code == 2, res.output
    assert "schema revision none (version 1)" in res.output and "not migrated" in res.output
    with raw(ledger_url) as conn:  # not migrated: no Alembic table, no Merkle nodes
        assert not sa.inspect(conn).has_table(VERSION_TABLE)
        assert not sa.inspect(conn).has_table("ledger_tree")
    if before is not None:
        assert _digest(Path(ledger)) == before

    Ledger.open(ledger_url).close()  # migrated to the head by a writer
    with raw(ledger_url) as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    res = CliRunner().invoke(cli, ["ledger", "verify", "--ledger", ledger, *opts])
    assert res.exit_code == 2, res.output
    assert "schema revision 0099" in res.output and "newer Sentinel" in res.output
    with raw(ledger_url) as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == "0099"


def test_read_only_open_refuses_writes(ledger_url: str) -> None:
    with Ledger.open(ledger_url, clock=FixedClock()) as led:
        led.append([audit_record(0)])
    with Ledger.open(ledger_url, read_only=True) as led:
        assert led.verify().status == "valid"
        with pytest.raises(LedgerError):
            led.append([audit_record(1)])
    with Ledger.open(ledger_url) as led:
        assert led.size() == 1


def test_empty_and_foreign_files_are_not_ledgers(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no such database file"):
        Ledger.open(f"sqlite:///{tmp_path / 'none.db'}", read_only=True)
    assert not (tmp_path / "none.db").exists()
    other = tmp_path / "other.db"
    with sa.create_engine(f"sqlite:///{other}").begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
    with pytest.raises(LedgerError, match="not a Sentinel ledger"):
        Ledger.open(f"sqlite:///{other}", read_only=True)


def test_verifies_a_wal_database_on_a_read_only_mount(tmp_path: Path) -> None:
    """A real read-only file system (a bind mount remounted ro, in a private mount namespace
    of the child: root's permission bypass does not apply), the database still in WAL mode."""
    cfg, url = _site(tmp_path, "sqlite")
    ledger, opts = _auditor_copy(tmp_path, cfg.parent, url)
    db = Path(ledger)
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode = WAL").scalar() == "wal"
    for extra in db.parent.glob("ledger.db-*"):
        extra.unlink()
    box = str(db.parent)
    listing = sorted(os.listdir(box))
    before = _digest(db)
    cmd = [sys.executable, "-m", "sentinel", "ledger", "verify", "--ledger", ledger, *opts]
    script = (
        f'mount --bind "{box}" "{box}" && mount -o remount,bind,ro "{box}" && '
        f'touch "{box}/probe" 2>/dev/null && echo WRITABLE; exec "$@"'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *cmd],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        timeout=120,
    )
    assert "WRITABLE" not in done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("valid: ") and "40 records" in done.stdout
    assert sorted(os.listdir(box)) == listing and _digest(db) == before


def test_progress_on_stderr_never_in_json(tmp_path: Path) -> None:
    cfg, _url = _site(tmp_path, "sqlite")
    res = CliRunner().invoke(cli, ["--config", str(cfg), "ledger", "verify", "--json"])
    assert res.exit_code == 0 and res.stderr == ""  # not a terminal, no --progress
    res = CliRunner().invoke(
        cli, ["--config", str(cfg), "ledger", "verify", "--json", "--progress"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["status"] == "valid"
    lines = res.stderr.splitlines()
    assert lines[0].startswith("verify: 0 / 40 records (0%)")
    assert lines[-1].startswith("verify: 40 / 40 records (100%), ")
    assert lines[-1].endswith(" records/s")


def test_verify_reports_progress_per_range(ledger_url: str) -> None:
    with Ledger.open(ledger_url, clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(100)])
        seen: list[tuple[int, int]] = []
        result = led.verify(
            batch=8, range_size=32, workers=1, progress=lambda d, t: seen.append((d, t))
        )
    assert result.status == "valid"
    assert seen == [(0, 100), (32, 100), (64, 100), (96, 100), (100, 100)]


def test_a_given_checkpoint_dir_must_hold_the_log(
    ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong --checkpoint-dir would pass a tail-truncated copy as valid-unpinned: a
    directory given that is missing, a file, empty or of another log is an error (exit 2);
    the configured one with no checkpoint yet (a fresh `init`) still pins nothing."""
    cfg, url = _site(tmp_path, ledger_url)
    ledger, opts = _auditor_copy(tmp_path, cfg.parent, url)
    with raw(ledger if "://" in ledger else f"sqlite:///{ledger}") as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE seq >= 35"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    keys = opts[2:]
    res = runner.invoke(cli, ["ledger", "verify", "--ledger", ledger, *opts])
    assert res.exit_code == 1 and "tail truncated" in res.output, res.output  # the right dir
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(Path(opts[1]) / "sentinel.checkpoints.jsonl", other / "x.checkpoints.jsonl")
    (other / "sentinel.checkpoints.jsonl").write_text("")
    cases = {
        "nonexistent": "no such directory",
        "empty": "it holds no checkpoint log",
        "other": "no checkpoint in sentinel.checkpoints.jsonl",
    }
    for name, why in cases.items():
        for cmd in (["verify", "--ledger", ledger, *keys], ["checkpoint"]):
            res = runner.invoke(cli, ["ledger", *cmd, "--checkpoint-dir", name])
            assert res.exit_code == 2, (cmd, res.output)
            assert f"--checkpoint-dir {name}: " in res.stderr and why in res.stderr, res.output
            assert res.stdout == "", res.output
    assert "x.checkpoints.jsonl" in res.stderr  # the logs the directory does hold
    res = runner.invoke(
        cli, ["ledger", "verify", "--ledger", ledger, *keys, "--checkpoint-dir", "a-file"]
    )
    assert res.exit_code == 2 and "is a file" in res.output, res.output

    # the operator's own configuration before its first checkpoint: unpinned, exit 0
    fresh = tmp_path / "fresh"
    init_directory(fresh)
    fresh_url = load_settings(fresh / "sentinel.toml").ledger_url
    with Ledger.open(fresh_url, clock=FixedClock()) as led:
        led.append([audit_record(0)])
    shutil.rmtree(fresh / "checkpoints", ignore_errors=True)
    res = runner.invoke(cli, ["--config", str(fresh / "sentinel.toml"), "ledger", "verify"])
    assert res.exit_code == 0 and res.output.startswith("valid-unpinned: "), res.output


def test_a_wrong_origin_is_unverifiable_not_tampering(
    ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--origin naming another origin than the signed notes: unverifiable (exit 4) naming both
    origins, with the key history (notes verify, origin differs) or the PEM alone (the key is
    named by the origin); a note whose signature fails, or a line that differs from its note,
    stays invalid (exit 1)."""
    cfg, url = _site(tmp_path, ledger_url)
    ledger, opts = _auditor_copy(tmp_path, cfg.parent, url)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    base = ["ledger", "verify", "--ledger", ledger, "--json"]
    for keys in (opts, opts[:4]):
        res = runner.invoke(cli, [*base, *keys, "--origin", "wrong/origin"])
        assert res.exit_code == 4, res.output
        out = json.loads(res.stdout)
        assert out["status"] == "unverifiable", out
        assert "'sentinel/sentinel'" in out["problem"] and "'wrong/origin'" in out["problem"]
    res = runner.invoke(cli, [*base, *opts, "--origin", "sentinel/sentinel"])
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "valid", res.output

    log = Path(opts[1]) / "sentinel.checkpoints.jsonl"
    good = log.read_text()
    lines = [json.loads(x) for x in good.splitlines()]
    # the JSON line's origin edited: it no longer matches its signed note
    lines[-1]["origin"] = "wrong/origin"
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = runner.invoke(cli, [*base, *opts])
    assert res.exit_code == 1, res.output
    assert "does not match its signed note" in json.loads(res.stdout)["problem"]
    # the note's origin line edited: its signature fails
    lines = [json.loads(x) for x in good.splitlines()]
    lines[-1]["note"] = lines[-1]["note"].replace("sentinel/sentinel\n", "wrong/origin\n", 1)
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = runner.invoke(cli, [*base, *opts])
    assert res.exit_code == 1, res.output
    assert "forged or altered" in json.loads(res.stdout)["problem"], res.output


def test_copies_of_a_live_wal_ledger_as_the_readme_says(tmp_path: Path) -> None:
    """README "Verifying a copy": the file alone, copied while records are still in its -wal,
    is caught as truncated; a `.backup` copy verifies; a writable WAL copy keeps its bytes
    but gets -wal/-shm side files."""
    cfg, url = _site(tmp_path, "sqlite")
    _ledger, opts = _auditor_copy(tmp_path, cfg.parent, url)
    live = Path(url.removeprefix("sqlite:///"))
    box = tmp_path / "copies"
    box.mkdir()
    holder = sqlite3.connect(live)  # a reader keeps the WAL from being checkpointed at close
    holder.execute("SELECT count(*) FROM ledger_entries").fetchone()
    try:
        with Ledger.open(url, clock=FixedClock()) as led:
            led.append([audit_record(i) for i in range(40, 45)])
        res = CliRunner().invoke(cli, ["--config", str(cfg), "ledger", "checkpoint", "--sign"])
        assert res.exit_code == 0, res.output
        assert (live.parent / "ledger.db-wal").stat().st_size > 0
        shutil.copy(live, box / "file-only.db")
        backup = sqlite3.connect(box / "backup.db")
        with backup:
            holder.backup(backup)
        backup.close()
    finally:
        holder.close()
    opts[1] = str(cfg.parent / "checkpoints")  # signed at 45 records
    runner = CliRunner()
    res = runner.invoke(cli, ["ledger", "verify", "--ledger", str(box / "file-only.db"), *opts])
    assert res.exit_code == 1 and "tail truncated" in res.output, res.output
    assert '.backup COPY.db"` (README "Verifying a copy")' in res.output  # the likely cause
    db = box / "backup.db"
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    before = _digest(db)
    res = runner.invoke(cli, ["ledger", "verify", "--ledger", str(db), *opts])
    assert res.exit_code == 0 and "45 records" in res.output, res.output
    assert _digest(db) == before
    assert {p.name for p in box.glob("backup.db-*")} == {"backup.db-wal", "backup.db-shm"}
