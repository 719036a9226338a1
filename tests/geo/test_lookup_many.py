"""``GeoDatabase.lookup_many`` (search tree walked with numpy, one decode per data record)
answers exactly as ``lookup`` address by address, on every database in the corpus."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from sentinel.errors import GeoIPError
from sentinel.geo import GeoDatabase
from sentinel.geo.database import address_text, embedded_ipv4_int


def _addresses(seed: int, count: int) -> list[tuple[str, int, int]]:
    """Random IPv4/IPv6 addresses, dense blocks (shared records) and embedded IPv4 forms."""
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        kind = rnd.randrange(6)
        if kind == 0:
            raw = (4, rnd.getrandbits(32))
        elif kind == 1:
            top = rnd.choice([0x2001, 0x2400, 0x2600, 0x2A02, 0x2C0F, 0x2800, 0x2002])
            raw = (6, (top << 112) | rnd.getrandbits(112))
        elif kind == 2:  # blocks the test databases hold (1.0.0.0/8, 2.125.160.0/24, 81.2.69/24…)
            first = rnd.choice([1, 2, 67, 81, 89, 175, 202, 216])
            raw = (4, (first << 24) | rnd.getrandbits(24))
        elif kind == 3:
            raw = (6, (0x2001_0218 << 96) | rnd.getrandbits(96))
        elif kind == 4:  # IPv4-mapped, reduced before lookup as the policy does
            raw = (6, (0xFFFF << 32) | rnd.getrandbits(32))
        else:
            raw = (6, rnd.getrandbits(128))
        version, value = embedded_ipv4_int(*raw)
        out.append((address_text(version, value), version, value))
    return out


def _databases(corpus: Path, dbip_path: Path) -> list[Path]:
    geo = corpus / "geoip"
    return [dbip_path, *sorted(geo.glob("*.mmdb")), *sorted((geo / "ipinfo").rglob("*.mmdb"))]


def test_same_answers_and_errors_on_every_database(corpus: Path, dbip_path: Path) -> None:
    addresses = _addresses(1, 6000)
    sizes = set()
    walked = 0
    for path in _databases(corpus, dbip_path):
        try:
            many, one = GeoDatabase.open(path), GeoDatabase.open(path)
        except GeoIPError:
            assert "Invalid-Node-Count" in path.name
            continue
        with many, one:
            sizes.add(many.record_size)
            assert many.lookup_many(addresses) == [one.lookup(a[0]) for a in addresses], path
            assert many.lookup_errors == one.lookup_errors, path
            walked += 1
    assert walked >= 17
    assert sizes == {24, 28, 32}


def test_each_record_is_decoded_once(dbip_path: Path) -> None:
    rnd = random.Random(2)
    # 4,000 addresses in 50 /24 networks: at most a few records each
    blocks = [(81 << 24) | (rnd.getrandbits(16) << 8) for _ in range(50)]
    values = [rnd.choice(blocks) | rnd.getrandbits(8) for _ in range(4000)]
    addresses = [(address_text(4, v), 4, v) for v in values]
    with GeoDatabase.open(dbip_path) as db, GeoDatabase.open(dbip_path) as ref:
        reader = db._reader
        calls = 0

        class Counting:
            """The real reader, with its record decodes counted."""

            def get_with_prefix_len(self, ip: str) -> Any:
                nonlocal calls
                calls += 1
                return reader.get_with_prefix_len(ip)

        db._reader = Counting()
        got = db.lookup_many(addresses)
        db._reader = reader
        assert got == [ref.lookup(a[0]) for a in addresses]
        distinct = len({a[0] for a in addresses})
        assert 0 < calls <= 200 < distinct
        assert db.lookup_many(addresses) == got  # now every answer comes from the cache
        assert calls <= 200


@pytest.mark.parametrize("name", ["GeoIP2-City-Test-Broken-Double-Format.mmdb"])
def test_corrupt_records_count_once_per_address(corpus: Path, name: str) -> None:
    addresses = _addresses(3, 3000)
    with (
        GeoDatabase.open(corpus / "geoip" / name) as db,
        GeoDatabase.open(corpus / "geoip" / name) as ref,
    ):
        got = db.lookup_many(addresses)
        assert got == [ref.lookup(a[0]) for a in addresses]
        assert db.lookup_errors == ref.lookup_errors > 0
        assert any(r.error for r in got)
