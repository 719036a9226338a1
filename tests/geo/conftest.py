"""GeoIP fixtures: the real DB-IP City Lite database (``dbip_path``: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.geo import GeoDatabase


@pytest.fixture(scope="session")
def dbip(dbip_path: Path) -> Iterator[GeoDatabase]:
    with GeoDatabase.open(dbip_path) as db:
        yield db
