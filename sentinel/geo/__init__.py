"""geo stage: where an address is (MaxMind-format databases) and country groups (EU, EEA).

Entry points: ``GeoDatabase.open(path)``, ``GeoDatabase.lookup(ip) -> GeoResult``,
``embedded_ipv4``, ``groups.EU`` / ``groups.EEA``.
"""

from __future__ import annotations

from sentinel.geo.database import GeoDatabase, GeoResult, clean_country, embedded_ipv4
from sentinel.geo.groups import EEA, EU, GROUPS

__all__ = ["EEA", "EU", "GROUPS", "GeoDatabase", "GeoResult", "clean_country", "embedded_ipv4"]
