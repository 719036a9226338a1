"""RFC 8805 geofeed parsing: the RFC's own example, malformed rows named by file and line."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

import pytest

from sentinel.errors import ConfigError
from sentinel.geo.geofeed import GEOFEED_TYPE, PrefixTable, load_geofeed, parse_geofeed

#: RFC 8805 section 2.1.1's example feed (documentation prefixes), plus a comment and blank line
RFC_EXAMPLE = b"""\
# IP Prefix, Alpha2code, Region, City, Postal code
192.0.2.0/25,US,US-AL,,
192.0.2.5,US,US-AL,Alabaster,35007

192.0.2.128/25,PL,PL-MZ,,02-784
2001:db8::/32,PL,,,
2001:db8:cafe::/48,PL,PL-MZ,,02-784
"""


def test_rfc_example(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    path.write_bytes(RFC_EXAMPLE)
    feed = load_geofeed(path)
    assert [(str(e.network), e.country, e.region, e.line) for e in feed.entries] == [
        ("192.0.2.0/25", "US", "US-AL", 2),
        ("192.0.2.5/32", "US", "US-AL", 3),
        ("192.0.2.128/25", "PL", "PL-MZ", 5),
        ("2001:db8::/32", "PL", "", 6),
        ("2001:db8:cafe::/48", "PL", "PL-MZ", 7),
    ]
    assert feed.entries[1].city == "Alabaster" and feed.entries[1].postal == "35007"
    prov = feed.provenance
    assert prov.database_type == GEOFEED_TYPE
    assert prov.sha256 == hashlib.sha256(RFC_EXAMPLE).hexdigest()
    table: PrefixTable[int] = PrefixTable()
    for e in feed.entries:
        table.add(e.network, e.line)

    def line(ip: str) -> int | None:
        hit = table.lookup(ipaddress.ip_address(ip))
        return hit[1] if hit else None

    assert line("192.0.2.5") == 3  # most specific wins over 192.0.2.0/25
    assert line("192.0.2.6") == 2
    assert line("2001:db8:cafe::1") == 7
    assert line("2001:db8:1::1") == 6
    assert line("198.51.100.1") is None


def test_short_rows_and_no_location() -> None:
    entries = parse_geofeed(b"81.2.69.0/24\n81.2.70.0/24,se\n")
    assert [(e.country, e.region) for e in entries] == [(None, ""), ("SE", "")]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("81.2.69.0/33,GB,,,", "not an IP prefix"),
        ("81.2.69.1/24,GB,,,", "has host bits set"),
        ("81.2.69.0/24,GBR,,,", "alpha-2"),
        ("81.2.69.0/24,ZZ,,,", "alpha-2"),
        ("81.2.69.0/24,GB,FR-75,,", "region 'FR-75'"),
        ("81.2.69.0/24,GB,London,,", "region 'LONDON'"),
        ("81.2.69.0/24,GB,,,,extra", "6 fields"),
        ('81.2.69.0/24,"GB,,,', "not valid CSV"),
        ("81.2.68.0/24,GB\n81.2.68.0/24,FR", "already listed on line 2"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, row: str, problem: str) -> None:
    path = tmp_path / "feed.csv"
    path.write_text(f"# ok\n{row}\n")
    with pytest.raises(ConfigError) as info:
        load_geofeed(path)
    assert problem in info.value.problem
    assert info.value.path == str(path)
    assert info.value.key is not None and info.value.key.startswith("line ")
    assert info.value.key in ("line 2", "line 3")


def test_unreadable_and_binary(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read geofeed"):
        load_geofeed(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe81.2.69.0/24,GB")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_geofeed(bad)


def test_prefix_table_rejects_duplicates() -> None:
    table: PrefixTable[str] = PrefixTable()
    table.add(ipaddress.ip_network("10.0.0.0/8"), "a")
    with pytest.raises(KeyError):
        table.add(ipaddress.ip_network("10.0.0.0/8"), "b")
    table.add(ipaddress.ip_network("::/0"), "default6")
    assert table.lookup(ipaddress.ip_address("2a00::1")) == (
        ipaddress.ip_network("::/0"),
        "default6",
    )
    assert table.lookup(ipaddress.ip_address("11.0.0.1")) is None
    assert len(table) == 2
