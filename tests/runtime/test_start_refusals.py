"""`sentinel run` refuses, at start and before any source runs, what would otherwise fail
later or silently: a taken listen port, a checkpoint directory inside the database's
directory, an unreadable ``tsa_ca_file``, a bad glob. One line naming the setting, exit 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.config import DEFAULT_CONFIG_TOML, load_settings
from sentinel.errors import ConfigError
from sentinel.runtime.service import Service
from sentinel.runtime.setup import init_directory

WEBHOOK = 'enabled = false\nlisten = "127.0.0.1:9465"'
SYSLOG = 'enabled = false\nlisten = "127.0.0.1:1514"'
METRICS = 'listen = "127.0.0.1:9464"'
SIGN = ("ledger", "checkpoint", "--sign")


def _site(tmp_path: Path, *edits: tuple[str, str], extra: str = "") -> Path:
    text = DEFAULT_CONFIG_TOML.replace(METRICS, 'listen = "127.0.0.1:0"')
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    init_directory(tmp_path, config_text=text + extra)
    return tmp_path / "sentinel.toml"


def _run(config: Path) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("sentinel"))
    # a daemon that did not refuse would run until the timeout (and fail the test)
    return subprocess.run(
        [exe, "--config", str(config), "run"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def taken_tcp() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture
def taken_udp() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_metrics_port_in_use_is_one_line_and_exit_2(tmp_path: Path, taken_tcp: int) -> None:
    cfg = _site(tmp_path)
    text = cfg.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{taken_tcp}"')
    cfg.write_text(text)
    done = _run(cfg)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "metrics.listen" in done.stderr and f"127.0.0.1:{taken_tcp}" in done.stderr
    assert "in use" in done.stderr


@pytest.mark.parametrize("which", ["webhook", "syslog", "netflow"])
def test_other_listeners_in_use_name_their_setting(
    tmp_path: Path, taken_tcp: int, taken_udp: int, which: str
) -> None:
    if which == "webhook":
        cfg = _site(tmp_path, (WEBHOOK, f'enabled = true\nlisten = "127.0.0.1:{taken_tcp}"'))
        port = taken_tcp
    elif which == "syslog":
        cfg = _site(tmp_path, (SYSLOG, f'enabled = true\nlisten = "127.0.0.1:{taken_tcp}"'))
        port = taken_tcp
    else:
        cfg = _site(tmp_path, extra=f'\n[netflow]\nlisten = "127.0.0.1:{taken_udp}"\n')
        port = taken_udp
    service = Service(load_settings(cfg))
    with pytest.raises(ConfigError) as caught:
        service.start()
    assert caught.value.key == f"{which}.listen"
    assert f"cannot listen on 127.0.0.1:{port}" in caught.value.problem
    assert service._workers == []  # what started was undone


def test_checkpoint_dir_inside_the_database_directory_is_refused_like_the_cli(
    tmp_path: Path,
) -> None:
    cfg = _site(tmp_path, ('checkpoint_dir = "checkpoints"', 'checkpoint_dir = "state/cp"'))
    log = tmp_path / "access.log"
    log.write_text("")
    with cfg.open("a") as f:
        f.write(f'\n[[audit.files]]\nid = "reg"\nformat = "distribution-access"\npath = "{log}"\n')
    done = _run(cfg)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    sign = subprocess.run(
        [str(Path(sys.executable).with_name("sentinel")), "--config", str(cfg), *SIGN],
        capture_output=True,
        text=True,
        check=False,
    )
    assert sign.returncode == 2
    message = "ledger.checkpoint_dir: must not be the database's directory or inside it"
    assert message in done.stderr and message in sign.stderr
    assert "sentinel running" not in done.stderr and "new file" not in done.stderr


def test_missing_tsa_ca_file_is_refused_at_start(tmp_path: Path) -> None:
    cfg = _site(
        tmp_path,
        ('# tsa_url = "http://127.0.0.1:3180/tsa"', 'tsa_url = "http://127.0.0.1:9/tsa"'),
        ('# tsa_ca_file = "keys/tsa-ca.pem"', 'tsa_ca_file = "keys/tsa-ca.pem"'),
    )
    done = _run(cfg)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "ledger.tsa_ca_file" in done.stderr and "tsa-ca.pem" in done.stderr
    # present but not a certificate: refused as well, before anything is time-stamped
    (tmp_path / "keys" / "tsa-ca.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="no PEM certificate"):
        Service(load_settings(cfg)).start()


@pytest.mark.parametrize(
    ("glob", "problem"),
    [("logs/**x/*.log", "'**' must be a whole path part"), ("logs/[*.log", "closing ']'")],
)
def test_bad_glob_is_refused_at_config_load(tmp_path: Path, glob: str, problem: str) -> None:
    (tmp_path / "logs").mkdir()
    cfg = _site(
        tmp_path,
        extra=f'\n[[audit.files]]\nid = "reg"\nformat = "distribution-access"\npath = "{glob}"\n',
    )
    done = _run(cfg)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert str(cfg) in line and "audit.files.0.path" in line and problem in line
