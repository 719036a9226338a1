"""geo stage: where an address is (MaxMind-format databases) and country groups (EU, EEA).

Entry points: ``GeoDatabase.open(path)``, ``GeoDatabase.lookup(ip) -> GeoResult``,
``GeoHandle.open(path)`` (hot reload), ``special.classify`` (IANA special-purpose ranges),
``geofeed.load_geofeed`` (RFC 8805), ``embedded_ipv4``, ``groups.EU`` / ``groups.EEA``.
"""

from __future__ import annotations

from sentinel.geo.database import GeoDatabase, GeoResult, clean_country, embedded_ipv4
from sentinel.geo.groups import EEA, EU, GROUPS
from sentinel.geo.handle import GeoHandle, GeoStatus, ReloadResult

#: what the policy accepts as a location source
GeoSource = GeoDatabase | GeoHandle


def current(geo: GeoSource | None) -> GeoDatabase | None:
    """The database to use for one decision (a handle's database in service)."""
    return geo.current if isinstance(geo, GeoHandle) else geo


__all__ = [
    "EEA",
    "EU",
    "GROUPS",
    "GeoDatabase",
    "GeoHandle",
    "GeoResult",
    "GeoSource",
    "GeoStatus",
    "ReloadResult",
    "clean_country",
    "current",
    "embedded_ipv4",
]
