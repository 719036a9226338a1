"""IANA special-purpose and unallocated ranges: a database's fill-in data never gives a country."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import maxminddb
import pytest

from sentinel.geo import GeoDatabase
from sentinel.geo.special import (
    GLOBAL_UNICAST,
    IPV4_SPECIAL,
    IPV6_ALLOCATED,
    IPV6_RESERVED,
    IPV6_SPECIAL,
    classify,
)
from sentinel.policy.egress import INTERNAL_NETWORKS, EgressPolicy
from sentinel.records import Flow

#: the internal-range list the policy used before the registry tables (kept to verify them)
OLD_INTERNAL = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.2.0/24", "192.168.0.0/16", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128", "fc00::/7", "fe80::/10",
    "ff00::/8", "2001:db8::/32",
)  # fmt: skip
#: rows whose scope deliberately differs from "Globally Reachable = False → internal"
DEVIATIONS = {"64:ff9b:1::/48"}


def test_every_row_is_cited_and_scoped_by_reachability() -> None:
    rows = IPV4_SPECIAL + IPV6_SPECIAL
    assert len(IPV4_SPECIAL) == 27 and len(IPV6_SPECIAL) == 26
    assert len({r.network for r in rows}) == len(rows)
    for r in rows:
        assert r.name and r.rfc.startswith("RFC"), r
        if str(r.network) in DEVIATIONS or r.scope == "embedded":
            continue
        if r.globally_reachable is False:
            assert r.scope == "internal", r
        else:  # True (anycast services) or None (deprecated): location unknowable
            assert r.scope == "unknown", r
    embedded = {str(r.network) for r in rows if r.scope == "embedded"}
    assert embedded == {"::ffff:0:0/96", "64:ff9b::/96", "2001::/32", "2002::/16"}


def test_reserved_v6_blocks_tile_everything_outside_2000_3() -> None:
    outside = ipaddress.IPv6Network("::/0").address_exclude(ipaddress.IPv6Network("2000::/3"))
    listed = [r.network for r in IPV6_RESERVED] + [
        ipaddress.IPv6Network(n) for n in ("fc00::/7", "fe80::/10", "ff00::/8")
    ]
    total = sum(n.num_addresses for n in listed)
    assert total == sum(n.num_addresses for n in outside)
    assert all(not n.overlaps(ipaddress.IPv6Network("2000::/3")) for n in listed)


@pytest.mark.parametrize("net", OLD_INTERNAL)
def test_old_internal_list_is_covered_by_registry(net: str) -> None:
    network = ipaddress.ip_network(net)
    for addr in (network.network_address, network.broadcast_address):
        hit = classify(addr)
        assert hit is not None and hit.scope == "internal", (net, hit)
    assert any(network.subnet_of(n) for n in INTERNAL_NETWORKS if n.version == network.version)


@pytest.mark.parametrize(
    ("ip", "scope", "name"),
    [
        ("192.0.0.9", "unknown", "Port Control Protocol Anycast"),  # more specific than /24
        ("192.0.0.1", "internal", "IPv4 Service Continuity Prefix"),
        ("192.0.0.100", "internal", "IETF Protocol Assignments"),
        ("192.88.99.1", "unknown", "Deprecated (6to4 Relay Anycast)"),
        ("192.88.99.2", "internal", "6a44-relay anycast address"),
        ("198.19.255.255", "internal", "Benchmarking"),
        ("240.0.0.1", "internal", "Reserved"),
        ("2001:1::1", "unknown", "Port Control Protocol Anycast"),
        ("2001:5::1", "internal", "IETF Protocol Assignments"),
        ("3fff:fff::1", "internal", "Documentation"),
        ("5f00::1", "internal", "Segment Routing (SRv6) SIDs"),
        ("4000::1", "unallocated", "Reserved by IETF"),
        ("fec0::1", "unallocated", "Reserved by IETF"),
        ("100::1", "internal", "Discard-Only Address Block"),
        ("3ffe::1", "unallocated", "Not allocated by IANA (global unicast)"),  # ex-6bone
        ("2001:4e00::1", "unallocated", "Not allocated by IANA (global unicast)"),
    ],
)
def test_classify_most_specific(ip: str, scope: str, name: str) -> None:
    hit = classify(ipaddress.ip_address(ip))
    assert hit is not None and (hit.scope, hit.name) == (scope, name)


@pytest.mark.parametrize("ip", ["8.8.8.8", "81.2.69.142", "2a00:1450::1", "2a10::1", "2001:200::1"])
def test_ordinary_unicast_is_not_special(ip: str) -> None:
    assert classify(ipaddress.ip_address(ip)) is None


#: addresses DB-IP City Lite 2023-04 gives a country although no country can hold them
FILL_IN = {
    "4000::1": "CH",
    "8000::1": "CH",
    "c000::1": "CH",
    "e000::1": "CH",
    "fec0::1": "CH",
    "3fff::1": "CA",  # RFC 9637 documentation prefix
    "192.31.196.1": "US",  # AS112 anycast
    "192.175.48.1": "US",
    "2620:4f:8000::1": "US",
    "192.0.0.9": "ZZ",
    "3000::1": "CA",  # 2000::/3 space IANA never allocated
    "3ffe::1": "CA",
    "2d00::1": "CH",
    "2e00::1": "DE",
    "2001:4e00::1": "CH",
    "2a20::1": "CH",
}


def test_dbip_fill_in_is_ignored(dbip_path: Path, dbip: GeoDatabase) -> None:
    raw = maxminddb.open_database(str(dbip_path))
    try:
        for ip, country in FILL_IN.items():
            record = raw.get(ip)
            assert record is not None and record["country"]["iso_code"] == country, ip
            got = dbip.lookup(ip)
            assert got.country is None and not got.found and got.special, (ip, got)
    finally:
        raw.close()
    # ordinary addresses and the embedded forms still resolve
    assert dbip.lookup("2a00:1450::1").country == "IE"
    assert dbip.lookup("64:ff9b::808:808") == dbip.lookup("8.8.8.8")
    assert dbip.lookup("8.8.8.8").country == "US"


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _flow(remote: str) -> Flow:
    return Flow(6, "10.20.0.5", 50000, remote, 443, 1, 1, 100, 100, NOW, NOW)


@pytest.mark.parametrize(
    ("ip", "verdict", "reason", "rule"),
    [
        ("4000::1", "violation", "unknown location", "jurisdiction"),
        ("3000::1", "violation", "unknown location", "jurisdiction"),
        ("fec0::1", "violation", "unknown location", "jurisdiction"),
        ("192.31.196.1", "violation", "unknown location", "jurisdiction"),
        ("192.0.0.9", "violation", "unknown location", "jurisdiction"),
        ("3fff::1", "allowed", "internal", "internal-ranges"),
        ("240.0.0.1", "allowed", "internal", "internal-ranges"),
        ("198.18.0.1", "allowed", "internal", "internal-ranges"),
        ("5f00::1", "allowed", "internal", "internal-ranges"),
        ("64:ff9b::808:808", "violation", "foreign country", "jurisdiction"),
        ("64:ff9b::a00:1", "allowed", "internal", "internal-ranges"),  # NAT64 of 10.0.0.1
    ],
)
def test_policy_on_special_ranges(dbip: GeoDatabase, ip: str, verdict: str, reason: str,
                                  rule: str) -> None:  # fmt: skip
    policy = EgressPolicy.from_yaml(b"jurisdiction: {allow_countries: [EEA, CH, CA]}")
    v = policy.evaluate(_flow(ip), dbip, NOW)
    assert (v.verdict, v.reason, v.rule) == (verdict, reason, rule)
    assert v.country in (None, "US")


def _iana(name: str) -> list[dict[str, str]]:
    """Records of an IANA registry XML as shipped by netaddr (an independent copy)."""
    import xml.etree.ElementTree as ET

    import netaddr

    ns = {"i": "http://www.iana.org/assignments"}
    root = ET.parse(Path(netaddr.__file__).parent / "ip" / name).getroot()
    return [
        {child.tag.split("}")[1]: (child.text or "").strip() for child in rec}
        for rec in root.iterfind(".//i:record", ns)
    ]


def test_allocated_blocks_match_the_iana_registry() -> None:
    records = _iana("ipv6-unicast-address-assignments.xml")
    allocated = {
        ipaddress.IPv6Network(r["prefix"]) for r in records if r.get("status") == "ALLOCATED"
    }
    assert allocated == set(IPV6_ALLOCATED)
    for r in records:
        if r.get("status") == "RESERVED" and ipaddress.IPv6Network(r["prefix"]).subnet_of(
            GLOBAL_UNICAST
        ):
            hit = classify(ipaddress.IPv6Network(r["prefix"]).network_address)
            assert hit is not None and hit.scope in ("unallocated", "internal"), r


def test_reserved_blocks_match_the_iana_address_space() -> None:
    rows = {ipaddress.IPv6Network(r["prefix"]): r["description"]
            for r in _iana("ipv6-address-space.xml")}  # fmt: skip
    reserved = {n for n, d in rows.items() if d == "Reserved by IETF"}
    assert reserved == {r.network for r in IPV6_RESERVED}
    assert {n for n, d in rows.items() if d == "Global Unicast"} == {GLOBAL_UNICAST}
    v4 = {r["prefix"]: r["designation"] for r in _iana("ipv4-address-space.xml")}
    for first in range(224, 256):
        hit = classify(ipaddress.IPv4Address(f"{first}.1.2.3"))
        assert hit is not None and hit.scope == "internal"
        assert v4[f"{first:03d}/8"] in ("Multicast", "Future use")
