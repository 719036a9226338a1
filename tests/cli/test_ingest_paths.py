"""Re-ingesting the same bytes under another path (./x/../x, symlink, logrotate rename) adds
nothing: dedup keys name the file by its content (first-line fingerprint), not by path. Copies:
tests/audit/test_content_identity.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from sentinel.ledger import Ledger
from sentinel.runtime.setup import init_directory

SAMPLE = "registry-logs/distribution-live/registry-access-combined.log"


def _ingest(cfg: Path, path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("sentinel"))
    return subprocess.run(
        [exe, "--config", str(cfg), "audit", "ingest", "--format", "distribution-access", path],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_same_file_under_other_names_is_ingested_once(tmp_path: Path, corpus: Path) -> None:
    init_directory(tmp_path / "site")
    cfg = tmp_path / "site" / "sentinel.toml"
    logs = tmp_path / "aud"
    logs.mkdir()
    shutil.copyfile(corpus / SAMPLE, logs / "x.log")
    first = _ingest(cfg, "aud/x.log", tmp_path)
    assert first.returncode == 0, first.stderr
    url = f"sqlite:///{tmp_path / 'site' / 'state' / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        size = ledger.size()
    assert size > 50
    (tmp_path / "link.log").symlink_to(logs / "x.log")
    for alias in ("./aud/../aud/x.log", "link.log"):
        assert _ingest(cfg, alias, tmp_path).returncode == 0
    (logs / "x.log").rename(logs / "x.log.1")  # logrotate: same inode, new name
    assert _ingest(cfg, "aud/x.log.1", tmp_path).returncode == 0
    with Ledger.open(url) as ledger:
        assert ledger.size() == size
        assert ledger.verify().ok
