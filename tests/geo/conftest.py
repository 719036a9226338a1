"""GeoIP fixtures: the real DB-IP City Lite database (fetched by `make test`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.geo import GeoDatabase

REPO = Path(__file__).resolve().parents[2]
DBIP = Path(os.environ.get("SENTINEL_DEMO_GEOIP", REPO / ".cache" / "dbip-city-lite-2023-04.mmdb"))


@pytest.fixture(scope="session")
def dbip_path() -> Path:
    """DB-IP City Lite 2023-04 (CC BY 4.0); fails with the fetch command when missing."""
    if not DBIP.is_file():
        pytest.fail(f"{DBIP} missing: `make test` fetches it (python -m sentinel.demo.fetch_geoip)")
    return DBIP


@pytest.fixture(scope="session")
def dbip(dbip_path: Path) -> Iterator[GeoDatabase]:
    with GeoDatabase.open(dbip_path) as db:
        yield db
