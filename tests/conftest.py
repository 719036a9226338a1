"""Fixtures shared by every test: the shared corpus, a real PostgreSQL database, thread hygiene.

The corpus lives in ``../shared/corpus`` beside the repository (CI has it too); set
``SENTINEL_SHARED`` to point elsewhere. PostgreSQL is the real server on 127.0.0.1:5432
(``.ci/run`` starts it); a test that needs it fails, it is never skipped.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SENTINEL_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"
DBIP = Path(os.environ.get("SENTINEL_DEMO_GEOIP", REPO / ".cache" / "dbip-city-lite-2023-04.mmdb"))
PG_ADMIN_URL = os.environ.get(
    "SENTINEL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """``../shared/corpus``; fails loudly when it is missing."""
    if not CORPUS.is_dir():
        pytest.fail(f"shared corpus not found at {CORPUS} (set SENTINEL_SHARED)")
    return CORPUS


@pytest.fixture(scope="session")
def dbip_path() -> Path:
    """DB-IP City Lite 2023-04 (CC BY 4.0); fails with the fetch command when missing."""
    if not DBIP.is_file():
        pytest.fail(f"{DBIP} missing: `make test` fetches it (python -m sentinel.demo.fetch_geoip)")
    return DBIP


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the real server; dropped afterwards."""
    import sqlalchemy as sa

    name = f"sentinel_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(
            "PostgreSQL is not reachable on 127.0.0.1:5432; start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
            f"({exc.orig})"
        )
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ledger URL on each backend: a SQLite file and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves a thread running (watchdog's conftest does the same)."""
    before = set(threading.enumerate())
    yield
    deadline = 5.0
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=deadline)
    leaked = [t for t in set(threading.enumerate()) - before if t.is_alive() and not t.daemon]
    assert not leaked, f"test leaked threads: {leaked}"
