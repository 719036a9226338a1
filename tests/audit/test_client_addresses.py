"""Client addresses (issue 4, sweep finding 5): uvicorn's unbracketed IPv6 with a port,
IPv4-mapped addresses, and logged values that are not IP addresses — which must fail closed
in the foreign-client rule, never silently skip it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.audit.parsers import PARSERS
from sentinel.audit.parsers._distribution import split_addr
from sentinel.geo.database import GeoDatabase
from sentinel.policy.audit_rules import AuditRuleEngine, load_rule_file
from sentinel.policy.egress import EgressPolicy
from sentinel.records import AuditEvent

REPO = Path(__file__).resolve().parents[2]
MLFLOW = "registry-logs/mlflow-live/mlflow-3.17.2-uvicorn-access.log"
DIST = "registry-logs/distribution-live/registry-app-json.log"
GEOIP = "geoip/GeoIP2-City-Test.mmdb"


def _uvicorn_pull(corpus: Path, client: str) -> AuditEvent:
    lines = (corpus / MLFLOW).read_bytes().splitlines()
    line = next(x for x in lines if b"get-download-uri" in x)
    assert b"127.0.0.1:47172" in line
    (ev,) = PARSERS["mlflow-access"].parse(
        line.replace(b"127.0.0.1:47172", client.encode()), source="m", src_pos="f:0"
    )
    assert isinstance(ev, AuditEvent) and ev.action == "pull"
    return ev


def _dist_pull(corpus: Path, remoteaddr: str) -> AuditEvent:
    lines = (corpus / DIST).read_bytes().splitlines()
    line = next(x for x in lines if b"/manifests/v1" in x and b"response completed" in x)
    start = line.index(b'"http.request.remoteaddr":"') + len(b'"http.request.remoteaddr":"')
    end = line.index(b'"', start)
    raw = line[:start] + remoteaddr.encode() + line[end:]
    (ev,) = PARSERS["distribution-json"].parse(raw, source="d", src_pos="f:0")
    assert isinstance(ev, AuditEvent) and ev.action in ("pull", "push"), ev
    return ev


@pytest.mark.parametrize(
    ("client", "ip", "source"),
    [
        ("2001:db8::1:5000", "2001:db8::1", "socket"),  # uvicorn writes "%s:%d", no brackets
        ("[2001:db8::1]:5000", "2001:db8::1", "socket"),
        ("::ffff:81.2.69.142:40000", "81.2.69.142", "socket"),  # IPv4-mapped → IPv4
        ("2001:DB8::1:0", "2001:db8::1", "header"),  # port 0: proxy-headers rewrote it
        ("127.0.0.1:47172", "127.0.0.1", "socket"),
        # older uvicorn kept a port written in X-Forwarded-For inside the host, then ":0"
        ("203.0.113.7:1024:0", "203.0.113.7", "header"),
        ("[2001:db8::7]:8080:0", "2001:db8::7", "header"),
        ("::ffff:203.0.113.7:0", "203.0.113.7", "header"),
        # uvicorn 0.54 keeps that port: the line cannot be told from a direct connection
        # (documented in the parser: the deployment decides)
        ("203.0.113.7:1024", "203.0.113.7", "socket"),
    ],
)
def test_uvicorn_client_port_split(corpus: Path, client: str, ip: str, source: str) -> None:
    ev = _uvicorn_pull(corpus, client)
    assert (ev.client_ip, ev.client_ip_source) == (ip, source)


def test_split_addr_without_a_known_port_keeps_a_bare_ipv6_whole() -> None:
    # distribution's header addresses carry no port: a bare IPv6 is the address itself
    assert split_addr("2001:db8::1:5000") == ("2001:db8::1:5000", "header")
    assert split_addr("[::ffff:81.2.69.142]:1") == ("81.2.69.142", "socket")
    assert split_addr("203.0.113.7, 10.0.0.1") == ("203.0.113.7", "header")
    assert split_addr("unknown, 8.8.8.8") == ("unknown, 8.8.8.8", "header")


@pytest.mark.parametrize("value", ["not-an-ip", "client.local", "unknown, 8.8.8.8"])
def test_non_ip_client_is_kept_in_detail_and_fails_closed(corpus: Path, value: str) -> None:
    ev = _dist_pull(corpus, value)
    assert ev.client_ip is None and ev.client_ip_source == "header"
    assert ev.detail is not None and f"client address {value!r} is not an IP address" in (ev.detail)
    # the shipped foreign-client rule reports it (unknown location), as it would an
    # address GeoIP cannot place; before, the event was skipped silently
    rule = load_rule_file(REPO / "rules/audit/foreign-client-access.yaml")
    policy = EgressPolicy.load(REPO / "rules" / "egress-policy.yaml")
    with GeoDatabase.open(corpus / GEOIP) as geo:
        findings, _ = AuditRuleEngine([rule], geo=geo, policy=policy).observe([ev])
    (f,) = findings
    assert f.details["reason"] == "unknown location (not an IP address)"
    assert f.details["address_source"] == "header" and f.details["proof"] is False
    assert value in f.message


def test_ipv4_mapped_gb_client_gives_a_finding(corpus: Path) -> None:
    ev = _uvicorn_pull(corpus, "::ffff:81.2.69.142:40000")
    rule = load_rule_file(REPO / "rules/audit/foreign-client-access.yaml")
    policy = EgressPolicy.load(REPO / "rules" / "egress-policy.yaml")
    with GeoDatabase.open(corpus / GEOIP) as geo:
        findings, _ = AuditRuleEngine([rule], geo=geo, policy=policy).observe([ev])
    (f,) = findings
    assert (f.subject, f.details["country"], f.details["address_source"]) == (
        "81.2.69.142",
        "GB",
        "socket",
    )


def test_uvicorn_forwarded_non_ip_stays_in_detail(corpus: Path) -> None:
    # a trusted proxy passing "X-Forwarded-For: unknown" → uvicorn logs "unknown:0"
    ev = _uvicorn_pull(corpus, "unknown:0")
    assert (ev.client_ip, ev.client_ip_source) == (None, "header")
    assert ev.detail is not None and "client address 'unknown' is not an IP address" in ev.detail
