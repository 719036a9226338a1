"""The fast egress path gives exactly the verdicts of a straightforward reference judge.

Fast path: ``read_flows`` (vectorized) + ``EgressPolicy.evaluate_many`` (one decision per remote
address, integer ranges, cached GeoIP answers). Reference: ``read_flows(engine="scalar")`` and
the documented precedence written out below flow by flow with ``ipaddress`` objects, the
registry's ``classify`` and the ``maxminddb`` reader itself, nothing cached.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import maxminddb
import pytest
from maxminddb.errors import InvalidDatabaseError

from sentinel.flows import read_flows
from sentinel.geo import GeoDatabase, embedded_ipv4
from sentinel.geo.database import _map_record
from sentinel.geo.special import classify
from sentinel.policy.egress import EgressPolicy
from sentinel.records import Flow, GeoProvenance, GeoSecondOpinion, Verdict, VerdictKind

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "sentinel" / "demo" / "data"
NOW = datetime(2026, 6, 1, tzinfo=UTC)

#: every step of the precedence: deny, waivers (one expired, one with ports), allow, local,
#: overrides (nested, country and allow), a geofeed, GeoIP
POLICY = """
jurisdiction:
  name: test
  allow_countries: [EEA, CH]
  allow_networks: [203.0.113.0/24, "2a02:c0::/29"]
  deny_networks: [5.0.0.0/8, "2c0f::/16"]
  unknown: {unknown}
local_networks: [10.20.0.0/24, "fd00:20::/64", 100.64.0.0/10]
waivers:
  - {{id: W-live, network: 81.0.0.0/8, ports: [443, 53], justification: j, approver: a,
     expires: "2026-12-31T00:00:00Z"}}
  - {{id: W-old, network: 89.0.0.0/8, justification: j, approver: a,
     expires: "2026-03-01T00:00:00Z"}}
  - {{id: W-v6, network: "2001:200::/23", justification: j, approver: a,
     expires: "2026-09-01T00:00:00Z"}}
overrides:
  - {{network: 1.0.0.0/8, country: DE}}
  - {{network: 1.1.0.0/16, allow: true, justification: cdn}}
  - {{network: "2600::/12", country: US}}
  - {{network: 2.0.0.0/8, country: SE}}
geofeeds: [feed.csv]
"""
FEED = "3.0.0.0/8,FR,,,\n3.3.0.0/16,,,,\n2400::/12,JP,,,\n"


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Reference:
    """The precedence of ``sentinel.policy.egress`` written out plainly, one flow at a time."""

    def __init__(self, policy: EgressPolicy, primary: Path | None, second: Path | None) -> None:
        self.policy = policy
        self.model = policy.model
        self.sha = policy.sha256 or None
        self.db = maxminddb.open_database(str(primary)) if primary else None
        self.second = maxminddb.open_database(str(second)) if second else None
        self.prov = _provenance(primary)
        self.prov2 = _provenance(second)

    def close(self) -> None:
        for db in (self.db, self.second):
            if db is not None:
                db.close()

    @staticmethod
    def locate(reader: Any, addr: Address) -> str | None:
        """Country, ``None`` when unknown; raises InvalidDatabaseError on a corrupt record."""
        special = classify(addr)
        if reader is None or (special is not None and special.scope != "embedded"):
            return None
        if addr.version == 6 and reader.metadata().ip_version == 4:
            return None
        return _map_record(reader.get(addr))[0]

    def judge(self, flow: Flow, now: datetime) -> Verdict:
        """A flow marked ``orientation_unknown`` is judged from both ends; the worse verdict
        is kept (a violation for a known reason, then ``unknown location`` — a violation
        before an allowed one —, then waived, then allowed), the flow as given on a tie."""
        verdict = self.judge_oriented(flow, now)
        if not flow.orientation_unknown:
            return verdict
        other = self.judge_oriented(flow.swapped(), now)
        return other if _rank(other) > _rank(verdict) else verdict

    def judge_oriented(self, flow: Flow, now: datetime) -> Verdict:
        m, sha = self.model, self.sha
        addr = embedded_ipv4(ipaddress.ip_address(flow.remote_ip))
        if _within(addr, m.jurisdiction.deny_networks):
            country = self.locate(self.db, addr)
            return Verdict(flow, "violation", "foreign country", country, "deny_networks",
                           geo=self.prov, policy_sha256=sha)  # fmt: skip
        expired = None
        for w in m.waivers:
            ports = not w.ports or flow.remote_port in w.ports or flow.local_port in w.ports
            if _within(addr, [w.network]) and ports:
                if now < w.expires:
                    return Verdict(flow, "waived", "waiver", None, w.id, waiver_id=w.id,
                                   policy_sha256=sha)  # fmt: skip
                expired = expired or w
        verdict = self.steps_3_to_7(flow, addr)
        if expired is not None and verdict.verdict == "violation":
            return Verdict(flow, "violation", "expired waiver", verdict.country, expired.id,
                           geo=verdict.geo, waiver_id=expired.id, policy_sha256=sha,
                           secondary=verdict.secondary)  # fmt: skip
        return verdict

    def steps_3_to_7(self, flow: Flow, addr: Address) -> Verdict:
        m, sha = self.model, self.sha
        if _within(addr, m.jurisdiction.allow_networks):
            return Verdict(flow, "allowed", "allowed network", None, "allow_networks",
                           policy_sha256=sha)  # fmt: skip
        if _within(addr, m.local_networks):
            return Verdict(flow, "allowed", "internal", None, "local_networks", policy_sha256=sha)
        special = classify(addr)
        if special is not None and special.scope == "internal":
            return Verdict(flow, "allowed", "internal", None, "internal-ranges",
                           policy_sha256=sha)  # fmt: skip
        overrides = [o for o in m.overrides if _within(addr, [o.network])]
        if overrides:
            o = max(overrides, key=lambda o: o.network.prefixlen)
            if o.allow:
                return Verdict(flow, "allowed", "allowed network", None,
                               f"override:{o.network}", policy_sha256=sha)  # fmt: skip
            return self.by_country(flow, o.country, f"override:{o.network}", None)
        rows = [(f, e) for f in self.policy.geofeeds for e in f.entries
                if _within(addr, [e.network])]  # fmt: skip
        if rows:
            feed, entry = max(rows, key=lambda fe: fe[1].network.prefixlen)
            rule = f"geofeed:{feed.path.name}:{entry.line}"
            return self.by_country(flow, entry.country, rule, feed.provenance)
        try:
            country = self.locate(self.db, addr)
        except InvalidDatabaseError:
            return Verdict(flow, "violation", "unknown location", None, "geoip-lookup-error",
                           geo=self.prov, policy_sha256=sha)  # fmt: skip
        opinion = None
        if self.second is not None and self.prov2 is not None:
            try:
                other = self.locate(self.second, addr)
            except InvalidDatabaseError:
                other = None
            disagrees = country is not None and other is not None and other != country
            opinion = GeoSecondOpinion(other, self.prov2, disagrees)
        return self.by_country(flow, country, "jurisdiction", self.prov, opinion)

    def by_country(
        self,
        flow: Flow,
        country: str | None,
        rule: str,
        geo: GeoProvenance | None,
        opinion: GeoSecondOpinion | None = None,
    ) -> Verdict:
        sha = self.sha
        if country is None:
            kind: VerdictKind = (
                "allowed" if self.model.jurisdiction.unknown == "allow" else "violation"
            )
            return Verdict(flow, kind, "unknown location", None, rule, geo=geo,
                           policy_sha256=sha, secondary=opinion)  # fmt: skip
        ok = country in self.policy.allowed_countries
        return Verdict(flow, "allowed" if ok else "violation",
                       "allowed country" if ok else "foreign country", country, rule, geo=geo,
                       policy_sha256=sha, secondary=opinion)  # fmt: skip


def _rank(v: Verdict) -> tuple[int, int]:
    violation = int(v.verdict == "violation")
    if v.reason == "unknown location":
        return 2, violation
    if violation:
        return 3, 0
    return (1 if v.verdict == "waived" else 0), 0


def _within(addr: Address, networks: Iterable[Network]) -> bool:
    return any(addr.version == n.version and addr in n for n in networks)


def _provenance(path: Path | None) -> GeoProvenance | None:
    if path is None:
        return None
    with GeoDatabase.open(path) as db:
        return db.provenance


def _policy(tmp_path: Path, unknown: str = "violation") -> EgressPolicy:
    (tmp_path / "feed.csv").write_text(FEED)
    (tmp_path / "policy.yaml").write_text(POLICY.format(unknown=unknown))
    return EgressPolicy.load(tmp_path / "policy.yaml")


def _compare(
    flows_fast: list[Flow],
    flows_ref: list[Flow],
    policy: EgressPolicy,
    primary: Path | None,
    second: Path | None = None,
) -> set[tuple[str, str]]:
    """Fast and reference verdicts at NOW and at each flow's own time are equal; returns the
    (reason, rule kind) pairs seen."""
    assert flows_fast == flows_ref
    seen: set[tuple[str, str]] = set()
    ref = Reference(policy, primary, second)
    db = GeoDatabase.open(primary) if primary else None
    db2 = GeoDatabase.open(second) if second else None
    try:
        for when in (NOW, None):
            fast = policy.evaluate_many(flows_fast, db, when, secondary=db2)
            slow = [ref.judge(f, when or f.last_seen) for f in flows_ref]
            for got, want in zip(fast, slow, strict=True):
                assert got == want, (got.flow.remote_ip, got, want)
            one = [policy.evaluate(f, db, when or f.last_seen, secondary=db2) for f in flows_fast]
            assert one == slow
            seen |= {(v.reason, v.rule.split(":")[0]) for v in fast}
    finally:
        ref.close()
        for d in (db, db2):
            if d is not None:
                d.close()
    assert flows_fast
    return seen


def _random_remote(rnd: random.Random) -> str:
    """Addresses from every kind of space: public v4/v6, special, embedded IPv4, unallocated."""
    kind = rnd.randrange(10)
    v4 = ipaddress.IPv4Address(rnd.getrandbits(32))
    if kind <= 3:
        return str(v4)
    if kind == 4:
        return str(ipaddress.IPv6Address((rnd.choice([0x2001, 0x2400, 0x2600, 0x2A02, 0x2C0F,
                                                      0x2002, 0x3000, 0xFD00]) << 112)
                                         | rnd.getrandbits(112)))  # fmt: skip
    if kind == 5:  # IPv4-mapped, NAT64, IPv4-compatible
        prefix = rnd.choice([0xFFFF << 32, int(ipaddress.IPv6Address("64:ff9b::")), 0])
        return str(ipaddress.IPv6Address(prefix | int(v4)))
    if kind == 6:  # 6to4 and Teredo
        if rnd.random() < 0.5:
            return str(ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80)))
        return str(ipaddress.IPv6Address((0x20010000 << 96) | (int(v4) ^ 0xFFFFFFFF)))
    if kind == 7:  # inside the policy's networks
        return rnd.choice(["1.1.2.3", "1.2.3.4", "2.3.4.5", "3.3.1.1", "3.4.5.6", "5.6.7.8",
                           "81.2.69.142", "89.160.20.112", "203.0.113.9", "100.64.1.1",
                           "2001:218::1", "2400:cb00::1", "2600:1f00::1", "2c0f:fb50::1",
                           "2a02:c0::9"])  # fmt: skip
    return str(ipaddress.ip_address(rnd.getrandbits(32) & 0xFF0FFFFF))


def _flows(count: int, seed: int) -> list[Flow]:
    rnd = random.Random(seed)
    remotes = [_random_remote(rnd) for _ in range(count // 2)]
    flows = []
    for i in range(count):
        t = datetime(2026, 1, 1, tzinfo=UTC).timestamp() + rnd.randrange(300 * 86400)
        seen = datetime.fromtimestamp(t, UTC)
        flows.append(Flow(rnd.choice([6, 17, 1]), "10.20.0.5", rnd.choice([443, 40000]),
                          rnd.choice(remotes), rnd.choice([443, 53, 80, 8443]), 1 + i % 7,
                          i % 5, 100 * i, 40 * i, seen, seen))  # fmt: skip
    return flows


@pytest.mark.parametrize("unknown", ["violation", "allow"])
def test_random_addresses_with_every_policy_step(
    tmp_path: Path, dbip_path: Path, corpus: Path, unknown: str
) -> None:
    flows = _flows(6000, seed=5 if unknown == "allow" else 4)
    second = corpus / "geoip" / "GeoLite2-City-Test.mmdb"
    seen = _compare(flows, flows, _policy(tmp_path, unknown), dbip_path, second)
    assert {reason for reason, _ in seen} == {
        "internal", "allowed country", "allowed network", "foreign country", "unknown location",
        "waiver", "expired waiver",
    }  # fmt: skip
    rules = {rule for _, rule in seen}
    assert {"deny_networks", "allow_networks", "local_networks", "internal-ranges", "override",
            "geofeed", "jurisdiction", "W-live", "W-old", "W-v6"} <= rules  # fmt: skip


def test_corpus_captures(tmp_path: Path, dbip_path: Path, corpus: Path) -> None:
    files = sorted(
        p
        for p in (corpus / "pcap").rglob("*")
        if ".pcap" in p.name and not p.name.endswith(".zst") and p.parent.name != "derived"
    )
    assert len(files) > 100
    local = ["10.0.0.0/8", "192.168.0.0/16"]
    fast, _ = read_flows(files, local)
    ref, _ = read_flows(files, local, engine="scalar")
    assert len(fast) > 300
    seen = _compare(fast, ref, _policy(tmp_path), dbip_path)
    assert {"internal", "foreign country", "allowed country"} <= {r for r, _ in seen}


def test_demo_capture(dbip_path: Path, corpus: Path) -> None:
    policy = EgressPolicy.load(DEMO / "policy.yaml")
    capture = DEMO / "registry-egress.pcap"
    fast, _ = read_flows([capture], policy.local_networks)
    ref, _ = read_flows([capture], policy.local_networks, engine="scalar")
    assert len(fast) > 5
    assert {"waiver", "expired waiver", "foreign country"} <= {
        r for r, _ in _compare(fast, ref, policy, dbip_path)
    }
    # no database: every public address is an unknown location
    assert ("unknown location", "jurisdiction") in _compare(fast, ref, policy, None)


def test_broken_database_fails_closed_the_same_way(corpus: Path) -> None:
    broken = corpus / "geoip" / "MaxMind-DB-test-broken-pointers-24.mmdb"
    seen_at = datetime(2026, 5, 1, tzinfo=UTC)
    flows = [
        Flow(6, "10.20.0.5", 40000, str(ip), 443, 1, 1, 60, 60, seen_at, seen_at)
        for ip in [*ipaddress.ip_network("1.1.1.0/27"), *ipaddress.ip_network("1.1.1.32/29")]
    ]
    seen = _compare(flows, flows, EgressPolicy.load(DEMO / "policy.yaml"), broken)
    assert ("unknown location", "geoip-lookup-error") in seen


def test_addresses_at_every_network_edge(tmp_path: Path, dbip_path: Path) -> None:
    """The compiled policy changes answers exactly at network boundaries: the first and last
    address of every network of the policy, overrides and geofeed, and their neighbours."""
    policy = _policy(tmp_path)
    m = policy.model
    nets = [*m.jurisdiction.allow_networks, *m.jurisdiction.deny_networks, *m.local_networks]
    nets += [w.network for w in m.waivers] + [o.network for o in m.overrides]
    nets += [e.network for feed in policy.geofeeds for e in feed.entries]
    seen_at = datetime(2026, 5, 1, tzinfo=UTC)
    remotes = set()
    for n in nets:
        top = (1 << n.max_prefixlen) - 1
        for value in (int(n.network_address), int(n.broadcast_address)):
            for edge in (value - 1, value, value + 1):
                if 0 <= edge <= top:
                    remotes.add(str(ipaddress.ip_address(edge) if n.version == 4 else
                                    ipaddress.IPv6Address(edge)))  # fmt: skip
    flows = [Flow(6, "10.20.0.5", 40000, r, 443, 1, 1, 60, 60, seen_at, seen_at)
             for r in sorted(remotes)]  # fmt: skip
    assert len(flows) > 90
    seen = _compare(flows, flows, policy, dbip_path)
    assert {"override", "geofeed", "deny_networks", "W-live"} <= {r for _, r in seen}
