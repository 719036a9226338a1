"""Operator location data: RFC 8805 geofeed files and a longest-prefix table.

Geofeed format (RFC 8805 section 2, "Self-Published IP Geolocation Feeds"): UTF-8 CSV (RFC
4180), one entry per line, fields ``ip_prefix,alpha2code,region,city,postal_code``; lines whose
first character is ``#`` are comments; trailing empty fields may be omitted. ``ip_prefix`` is an
IPv4 or IPv6 address or CIDR prefix (host bits must be zero); ``alpha2code`` an ISO 3166-1
alpha-2 code or empty (RFC 8805 section 2.1.2: no location is published for the prefix);
``region`` an ISO 3166-2 code whose country part is ``alpha2code``; ``city`` free text;
``postal_code`` is deprecated (section 2.1.1.5) and kept as text.

Unlike the RFC's advice to skip invalid entries, a geofeed here is evidence the operator
supplies, so a malformed row is an error (``ConfigError`` naming the file and the line), as is
the same prefix listed twice. Lookups: the most specific prefix wins.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from sentinel.errors import ConfigError
from sentinel.geo.database import clean_country
from sentinel.records import GeoProvenance

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")

#: largest geofeed accepted, bytes
MAX_GEOFEED_BYTES = 16 * 1024 * 1024
#: database_type recorded in the provenance of a location taken from a geofeed
GEOFEED_TYPE = "RFC8805-geofeed"
_REGION = re.compile(r"[A-Z]{2}-[A-Z0-9]{1,3}")


class PrefixTable(Generic[T]):
    """Longest-prefix match over IPv4 and IPv6 networks. ``add`` raises ``KeyError`` for a
    network already present; ``lookup(addr)`` returns ``(network, value)`` or ``None``."""

    def __init__(self) -> None:
        self._tables: dict[int, dict[int, dict[int, tuple[Network, T]]]] = {4: {}, 6: {}}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}
        self._size = 0

    def add(self, network: Network, value: T) -> None:
        by_len = self._tables[network.version].setdefault(network.prefixlen, {})
        key = int(network.network_address)
        if key in by_len:
            raise KeyError(str(network))
        by_len[key] = (network, value)
        self._lengths[network.version] = sorted(self._tables[network.version], reverse=True)
        self._size += 1

    def lookup(self, addr: IPAddress) -> tuple[Network, T] | None:
        return self.lookup_int(addr.version, int(addr))

    def lookup_int(self, version: int, value: int) -> tuple[Network, T] | None:
        """``lookup`` for an address given as its IP version (4 or 6) and integer value."""
        bits = 32 if version == 4 else 128
        tables = self._tables[version]
        for plen in self._lengths[version]:
            hit = tables[plen].get(value >> (bits - plen) << (bits - plen) if plen else 0)
            if hit is not None:
                return hit
        return None

    def __len__(self) -> int:
        return self._size


@dataclass(frozen=True, slots=True)
class GeofeedEntry:
    """One geofeed row; ``country`` is ``None`` when the row publishes no location; ``line`` is
    the 1-based line number in the file."""

    network: Network
    country: str | None
    region: str
    city: str
    postal: str
    line: int


@dataclass(frozen=True)
class Geofeed:
    """A parsed geofeed file: its entries, SHA-256 and modification time (UTC epoch seconds)."""

    path: Path
    sha256: str
    mtime: int
    entries: tuple[GeofeedEntry, ...]

    @property
    def provenance(self) -> GeoProvenance:
        """Provenance of a location taken from this file (type ``RFC8805-geofeed``)."""
        return GeoProvenance(GEOFEED_TYPE, self.mtime, self.sha256, str(self.path))


def parse_geofeed(raw: bytes, *, path: str = "<memory>") -> tuple[GeofeedEntry, ...]:
    """Parse geofeed bytes (module docstring). Raises ``ConfigError(path, problem, "line N")``."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 text: {exc.reason}") from exc
    entries: list[GeofeedEntry] = []
    seen: dict[Network, int] = {}
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for row in reader:
            line = reader.line_num
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            entry = _entry(row, line, path)
            if entry.network in seen:
                raise ConfigError(
                    path, f"{entry.network} already listed on line {seen[entry.network]}",
                    f"line {line}",
                )  # fmt: skip
            seen[entry.network] = line
            entries.append(entry)
    except csv.Error as exc:
        raise ConfigError(path, f"not valid CSV: {exc}", f"line {reader.line_num}") from exc
    return tuple(entries)


def _entry(row: list[str], line: int, path: str) -> GeofeedEntry:
    key = f"line {line}"
    if len(row) > 5:
        raise ConfigError(path, f"{len(row)} fields; RFC 8805 has at most 5", key)
    prefix, country, region, city, postal = [f.strip() for f in row] + [""] * (5 - len(row))
    try:
        network = ipaddress.ip_network(prefix, strict=True)
    except ValueError as exc:
        raise ConfigError(path, f"not an IP prefix: {prefix!r} ({exc})", key) from exc
    code = clean_country(country) if country else None
    if country and code is None:
        raise ConfigError(path, f"not an ISO 3166-1 alpha-2 country code: {country!r}", key)
    region = region.upper()
    if region and (not _REGION.fullmatch(region) or region[:2] != code):
        raise ConfigError(
            path, f"region {region!r} is not an ISO 3166-2 code of country {country!r}", key
        )
    return GeofeedEntry(network, code, region, city, postal, line)


def load_geofeed(path: str | Path) -> Geofeed:
    """Read and parse the geofeed at ``path`` (at most ``MAX_GEOFEED_BYTES``).
    Raises ``ConfigError`` naming the file (and the line for a malformed row)."""
    p = Path(path)
    try:
        st = p.stat()
        if st.st_size > MAX_GEOFEED_BYTES:
            raise ConfigError(str(p), f"geofeed larger than {MAX_GEOFEED_BYTES} bytes")
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read geofeed: {exc.strerror or exc}") from exc
    entries = parse_geofeed(raw, path=str(p))
    return Geofeed(p.absolute(), hashlib.sha256(raw).hexdigest(), int(st.st_mtime), entries)
