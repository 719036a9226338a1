"""GeoIP lookups against the MaxMind test databases, the IPinfo samples and broken databases."""

from __future__ import annotations

import csv
import ipaddress
from pathlib import Path

import pytest

from sentinel.errors import GeoIPError
from sentinel.geo import EEA, EU, GeoDatabase, clean_country, embedded_ipv4

# RFC 4380 Teredo: the client is the inverted last 32 bits. The test DBs alias 2001::/32 by the
# *server* field (bits 32-63), and geoip2 does not normalize, so the CSV row for
# 2001:0:5102:458e::1 says GB (the server 81.2.69.142). Sentinel locates the client
# (here ~0.0.0.1 = 255.255.255.254, in no database): the one deliberate difference.
TEREDO_ROW = "2001:0:5102:458e::1"
# RFC 6052: 64:ff9b::/96 carries the IPv4 destination in its last 32 bits; geoip2 looks up the
# IPv6 address itself (not found), Sentinel the IPv4 address behind the translator.
NAT64_ROW = "64:ff9b::5102:458e"


def _rows(corpus: Path) -> list[dict[str, str]]:
    with (corpus / "geoip" / "expected-lookups.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_expected_lookups(corpus: Path) -> None:
    rows = _rows(corpus)
    assert len(rows) == 200
    dbs: dict[str, GeoDatabase] = {}
    try:
        for row in rows:
            db = dbs.get(row["database"]) or GeoDatabase.open(corpus / "geoip" / row["database"])
            dbs[row["database"]] = db
            got = db.lookup(row["ip"])
            if row["ip"] == TEREDO_ROW:
                assert got.found is False and got.country is None
                continue
            if row["ip"] == NAT64_ROW:
                assert got == db.lookup("81.2.69.142")
                continue
            if row["result"] == "AddressNotFoundError":
                assert not got.found and got.country is None, row
            else:
                assert got.found, row
                assert got.country == (row["country_iso"] or None), row
                assert got.continent == (row["continent"] or None), row
    finally:
        for db in dbs.values():
            db.close()


def test_location_not_registration(corpus: Path) -> None:
    with GeoDatabase.open(corpus / "geoip/GeoIP2-City-Test.mmdb") as db:
        assert db.lookup("2.125.160.216").country == "GB"  # registered in FR
        assert db.lookup("89.160.20.112").country == "SE"
        assert db.lookup("175.16.199.1").country == "CN"
        assert db.lookup("81.2.69.142").network == "81.2.69.142/31"


def test_teredo_client_and_6to4(corpus: Path) -> None:
    # Teredo with client 81.2.69.142 (inverted: aefd:ba71) behind server 65.54.227.120
    teredo = "2001:0:4136:e378:8000:63bf:aefd:ba71"
    assert str(embedded_ipv4(ipaddress.ip_address(teredo))) == "81.2.69.142"
    assert str(embedded_ipv4(ipaddress.ip_address("2002:5102:458e::1"))) == "81.2.69.142"
    assert str(embedded_ipv4(ipaddress.ip_address("::81.2.69.142"))) == "81.2.69.142"
    assert str(embedded_ipv4(ipaddress.ip_address("::1"))) == "::1"
    with GeoDatabase.open(corpus / "geoip/GeoLite2-Country-Test.mmdb") as db:
        assert db.lookup(teredo).country == "GB"


def test_provenance(corpus: Path) -> None:
    import hashlib

    path = corpus / "geoip/GeoIP2-Country-Test.mmdb"
    with GeoDatabase.open(path) as db:
        prov = db.provenance
    assert prov.database_type == "GeoIP2-Country"
    assert prov.build_epoch == 1770245369
    assert prov.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_continent_only_and_anycast_records_have_no_country(corpus: Path) -> None:
    with GeoDatabase.open(corpus / "geoip/GeoIP2-Country-Test.mmdb") as db:
        cont = db.lookup("2a02:d500::1")
        assert cont.found and cont.country is None and cont.continent == "EU"
        anycast = db.lookup("214.1.1.1")
        assert anycast.found and anycast.country is None


@pytest.mark.parametrize(
    ("name", "schema_key"),
    [("ipinfo_lite_sample", "country_code"), ("ip_country_sample", "country")],
)
def test_ipinfo_samples_match_their_csv(corpus: Path, name: str, schema_key: str) -> None:
    base = corpus / "geoip" / "ipinfo"
    with (base / f"{name}.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 100
    with GeoDatabase.open(base / f"{name}.mmdb") as db:
        for row in rows:
            first = row.get("network", "").split("/")[0] or row["start_ip"]
            got = db.lookup(first)
            assert got.country == clean_country(row[schema_key]), row
        # IPv4-only sample: IPv6 that is not an embedded IPv4 is simply not found
        assert db.lookup("2001:218::1").found is False
        assert db.lookup("::ffff:1.0.0.1").country == "AU"


def test_ipv6_on_ipv4_only_database(corpus: Path) -> None:
    with GeoDatabase.open(corpus / "geoip/MaxMind-DB-test-ipv4-24.mmdb") as db:
        assert db.ip_version == 4
        assert db.lookup("2001:218::1").found is False
        assert db.lookup_errors == 0


@pytest.mark.parametrize(
    "name", ["GeoIP2-City-Test-Invalid-Node-Count.mmdb", "MaxMind-DB-test-decoder.mmdb.missing"]
)
def test_unopenable_databases(corpus: Path, name: str) -> None:
    with pytest.raises(GeoIPError, match=name):
        GeoDatabase.open(corpus / "geoip" / name)


def test_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(GeoIPError, match="not a valid MaxMind DB"):
        GeoDatabase.open(junk)


@pytest.mark.parametrize(
    ("name", "net"),
    [
        ("GeoIP2-City-Test-Broken-Double-Format.mmdb", "2.125.160.0/24"),
        ("MaxMind-DB-test-broken-pointers-24.mmdb", "1.1.1.0/27"),
    ],
)
def test_broken_records_are_unknown_and_counted(corpus: Path, name: str, net: str) -> None:
    with GeoDatabase.open(corpus / "geoip" / name) as db:
        results = [db.lookup(ip) for ip in ipaddress.ip_network(net)]
        assert db.lookup_errors > 0
        assert sum(1 for r in results if not r.found) >= db.lookup_errors


def test_pseudo_codes_rejected() -> None:
    for code in ("EU", "AP", "A1", "A2", "O1", "ZZ", "XX", "None", "", None, "GBR", "1A"):
        assert clean_country(code) is None
    assert clean_country("se") == "SE"


def test_groups() -> None:
    assert len(EU) == 27 and len(EEA) == 30
    assert {"IS", "LI", "NO"} <= EEA and not {"IS", "LI", "NO", "GB", "CH"} & EU
    assert "GR" in EU and "EL" not in EU
