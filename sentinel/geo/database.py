"""GeoIP lookups from any MaxMind-format (.mmdb) database, mapped to one ``GeoResult``.

Records are read raw with ``maxminddb`` (``MODE_AUTO``) and mapped per schema:

* MaxMind GeoIP2/GeoLite2 Country, City, Enterprise and DB-IP (same schema as City):
  ``country.iso_code`` — where the address *is*; ``registered_country`` and
  ``represented_country`` are ignored for location; ``continent.code``.
  (https://dev.maxmind.com/geoip/docs/databases/city-and-country)
* IPinfo Lite: ``country_code`` (``country`` there is the country *name*), ``continent_code``.
* IPinfo free country: ``country`` holds the ISO code, ``continent`` the continent code.
  (https://github.com/ipinfo/sample-database)

Pseudo-codes are never countries: ``EU``, ``AP``, ``A1``, ``A2``, ``O1``, ``ZZ``, ``XX``,
``"None"``, empty strings and anything that is not two ASCII letters.

Before lookup, IPv6 addresses that embed an IPv4 address are reduced to it: IPv4-mapped
(``::ffff:0:0/96``), IPv4-compatible (``::/96`` except ``::`` and ``::1``), 6to4 (``2002::/16``,
RFC 3056: bits 16–47) and Teredo (``2001::/32``, RFC 4380: the *client* address, the inverted last
32 bits — the host actually talking, not the Teredo server).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb
from maxminddb.errors import InvalidDatabaseError

from sentinel.errors import GeoIPError
from sentinel.records import GeoProvenance

#: codes databases use for "no single country"
PSEUDO_CODES = frozenset({"EU", "AP", "A1", "A2", "O1", "ZZ", "XX", "NONE", ""})
#: bound on the per-database lookup cache (addresses)
CACHE_MAX = 100_000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_TEREDO = ipaddress.ip_network("2001::/32")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")


@dataclass(frozen=True, slots=True)
class GeoResult:
    """Where an address is: ISO 3166-1 alpha-2 ``country`` and ``continent`` code (``None`` when
    unknown), the database ``network`` (CIDR) that matched, and ``found`` (the database holds a
    record for the address, even one without a country)."""

    country: str | None
    continent: str | None
    network: str | None
    found: bool


NOT_FOUND = GeoResult(None, None, None, False)


def embedded_ipv4(addr: IPAddress) -> IPAddress:
    """The IPv4 address embedded in an IPv4-mapped, IPv4-compatible, 6to4 or Teredo IPv6
    address; any other address is returned unchanged."""
    if addr.version == 4:
        return addr
    assert isinstance(addr, ipaddress.IPv6Address)
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return mapped
    packed = addr.packed
    if packed[:12] == bytes(12) and int(addr) > 1:
        return ipaddress.IPv4Address(packed[12:])
    if addr in _SIXTOFOUR:
        return ipaddress.IPv4Address(packed[2:6])
    if addr in _TEREDO:
        return ipaddress.IPv4Address(int.from_bytes(packed[12:], "big") ^ 0xFFFFFFFF)
    return addr


def clean_country(code: object) -> str | None:
    """``code`` upper-cased when it is a real ISO 3166-1 alpha-2 code, else ``None``."""
    if not isinstance(code, str):
        return None
    value = code.strip().upper()
    if len(value) != 2 or not value.isascii() or not value.isalpha() or value in PSEUDO_CODES:
        return None
    return value


def _map_record(record: Any) -> tuple[str | None, str | None]:
    """A raw record of any supported schema → ``(country, continent)``."""
    if not isinstance(record, dict):
        return None, None
    if "country_code" in record:  # IPinfo Lite
        return clean_country(record.get("country_code")), _str(record.get("continent_code"))
    country = record.get("country")
    if isinstance(country, dict):  # MaxMind / DB-IP
        continent = record.get("continent")
        code = continent.get("code") if isinstance(continent, dict) else None
        return clean_country(country.get("iso_code")), _str(code)
    if isinstance(country, str):  # IPinfo free country
        return clean_country(country), _str(record.get("continent"))
    continent = record.get("continent")
    if isinstance(continent, dict):  # continent-only MaxMind record
        return None, _str(continent.get("code"))
    return None, None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class GeoDatabase:
    """An open .mmdb database. Create with ``GeoDatabase.open(path)``.

    ``lookup(ip)`` never raises for a well-formed address: a miss, an IPv6 address on an
    IPv4-only database, or a corrupt record (counted in ``lookup_errors``) is "not found".
    ``provenance`` is the database type, build time (UTC epoch seconds) and file SHA-256.
    """

    def __init__(self, reader: Any, provenance: GeoProvenance, ip_version: int) -> None:
        self._reader = reader
        self.provenance = provenance
        self.ip_version = ip_version
        self.lookup_errors = 0
        self._cache: dict[str, GeoResult] = {}

    @classmethod
    def open(cls, path: str | Path) -> GeoDatabase:
        """Open ``path`` and hash it. Raises ``GeoIPError`` when it is missing or not a valid
        MaxMind DB (bad metadata, invalid node count...)."""
        p = Path(path)
        digest = hashlib.sha256()
        try:
            with p.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise GeoIPError(f"{p}: cannot read GeoIP database: {exc.strerror or exc}") from exc
        try:
            reader = maxminddb.open_database(str(p), maxminddb.MODE_AUTO)
            meta = reader.metadata()
        except (InvalidDatabaseError, ValueError, OSError, UnicodeDecodeError) as exc:
            raise GeoIPError(f"{p}: not a valid MaxMind DB (.mmdb) file: {exc}") from exc
        provenance = GeoProvenance(
            database_type=str(meta.database_type),
            build_epoch=int(meta.build_epoch),
            sha256=digest.hexdigest(),
            path=str(p.absolute()),
        )
        return cls(reader, provenance, int(meta.ip_version))

    def lookup(self, ip: str | IPAddress) -> GeoResult:
        """Locate ``ip`` (string or ``ipaddress`` object). Raises ``ValueError`` only for a
        string that is not an IP address."""
        key = str(ip)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        addr = embedded_ipv4(ipaddress.ip_address(ip))
        result = self._lookup(addr)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key] = result
        return result

    def _lookup(self, addr: IPAddress) -> GeoResult:
        if addr.version == 6 and self.ip_version == 4:
            return NOT_FOUND
        try:
            record, prefix = self._reader.get_with_prefix_len(addr)
        except (InvalidDatabaseError, ValueError):
            self.lookup_errors += 1
            return NOT_FOUND
        if record is None:
            return NOT_FOUND
        country, continent = _map_record(record)
        network = str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
        return GeoResult(country, continent, network, True)

    def close(self) -> None:
        """Close the underlying reader (safe to call twice)."""
        self._reader.close()

    def __enter__(self) -> GeoDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
