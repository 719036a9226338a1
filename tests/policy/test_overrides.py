"""Operator overrides, RFC 8805 geofeeds and a second database in the egress policy."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel.errors import ConfigError
from sentinel.geo import GeoDatabase, GeoHandle
from sentinel.policy.egress import EgressPolicy, evaluate_all
from sentinel.records import REASONS, Flow

NOW = datetime(2026, 1, 1, tzinfo=UTC)

POLICY = """
jurisdiction: {allow_countries: [EEA]}
local_networks: [10.20.0.0/24]
overrides:
  - {network: 81.2.69.0/24, country: SE}            # GeoIP says GB
  - {network: 81.2.69.160/27, country: US}          # more specific wins
  - {network: 175.16.199.0/24, allow: true, justification: "provider's EU PoP, contract 42"}
  - {network: 192.31.196.0/24, country: SE}         # AS112 anycast run in-country
geofeeds: [feeds/provider.csv]
"""

FEED = """\
# provider's RFC 8805 feed
2.125.160.0/24,FR,FR-IDF,Paris,
2.125.160.216/32,,,,
89.160.20.0/24,US,US-CA,,
81.2.69.0/24,CN,,,
"""


def flow(remote: str) -> Flow:
    return Flow(6, "10.20.0.5", 50000, remote, 443, 3, 2, 1000, 100, NOW, NOW)


@pytest.fixture
def policy(tmp_path: Path) -> EgressPolicy:
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "provider.csv").write_text(FEED)
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return EgressPolicy.load(path)


@pytest.mark.parametrize(
    ("remote", "verdict", "reason", "country", "rule", "geo_type"),
    [
        ("81.2.69.142", "allowed", "allowed country", "SE", "override:81.2.69.0/24", None),
        ("81.2.69.160", "violation", "foreign country", "US", "override:81.2.69.160/27", None),
        ("175.16.199.1", "allowed", "allowed network", None, "override:175.16.199.0/24", None),
        ("192.31.196.1", "allowed", "allowed country", "SE", "override:192.31.196.0/24", None),
        ("2.125.160.1", "allowed", "allowed country", "FR", "geofeed:provider.csv:2",
         "RFC8805-geofeed"),
        ("2.125.160.216", "violation", "unknown location", None, "geofeed:provider.csv:3",
         "RFC8805-geofeed"),
        ("89.160.20.112", "violation", "foreign country", "US", "geofeed:provider.csv:4",
         "RFC8805-geofeed"),
        ("::ffff:89.160.20.112", "violation", "foreign country", "US", "geofeed:provider.csv:4",
         "RFC8805-geofeed"),
        ("216.160.83.56", "violation", "foreign country", "US", "jurisdiction", "GeoIP2-City"),
        ("10.1.2.3", "allowed", "internal", None, "internal-ranges", None),
    ],
)  # fmt: skip
def test_precedence(
    policy: EgressPolicy,
    geo: GeoDatabase,
    remote: str,
    verdict: str,
    reason: str,
    country: str | None,
    rule: str,
    geo_type: str | None,
) -> None:
    v = policy.evaluate(flow(remote), geo, NOW)
    assert (v.verdict, v.reason, v.country, v.rule) == (verdict, reason, country, rule)
    assert v.reason in REASONS
    assert (v.geo.database_type if v.geo else None) == geo_type
    assert v.secondary is None and "geoip_secondary" not in v.to_json()


def test_geofeed_provenance_is_the_file(policy: EgressPolicy, geo: GeoDatabase) -> None:
    (feed,) = policy.geofeeds
    v = policy.evaluate(flow("2.125.160.1"), geo, NOW)
    assert v.geo == feed.provenance and feed.path.name == "provider.csv"
    assert len(feed.sha256) == 64


def test_malformed_geofeed_fails_the_policy(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "provider.csv").write_text(FEED + "89.160.21.0/24,Sweden,,,\n")
    (tmp_path / "policy.yaml").write_text(POLICY)
    with pytest.raises(ConfigError) as info:
        EgressPolicy.load(tmp_path / "policy.yaml")
    assert info.value.path.endswith("provider.csv") and info.value.key == "line 6"


def test_same_prefix_in_two_geofeeds(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("81.2.69.0/24,SE\n")
    (tmp_path / "b.csv").write_text("# b\n81.2.69.0/24,FR\n")
    (tmp_path / "p.yaml").write_text("jurisdiction: {}\ngeofeeds: [a.csv, b.csv]\n")
    with pytest.raises(ConfigError, match="another geofeed") as info:
        EgressPolicy.load(tmp_path / "p.yaml")
    assert info.value.key == "line 2"


@pytest.mark.parametrize(
    ("overrides", "key", "problem"),
    [
        ("[{network: 1.2.3.0/24}]", "overrides.0", "either"),
        ("[{network: 1.2.3.0/24, country: SE, allow: true, justification: j}]", "overrides.0",
         "either"),
        ("[{network: 1.2.3.0/24, allow: true}]", "overrides.0", "justification"),
        ("[{network: 1.2.3.0/24, country: se}]", "overrides.0.country", "alpha-2"),
        ("[{network: 1.2.3.0/24, country: EU}]", "overrides.0.country", "alpha-2"),
        ("[{network: 1.2.3.400/24, country: SE}]", "overrides.0.network", "CIDR"),
        ("[{network: 1.2.3.0/24, country: SE}, {network: 1.2.3.0/24, country: FR}]",
         "overrides.1.network", "twice"),
    ],
)  # fmt: skip
def test_override_errors_name_the_key(tmp_path: Path, overrides: str, key: str,
                                      problem: str) -> None:  # fmt: skip
    path = tmp_path / "p.yaml"
    path.write_text(f"jurisdiction: {{}}\noverrides: {overrides}\n")
    with pytest.raises(ConfigError) as info:
        EgressPolicy.load(path)
    assert info.value.key == key
    assert problem in info.value.problem


def test_second_database_flags_disagreement(corpus: Path, dbip: GeoDatabase) -> None:
    pol = EgressPolicy.from_yaml(b"jurisdiction: {allow_countries: [EEA]}")
    with GeoDatabase.open(corpus / "geoip" / "GeoIP2-City-Test.mmdb") as test_db:
        flows = [flow("2a02:cf40::1"), flow("81.2.69.142"), flow("8.8.8.8"), flow("10.0.0.1")]
        out = evaluate_all(flows, pol, test_db, NOW, secondary=dbip)
    # the MaxMind test data is fake: it puts 2a02:cf40::/29 in NO, DB-IP in DK
    first = out[0]
    assert (first.country, first.verdict) == ("NO", "allowed")  # the primary decides
    assert first.secondary is not None
    assert (first.secondary.country, first.secondary.disagrees) == ("DK", True)
    assert first.secondary.geo == dbip.provenance
    body = json.loads(json.dumps(first.to_json()))
    assert body["geoip_secondary"]["disagrees"] is True
    assert body["geoip_secondary"]["geoip"]["sha256"] == dbip.provenance.sha256
    gb = out[1].secondary
    assert gb is not None and (gb.country, gb.disagrees) == ("GB", False)
    unknown = out[2]  # not in the test DB: no country, so nothing to disagree with
    assert unknown.reason == "unknown location" and unknown.secondary is not None
    assert (unknown.secondary.country, unknown.secondary.disagrees) == ("US", False)
    assert out[3].secondary is None  # internal: no lookup at all


def test_evaluate_accepts_a_handle(tmp_path: Path, corpus: Path) -> None:
    path = tmp_path / "db.mmdb"
    shutil.copyfile(corpus / "geoip" / "GeoIP2-City-Test.mmdb", path)
    pol = EgressPolicy.from_yaml(b"jurisdiction: {allow_countries: [EEA]}")
    with GeoHandle.open(path) as handle:
        v = pol.evaluate(flow("89.160.20.112"), handle, NOW)
        assert (v.country, v.geo) == ("SE", handle.provenance)
        [w] = evaluate_all([flow("81.2.69.142")], pol, handle, NOW, secondary=handle)
        assert w.secondary is not None and not w.secondary.disagrees


def test_cli_json_shows_the_second_opinion(corpus: Path, dbip_path: Path) -> None:
    from click.testing import CliRunner

    from sentinel.cli.main import cli
    from sentinel.resources import demo_dir

    repo = Path(__file__).resolve().parents[2]
    args = ["egress", "check", "--pcap", str(demo_dir() / "registry-egress.pcap"), "--json",
            "--geoip", str(corpus / "geoip" / "GeoIP2-City-Test.mmdb"),
            "--geoip-secondary", str(dbip_path),
            "--policy", str(repo / "rules" / "egress-policy.yaml"),
            "--now", "2026-01-01T00:00:00Z"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    looked_up = [r for r in rows if r["geoip"] is not None]
    assert looked_up and all(r["geoip_secondary"]["geoip"]["database_type"] == "DBIP-City-Lite"
                             for r in looked_up)  # fmt: skip
    assert {r["remote_ip"]: r["geoip_secondary"]["country"] for r in looked_up}["9.9.9.9"] == "CH"
    assert all("geoip_secondary" not in r for r in rows if r["geoip"] is None)
    assert "0 GeoIP disagreement(s) with the second database" in result.stderr
