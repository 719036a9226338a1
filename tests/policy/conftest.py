"""Policy tests share the GeoIP fixtures (the real DB-IP City Lite database)."""

from __future__ import annotations

from tests.geo.conftest import dbip

__all__ = ["dbip"]
