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

import contextlib
import hashlib
import ipaddress
import mmap
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import maxminddb
from maxminddb.errors import InvalidDatabaseError

from sentinel.errors import GeoIPError
from sentinel.geo.special import classify_int
from sentinel.records import GeoProvenance

#: codes databases use for "no single country"
PSEUDO_CODES = frozenset({"EU", "AP", "A1", "A2", "O1", "ZZ", "XX", "NONE", ""})
#: bound on the per-database lookup cache (addresses)
CACHE_MAX = 100_000
#: networks decoded by ``GeoDatabase.validate`` (about 0.7 s on DB-IP City Lite)
VERIFY_RECORDS = 50_000
#: 2000-01-01T00:00:00Z: no MaxMind-format database is older
MIN_BUILD_EPOCH = 946_684_800
#: addresses ``validate`` looks up: public resolvers and one address per RIR region
PROBES = (
    "1.1.1.1", "8.8.8.8", "9.9.9.9", "81.2.69.142", "89.160.20.112", "2.125.160.216",
    "175.16.199.1", "41.0.0.1", "200.0.0.1", "2001:4860:4860::8888", "2a00:1450::1",
    "2400:cb00::1", "2800:3f0::1", "2c0f:fb50::1",
)  # fmt: skip

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_TEREDO = ipaddress.ip_network("2001::/32")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class GeoResult:
    """Where an address is: ISO 3166-1 alpha-2 ``country`` and ``continent`` code (``None`` when
    unknown), the database ``network`` (CIDR) that matched, and ``found`` (the database holds a
    record for the address, even one without a country).

    ``special`` names the IANA special-purpose (or unallocated) range the address is in
    (``sentinel.geo.special``); the database is then not consulted, ``network`` is that range and
    ``country`` is ``None`` whatever the database holds. ``error`` is true when the database
    failed to answer (a corrupt record or search tree): that is not "not found", and the policy
    never lets it pass as an unknown location that is allowed."""

    country: str | None
    continent: str | None
    network: str | None
    found: bool
    special: str | None = None
    error: bool = False


NOT_FOUND = GeoResult(None, None, None, False)
LOOKUP_ERROR = GeoResult(None, None, None, False, error=True)


def embedded_ipv4(addr: IPAddress) -> IPAddress:
    """The IPv4 address embedded in an IPv4-mapped, IPv4-compatible, NAT64 well-known prefix
    (``64:ff9b::/96``, RFC 6052 section 2.1: the last 32 bits), 6to4 or Teredo IPv6 address; any
    other address is returned unchanged."""
    if addr.version == 4:
        return addr
    assert isinstance(addr, ipaddress.IPv6Address)
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return mapped
    packed = addr.packed
    if packed[:12] == bytes(12) and int(addr) > 1:
        return ipaddress.IPv4Address(packed[12:])
    if addr in _NAT64:
        return ipaddress.IPv4Address(packed[12:])
    if addr in _SIXTOFOUR:
        return ipaddress.IPv4Address(packed[2:6])
    if addr in _TEREDO:
        return ipaddress.IPv4Address(int.from_bytes(packed[12:], "big") ^ 0xFFFFFFFF)
    return addr


_NAT64_HI = int(_NAT64.network_address) >> 32
_V4_MASK = 0xFFFFFFFF


def parse_address(text: str) -> tuple[int, int]:
    """An address in text form → ``(version, integer value)``, as ``ipaddress.ip_address``
    would parse it. Canonical text (what ``str`` of an ``ipaddress`` object gives, and what
    every flow source writes) is parsed with ``socket.inet_pton``; anything else goes through
    ``ipaddress``. Raises ``ValueError`` when ``text`` is not an IP address."""
    try:
        if ":" in text:
            packed = socket.inet_pton(socket.AF_INET6, text)
            if socket.inet_ntop(socket.AF_INET6, packed) == text:
                return 6, int.from_bytes(packed, "big")
        else:
            packed = socket.inet_pton(socket.AF_INET, text)
            if socket.inet_ntoa(packed) == text:
                return 4, int.from_bytes(packed, "big")
    except (OSError, TypeError):
        pass
    addr = ipaddress.ip_address(text)
    return addr.version, int(addr)


def embedded_ipv4_int(version: int, value: int) -> tuple[int, int]:
    """``embedded_ipv4`` on ``(version, integer value)``: the same reduction, on integers."""
    if version == 4:
        return version, value
    top = value >> 32
    if top == 0xFFFF or (top == 0 and value > 1) or top == _NAT64_HI:
        return 4, value & _V4_MASK
    if value >> 112 == 0x2002:
        return 4, (value >> 80) & _V4_MASK
    if value >> 96 == 0x20010000:
        return 4, (value & _V4_MASK) ^ _V4_MASK
    return version, value


def address_text(version: int, value: int) -> str:
    """``str(ipaddress.ip_address(value))`` for an IPv4 (``version`` 4) or IPv6 integer."""
    if version == 4:
        return socket.inet_ntoa(value.to_bytes(4, "big"))
    text = socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))
    if "." in text:  # inet_ntop writes embedded IPv4 in dotted form, ipaddress in hex groups
        return str(ipaddress.IPv6Address(value))
    return text


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
    Addresses in IANA special-purpose or unallocated ranges are never looked up (``special``).
    ``provenance`` is the database type, build time (UTC epoch seconds) and file SHA-256.

    Open mode: by default ``open`` copies the file into a private snapshot while hashing it,
    memory-maps the snapshot with the C extension (``MODE_MMAP_EXT`` when available) and unlinks
    it at once. An in-place overwrite of the original — ``cp new.mmdb db.mmdb`` truncates and
    rewrites the same inode — then cannot touch the mapped bytes: with a direct ``MODE_MMAP``
    reader it returns garbage and, on truncation, kills the process with SIGBUS. The SHA-256 is
    of exactly the bytes served. ``MODE_MEMORY`` would be as safe but its pure-Python reader is
    about six times slower (measured on DB-IP City Lite: ~390 µs vs ~60 µs a lookup).
    """

    def __init__(
        self,
        reader: Any,
        provenance: GeoProvenance,
        ip_version: int,
        *,
        node_count: int = 0,
        record_size: int = 0,
    ) -> None:
        self._reader = reader
        self.provenance = provenance
        self.ip_version = ip_version
        self.node_count = node_count
        self.record_size = record_size
        self.lookup_errors = 0
        self._cache: dict[str, GeoResult] = {}
        #: the file's bytes, mapped read-only (``lookup_many`` walks the search tree in them)
        self._map: mmap.mmap | None = None
        self._ipv4_start: int | None = None

    @classmethod
    def open(
        cls, path: str | Path, *, snapshot: bool = True, snapshot_dir: str | Path | None = None
    ) -> GeoDatabase:
        """Open ``path`` and hash it. Raises ``GeoIPError`` when it is missing or not a valid
        MaxMind DB (bad metadata, invalid node count...) or the snapshot cannot be written.

        ``snapshot`` (default) reads from a private, already-unlinked copy made in
        ``snapshot_dir`` (default: the system temporary directory) — see the class docstring.
        ``snapshot=False`` maps ``path`` itself (only for files nobody will rewrite).
        """
        p = Path(path)
        if not snapshot:
            digest = _sha256_file(p)
            return cls._open_reader(p, p, digest)
        try:
            fd, tmp = tempfile.mkstemp(prefix="sentinel-geoip-", suffix=".mmdb", dir=snapshot_dir)
        except OSError as exc:
            raise GeoIPError(f"{p}: cannot create a GeoIP snapshot: {exc.strerror or exc}") from exc
        snap = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                digest = _sha256_file(p, copy_to=out)
            return cls._open_reader(snap, p, digest)
        finally:
            snap.unlink(missing_ok=True)  # the mapping keeps the bytes alive

    @classmethod
    def _open_reader(cls, source: Path, shown: Path, digest: str) -> GeoDatabase:
        try:
            reader = maxminddb.open_database(str(source), maxminddb.MODE_AUTO)
            meta = reader.metadata()
        except (InvalidDatabaseError, ValueError, OSError, UnicodeDecodeError) as exc:
            raise GeoIPError(f"{shown}: not a valid MaxMind DB (.mmdb) file: {exc}") from exc
        provenance = GeoProvenance(
            database_type=str(meta.database_type),
            build_epoch=int(meta.build_epoch),
            sha256=digest,
            path=str(shown.absolute()),
        )
        db = cls(
            reader,
            provenance,
            int(meta.ip_version),
            node_count=int(meta.node_count),
            record_size=int(meta.record_size),
        )
        try:
            with source.open("rb") as fh:
                db._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            db._map = None  # lookup_many then asks the reader address by address
        return db

    def lookup(self, ip: str | IPAddress) -> GeoResult:
        """Locate ``ip`` (string or ``ipaddress`` object). Raises ``ValueError`` only for a
        string that is not an IP address."""
        key = str(ip)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if isinstance(ip, str):
            version, value = parse_address(ip)
        else:
            version, value = ip.version, int(ip)
        version, value = embedded_ipv4_int(version, value)
        return self._locate(key, version, value, address_text(version, value))

    def lookup_normalized(self, text: str, version: int, value: int) -> GeoResult:
        """``lookup`` of an address already reduced by ``embedded_ipv4``, given as its
        canonical ``text`` (``address_text``), IP version (4 or 6) and integer value: the
        policy's fast path, nothing parsed again."""
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        return self._locate(text, version, value, text)

    def lookup_many(self, addresses: Sequence[tuple[str, int, int]]) -> list[GeoResult]:
        """``lookup_normalized`` for many ``(text, version, value)`` addresses at once (same
        answers, same order, same cache, same error count): ``prefetch``, then the cache."""
        self.prefetch(addresses)
        return [self.lookup_normalized(*a) for a in addresses]

    def prefetch(self, addresses: Iterable[tuple[str, int, int]]) -> None:
        """Answer and cache ``(text, version, value)`` addresses (as ``lookup_normalized``
        takes them) all at once, so that their lookups that follow are cache hits.

        The search tree (MaxMind DB File Format Specification 2.0, "Search Tree Section") is
        walked for every uncached address together with numpy, and the reader decodes each
        distinct data record once — for one address of the group that reaches it, whose
        prefix length must equal the walk's. An address the walk cannot settle (a corrupt
        tree, a record size other than 24/28/32 bits, no mapped file) is asked of the reader
        alone, as ``lookup_normalized`` does.
        """
        todo: dict[str, tuple[int, int]] = {}
        for text, version, value in addresses:
            if text in self._cache or text in todo:
                continue
            special = classify_int(version, value)
            if special is not None and special.scope != "embedded":
                self._locate(text, version, value, text)
            elif version == 6 and self.ip_version == 4:
                self._store(text, NOT_FOUND)
            else:
                todo[text] = (version, value)
        for version in (4, 6):
            batch = [(t, v) for t, (ver, v) in todo.items() if ver == version]
            if batch:
                self._walk_and_decode(version, batch)

    def _walk_and_decode(self, version: int, batch: list[tuple[str, int]]) -> None:
        walked = self._walk(version, [v for _t, v in batch])
        if walked is None:
            for text, value in batch:
                self._locate(text, version, value, text)
            return
        records, depths = walked
        groups: dict[int, list[int]] = {}
        for i, record in enumerate(records):
            groups.setdefault(record, []).append(i)
        for record, members in groups.items():
            if record < 0:  # not settled by the walk
                for i in members:
                    self._locate(batch[i][0], version, batch[i][1], batch[i][0])
                continue
            if record == self.node_count:  # an empty branch: no data
                for i in members:
                    self._store(batch[i][0], NOT_FOUND)
                continue
            first = members[0]
            text, value = batch[first]
            try:
                data, prefix = self._reader.get_with_prefix_len(text)
            except (InvalidDatabaseError, ValueError):
                self.lookup_errors += len(members)
                for i in members:
                    self._store(batch[i][0], LOOKUP_ERROR)
                continue
            if data is None or prefix != depths[first]:  # the walk disagrees: trust the reader
                for i in members:
                    self._locate(batch[i][0], version, batch[i][1], batch[i][0])
                continue
            country, continent = _map_record(data)
            bits = 32 if version == 4 else 128
            for i in members:
                text, value = batch[i]
                host = bits - depths[i]
                network = f"{address_text(version, value >> host << host)}/{depths[i]}"
                self._store(text, GeoResult(country, continent, network, True))

    def _walk(self, version: int, values: list[int]) -> tuple[list[int], list[int]] | None:
        """Walk the search tree for ``values`` together: per address the record value where
        the walk left the tree (``node_count``: empty; more: a data pointer; -1: not settled)
        and the depth there (the prefix length). ``None`` when the tree cannot be walked."""
        if self._map is None or self.record_size not in (24, 28, 32) or self.node_count <= 0:
            return None
        import numpy as np

        tree = np.frombuffer(self._map, dtype=np.uint8)
        node_bytes = self.record_size // 4
        if tree.size < self.node_count * node_bytes:
            return None
        bits = 32 if version == 4 else 128
        start = 0
        if version == 4 and self.ip_version == 6:
            start = self._ipv4_start_node(tree)
            if start >= self.node_count:
                return None
        n = len(values)
        hi = np.array([v >> 64 for v in values], dtype=np.uint64)
        lo = np.array([v & 0xFFFFFFFFFFFFFFFF for v in values], dtype=np.uint64)
        node = np.full(n, start, dtype=np.int64)
        depth = np.full(n, -1, dtype=np.int64)
        active = np.arange(n)
        one = np.uint64(1)
        for i in range(bits):
            # bit i counted from the most significant: IPv4 in ``lo``; IPv6 ``hi`` then ``lo``
            if version == 6 and i < 64:
                bit = (hi[active] >> np.uint64(63 - i)) & one
            else:
                bit = (lo[active] >> np.uint64(bits - 1 - i)) & one
            bit = bit.astype(np.int64)
            record = self._records(tree, node[active], bit, node_bytes)
            node[active] = record
            done = record >= self.node_count
            depth[active[done]] = i + 1
            active = active[~done]
            if not active.size:
                break
        node[active] = -1  # still inside the tree after every bit: a malformed tree
        return node.tolist(), depth.tolist()

    def _records(self, tree: Any, node: Any, bit: Any, node_bytes: int) -> Any:
        """The left (``bit`` 0) or right record of each ``node``, as integers."""
        import numpy as np

        base = node * node_bytes
        if self.record_size == 28:
            mid = tree[base + 3].astype(np.int64)
            off = base + 4 * bit
            nibble = np.where(bit == 1, mid & 0x0F, mid >> 4)
            return (
                (nibble << 24)
                | (tree[off].astype(np.int64) << 16)
                | (tree[off + 1].astype(np.int64) << 8)
                | tree[off + 2].astype(np.int64)
            )
        width = node_bytes // 2
        off = base + width * bit
        out = np.zeros(node.size, dtype=np.int64)
        for k in range(width):
            out = (out << 8) | tree[off + k].astype(np.int64)
        return out

    def _ipv4_start_node(self, tree: Any) -> int:
        """The node reached from the root by 96 zero bits (``::/96``): where IPv4 starts."""
        import numpy as np

        if self._ipv4_start is None:
            node = 0
            zero = np.zeros(1, dtype=np.int64)
            for _ in range(96):
                if node >= self.node_count:
                    break
                node = int(self._records(tree, np.array([node]), zero, self.record_size // 4)[0])
            self._ipv4_start = node
        return self._ipv4_start

    def _store(self, key: str, result: GeoResult) -> None:
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key] = result

    def _locate(self, key: str, version: int, value: int, text: str) -> GeoResult:
        """Classify, look up and cache (under ``key``) a normalized address; ``text`` is its
        canonical form."""
        special = classify_int(version, value)
        if special is not None and special.scope != "embedded":
            result = GeoResult(None, None, str(special.network), False, special.name)
        else:
            result = self._lookup(version, value, text)
        self._store(key, result)
        return result

    def _lookup(self, version: int, value: int, text: str) -> GeoResult:
        """The database's answer for a normalized address (``text`` is its canonical form)."""
        if version == 6 and self.ip_version == 4:
            return NOT_FOUND
        try:
            record, prefix = self._reader.get_with_prefix_len(text)
        except (InvalidDatabaseError, ValueError):
            self.lookup_errors += 1
            return LOOKUP_ERROR
        if record is None:
            return NOT_FOUND
        country, continent = _map_record(record)
        host = (32 if version == 4 else 128) - prefix
        network = f"{address_text(version, value >> host << host)}/{prefix}"
        return GeoResult(country, continent, network, True)

    def validate(
        self,
        *,
        probes: Iterable[str] = PROBES,
        max_records: int = VERIFY_RECORDS,
        now: float | None = None,
    ) -> None:
        """Check that the database is usable before it is trusted; raises ``GeoIPError``.

        Checks: sane metadata (a type, ``ip_version`` 4 or 6, a node count, a record size of
        24/28/32 bits, a build time after 2000 and at most one day in the future — ``now`` is
        UTC epoch seconds, default the current time); the first ``max_records`` networks decode
        (the whole database when it is smaller; catches broken data pointers and search trees);
        at least one of them has a country (an ASN or anonymous-IP database has none); every
        ``probes`` address can be looked up without a database error.
        """
        p = self.provenance
        now = time.time() if now is None else now
        problems = []
        if not p.database_type:
            problems.append("no database_type")
        if self.ip_version not in (4, 6):
            problems.append(f"ip_version {self.ip_version}")
        if self.node_count <= 0:
            problems.append("no search-tree nodes")
        if self.record_size not in (24, 28, 32):
            problems.append(f"record_size {self.record_size}")
        if not MIN_BUILD_EPOCH <= p.build_epoch <= now + 86_400:
            problems.append(f"implausible build_epoch {p.build_epoch}")
        if problems:
            raise GeoIPError(f"{p.path}: implausible metadata: {', '.join(problems)}")
        with_country = 0
        seen = 0
        try:
            for _net, record in self._reader:
                seen += 1
                if _map_record(record)[0] is not None:
                    with_country += 1
                if seen >= max_records:
                    break
            for probe in probes:
                addr = ipaddress.ip_address(probe)
                if addr.version == 6 and self.ip_version == 4:
                    continue
                self._reader.get_with_prefix_len(addr)
        except (InvalidDatabaseError, ValueError, UnicodeDecodeError) as exc:
            raise GeoIPError(f"{p.path}: corrupt database ({seen} networks read): {exc}") from exc
        if with_country == 0:
            raise GeoIPError(
                f"{p.path}: no country in the first {seen} networks "
                f"({p.database_type!r} is not a location database)"
            )

    def close(self) -> None:
        """Close the underlying reader (safe to call twice)."""
        self._reader.close()
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a walk holds a view: freed with it
                self._map.close()
            self._map = None

    def __enter__(self) -> GeoDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sha256_file(path: Path, copy_to: BinaryIO | None = None) -> str:
    """SHA-256 (hex) of ``path`` read once in 1 MiB blocks, optionally copying the bytes."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
                if copy_to is not None:
                    copy_to.write(block)
    except OSError as exc:
        raise GeoIPError(f"{path}: cannot read GeoIP database: {exc.strerror or exc}") from exc
    return digest.hexdigest()
