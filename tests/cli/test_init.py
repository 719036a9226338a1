"""`sentinel init` and configuration errors, through the real console script."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from sentinel.config import load_settings


def sentinel(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("sentinel"))
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, check=False)


def test_init_writes_config_key_and_state(tmp_path: Path) -> None:
    target = tmp_path / "site"
    done = sentinel("init", str(target))
    assert done.returncode == 0, done.stderr
    key = target / "keys" / "ledger-ed25519.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((target / "keys" / "webhook.token").stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (target / "state").is_dir()
    settings = load_settings(target / "sentinel.toml")
    assert settings.metrics.listen == "127.0.0.1:9464"
    assert settings.webhook.listen.startswith("127.0.0.1:")
    assert settings.ledger_url == f"sqlite:///{target / 'state' / 'ledger.db'}"
    # the policy it wrote loads, and every command works against the new directory
    verify = sentinel("--config", str(target / "sentinel.toml"), "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    assert sentinel("init", str(tmp_path)).returncode == 0
    again = sentinel("init", str(tmp_path))
    assert again.returncode == 2
    assert "refusing to overwrite" in again.stderr


def test_bad_config_names_file_key_and_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text('[metrics]\nlisten = "everywhere"\n')
    done = sentinel("--config", str(cfg), "ledger", "verify")
    assert done.returncode == 2
    line = done.stderr.strip()
    assert str(cfg) in line and "metrics.listen" in line and "HOST:PORT" in line
    assert "Traceback" not in done.stderr


def test_unknown_key_and_bad_toml_are_clear(tmp_path: Path) -> None:
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text("[ledger]\nurll = 'x'\n")
    done = sentinel("--config", str(cfg), "report", "-o", str(tmp_path / "r.html"))
    assert done.returncode == 2 and "ledger.url" in done.stderr
    cfg.write_text("[ledger\n")
    done = sentinel("--config", str(cfg), "report", "-o", str(tmp_path / "r.html"))
    assert done.returncode == 2 and "not valid TOML" in done.stderr


def test_default_config_lookup_uses_cwd(tmp_path: Path) -> None:
    done = sentinel("ledger", "verify", cwd=tmp_path)
    assert done.returncode == 2
    assert "sentinel.toml" in done.stderr and "sentinel init" in done.stderr
    assert sentinel("init", ".", cwd=tmp_path).returncode == 0
    assert sentinel("ledger", "verify", cwd=tmp_path).returncode == 0


def test_init_with_state_dir_keeps_state_out_of_the_config_dir(tmp_path: Path) -> None:
    conf, state = tmp_path / "etc", tmp_path / "var"
    done = sentinel("init", str(conf), "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    settings = load_settings(conf / "sentinel.toml")
    assert settings.ledger_url == f"sqlite:///{state / 'state' / 'ledger.db'}"
    assert settings.resolve(settings.ledger.checkpoint_dir) == state / "checkpoints"
    assert (state / "state").is_dir() and not (conf / "state").exists()
    verify = sentinel("--config", str(conf / "sentinel.toml"), "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_help_says_where_state_dir_puts_the_ledger_and_what_prove_prints(tmp_path: Path) -> None:
    """The help text matches what init --state-dir writes and what prove prints (#18/#19)."""
    from click.testing import CliRunner

    from sentinel.cli.main import cli

    runner = CliRunner()
    text = " ".join(runner.invoke(cli, ["init", "--help"]).output.split())
    assert "D/state/ledger.db" in text and "D/checkpoints/" in text, text
    done = runner.invoke(cli, ["init", str(tmp_path / "c"), "--state-dir", str(tmp_path / "D")])
    assert done.exit_code == 0 and (tmp_path / "D" / "state" / "ledger.db").is_file()
    settings = load_settings(tmp_path / "c" / "sentinel.toml")
    assert settings.resolve(settings.ledger.checkpoint_dir) == tmp_path / "D" / "checkpoints"
    text = " ".join(runner.invoke(cli, ["ledger", "prove", "--help"]).output.split())
    assert "with --json also the record's canonical bytes" in text, text
