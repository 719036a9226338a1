"""Policy tests share their fixtures: the real DB-IP City Lite database (``dbip``), MaxMind's
GeoIP2 City test database (``geo``) and the shipped egress policy (``policy``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.geo import GeoDatabase
from sentinel.policy.egress import EgressPolicy
from tests.geo.conftest import dbip

__all__ = ["dbip"]

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "rules" / "egress-policy.yaml"


@pytest.fixture
def geo(corpus: Path) -> Iterator[GeoDatabase]:
    """GeoIP2-City-Test.mmdb from the corpus (MaxMind's test data: 89.160.20.112 is SE,
    175.16.199.1 CN)."""
    with GeoDatabase.open(corpus / "geoip" / "GeoIP2-City-Test.mmdb") as db:
        yield db


@pytest.fixture
def policy() -> EgressPolicy:
    """rules/egress-policy.yaml as shipped."""
    return EgressPolicy.load(SHIPPED)
