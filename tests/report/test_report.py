"""Report building (period filter, criteria statuses) and HTML rendering (escaping, override)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentinel.report.build import build_report
from sentinel.report.render import render_html, write_report

START = datetime(2026, 11, 29, tzinfo=UTC)
END = datetime(2026, 11, 30, tzinfo=UTC)


def _event(ts: str, action: str, actor: str | None = "alice", **extra: Any) -> dict[str, Any]:
    data = {
        "ts": ts,
        "source": "registry",
        "action": action,
        "outcome": "success",
        "actor": actor,
        "actor_verified": actor is not None,
        "artifact": "models/m",
        "reference": "v1",
        "client_ip": "127.0.0.1",
        "client_ip_source": "socket",
    }
    data.update(extra)
    return {"kind": "audit_event", "recorded_at": ts, "data": data}


def _summary(end: str, country: str, verdict: str) -> dict[str, Any]:
    return {
        "kind": "egress_summary",
        "recorded_at": end,
        "data": {
            "source": "pcap:x",
            "period_start": end,
            "period_end": end,
            "flows": 1,
            "by_country": {
                country: {
                    "flows": 1,
                    "packets": 3,
                    "bytes_out": 100,
                    "bytes_in": 5,
                    **({"violations": 1} if verdict == "violation" else {}),
                }
            },
            "by_verdict": {verdict: 1},
        },
    }


def test_period_filter_uses_event_time() -> None:
    records = [
        _event("2026-11-28T23:59:59.999999Z", "pull"),  # before
        _event("2026-11-29T10:00:00.000000Z", "pull"),
        _event("2026-11-30T00:00:00.000000Z", "pull"),  # end is exclusive
    ]
    data = build_report(records, start=START, end=END, verification={"status": "valid"})
    assert data["records_in_period"] == 1


def test_statuses_follow_the_evidence() -> None:
    clean = build_report(
        [
            _event("2026-11-29T10:00:00.000000Z", "push"),
            _summary("2026-11-29T10:00:00.000000Z", "DE", "allowed"),
        ],
        start=START,
        end=END,
        verification={"status": "valid"},
    )
    status = {c["key"]: c["status"] for c in clean["criteria"]}
    assert status == {
        "data_residency": "pass",
        "access_control": "pass",
        "vulnerability_scanning": "not checked yet",
        "replication": "not checked yet",
        "audit_logging": "pass",
    }

    bad = build_report(
        [
            _event(
                "2026-11-29T10:00:00.000000Z",
                "auth_failure",
                actor="mallory",
                actor_verified=False,
                outcome="failure",
            ),
            _summary("2026-11-29T10:00:00.000000Z", "US", "violation"),
            {
                "kind": "egress_violation",
                "recorded_at": "2026-11-29T10:00:00.000000Z",
                "data": {
                    "last_seen": "2026-11-29T10:00:00.000000Z",
                    "remote_ip": "52.95.110.1",
                    "remote_port": 443,
                    "country": "US",
                    "reason": "foreign country",
                },
            },
        ],
        start=START,
        end=END,
        verification={"status": "invalid", "first_bad_seq": 7},
    )
    status = {c["key"]: c["status"] for c in bad["criteria"]}
    assert status["data_residency"] == "fail"
    assert status["access_control"] == "attention"
    assert status["audit_logging"] == "fail"
    access = bad["criteria"][1]
    assert access["findings"] == [] and access["failure_count"] == 1
    residency = bad["criteria"][0]
    assert residency["by_country"]["US"]["violations"] == 1
    assert residency["violations"][0]["remote_ip"] == "52.95.110.1"

    empty = build_report([], start=START, end=END, verification=None)
    assert {c["status"] for c in empty["criteria"]} == {"no data", "not checked yet"}


def test_html_escapes_hostile_input(tmp_path: Path) -> None:
    evil = '<script>alert("x")</script>'
    data = build_report(
        [_event("2026-11-29T10:00:00.000000Z", "auth_failure", actor=evil, outcome="failure")],
        start=START,
        end=END,
        verification={"status": "valid"},
    )
    html = render_html(data)
    assert evil not in html
    assert "&lt;script&gt;" in html


def test_write_report_json_and_override_template(tmp_path: Path) -> None:
    data = build_report([], start=START, end=END, verification=None)
    write_report(data, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["period"]["from"].startswith("2026-11-29")
    custom = tmp_path / "tpl"
    custom.mkdir()
    (custom / "report.html.j2").write_text("custom {{ report.period.from }}")
    write_report(data, tmp_path / "r.html", template_dir=custom)
    assert (tmp_path / "r.html").read_text() == "custom 2026-11-29T00:00:00.000000Z"
    assert not list(tmp_path.glob(".r.html.*"))  # no temp file left behind


def test_audit_findings_are_listed() -> None:
    finding = {
        "kind": "audit_finding",
        "recorded_at": "2026-11-29T10:00:00.000000Z",
        "data": {
            "rule": "auth-failure-burst",
            "severity": "high",
            "status": "open",
            "count": 5,
            "message": "5 failed logins from 127.0.0.1",
            "last_seen": "2026-11-29T10:00:00.000000Z",
        },
    }
    data = build_report(
        [_event("2026-11-29T09:00:00.000000Z", "push"), finding],
        start=START,
        end=END,
        verification={"status": "valid"},
    )
    access = data["criteria"][1]
    assert access["status"] == "attention" and access["finding_hits"] == 5
    assert "5 failed logins from 127.0.0.1" in render_html(data)


def test_violations_show_their_dns_names_escaped(tmp_path: Path) -> None:
    evil = "<b>x</b>.example"
    COMMON = {  # noqa: N806
        "protocol": "tcp",
        "local_ip": "10.20.0.5",
        "local_port": 40600,
        "bytes_out": 1000,
        "geoip": None,
        "waiver_id": None,
    }
    data = build_report(
        [
            {
                "kind": "egress_violation",
                "recorded_at": "2026-11-29T10:00:00.000000Z",
                "data": {
                    "last_seen": "2026-11-29T10:00:00.000000Z",
                    "remote_ip": "3.5.140.1",
                    "remote_port": 443,
                    "country": "KR",
                    "reason": "foreign country",
                    **COMMON,
                    "remote_names": [
                        {
                            "name": "s3.ap-northeast-2.amazonaws.com",
                            "cnames": ["s3-r-w.ap-northeast-2.amazonaws.com"],
                            "answered_at": "2026-11-29T09:59:59.970000Z",
                            "ttl": 5,
                            "client": "10.20.0.5",
                            "resolver": "10.20.0.53",
                        },
                        {
                            "name": evil,
                            "cnames": [],
                            "answered_at": "2026-11-29T09:59:00.000000Z",
                            "ttl": 5,
                            "client": "10.20.0.5",
                            "resolver": "10.20.0.53",
                        },
                    ],
                },
            },
            {
                "kind": "egress_violation",
                "recorded_at": "2026-11-29T10:00:00.000000Z",
                "data": {
                    "last_seen": "2026-11-29T10:00:00.000000Z",
                    "remote_ip": "52.95.110.1",
                    "remote_port": 443,
                    "country": "US",
                    "reason": "foreign country",
                    **COMMON,
                },
            },
        ],
        start=START,
        end=END,
        verification=None,
    )
    html = render_html(data)
    assert 's3.ap-northeast-2.amazonaws.com</span> <span class="muted">via ' in html
    assert "s3-r-w.ap-northeast-2.amazonaws.com" in html and "TTL 5 s" in html
    assert evil not in html and "&lt;b&gt;x&lt;/b&gt;.example" in html
    assert "52.95.110.1:443</code></td>" in html  # no name: the address alone


def test_a_flow_time_outside_the_period_cannot_hide_a_violation() -> None:
    """An exporter with a wrong clock (NetFlow v5 header of 2023) judged today: the violation
    record carries the flow's own time, the summary the time it arrived; the residency verdict
    must fail, never say "none left" above a table of violations."""
    old_flow = {
        "kind": "egress_violation",
        "recorded_at": "2026-11-29T10:00:00.000000Z",  # recorded in the period
        "data": {
            "last_seen": "2023-04-04T08:00:00.000000Z",  # the flow's claimed time
            "remote_ip": "52.95.110.1",
            "remote_port": 443,
            "country": "US",
            "reason": "foreign country",
        },
    }
    summary = _summary("2026-11-29T10:00:00.000000Z", "US", "violation")
    both = build_report([old_flow, summary], start=START, end=END, verification=None)
    residency = both["criteria"][0]
    assert residency["status"] == "fail"
    assert residency["violation_count"] == 1 and residency["violations"][0]["country"] == "US"
    # the summary alone (violation records outside the period either way) still fails
    alone = build_report([summary], start=START, end=END, verification=None)
    residency = alone["criteria"][0]
    assert residency["status"] == "fail"
    assert residency["summary"].startswith("1 flow(s) left the jurisdiction (1 per the flow")
    # a violation both flown and recorded outside the period stays out
    old_flow["recorded_at"] = "2023-04-04T08:00:01.000000Z"
    gone = build_report([old_flow], start=START, end=END, verification=None)
    assert gone["criteria"][0]["status"] == "no data"


def _health(start: str, end: str, activity: int) -> dict[str, Any]:
    return {
        "kind": "sensor_health",
        "recorded_at": end,
        "data": {
            "source": "file:registry",
            "source_kind": "audit",
            "event": "summary",
            "period_start": start,
            "period_end": end,
            "counts": {"activity": activity, "silences": 0, "silent_seconds": 0},
        },
    }


def test_coverage_lists_the_time_no_sentinel_was_watching(tmp_path: Path) -> None:
    """Two runs of the daemon, stopped for ten minutes between them: summaries of one run abut,
    the stretch between the runs is listed as not watched and the coverage is not complete."""
    records = [
        _health("2026-11-29T10:00:00.000000Z", "2026-11-29T11:00:00.000000Z", 5),
        _health("2026-11-29T11:00:00.000000Z", "2026-11-29T11:30:00.000000Z", 3),  # stop
        _health("2026-11-29T11:40:00.000000Z", "2026-11-29T12:00:00.000000Z", 2),  # restart
    ]
    report = build_report(records, start=START, end=END, verification=None)
    cov = report["coverage"]
    (src,) = cov["sources"]
    assert src["unwatched"] == [
        {"from": "2026-11-29T11:30:00.000000Z", "to": "2026-11-29T11:40:00.000000Z", "seconds": 600}
    ]
    assert src["status"] == "gaps" and cov["status"] == "gaps"
    assert "1 stretch(es) not watched" in cov["summary"]
    html = render_html(report)
    assert "Not watched" in html and "2026-11-29T11:40:00.000000Z" in html
    one_run = build_report(records[:2], start=START, end=END, verification=None)
    assert one_run["coverage"]["status"] == "complete"
    assert one_run["coverage"]["sources"][0]["unwatched"] == []


def _capture_records(corpus: Path, name: str, *, summary: bool = False) -> list[dict[str, Any]]:
    """The ledger records the daemon writes for a corpus capture judged by the shipped policy
    (no GeoIP database: every public address is "unknown location"): one ``egress_violation``
    per violation (``Verdict.to_json``), and with ``summary`` the ``egress_summary``
    (``recorder.summarize``) first."""
    from sentinel.flows import read_flows
    from sentinel.policy.egress import EgressPolicy
    from sentinel.runtime.recorder import summarize

    policy = EgressPolicy.load(Path(__file__).resolve().parents[2] / "rules/egress-policy.yaml")
    flows, _ = read_flows([corpus / "pcap" / name], policy.local_networks)
    verdicts = policy.evaluate_many(flows, None)
    at = "2026-11-29T10:00:00.000000Z"
    records = [
        {"kind": "egress_violation", "recorded_at": at, "data": v.to_json()}
        for v in verdicts
        if v.verdict == "violation"
    ]
    if summary:
        body = summarize(verdicts, source="pcap-dir:x", start=START, end=START)
        body["period_end"] = at
        records.insert(0, {"kind": "egress_summary", "recorded_at": at, "data": body})
    return records


def test_ipv6_endpoints_are_bracketed(corpus: Path) -> None:
    """RFC 5952 §6: ``[2001:618:1:8000::5]:80``, never ``2001:618:1:8000::5:80``."""
    records = _capture_records(corpus, "pcapplusplus/four_ipv6_http_streams.pcap")
    assert len(records) == 4
    html = render_html(build_report(records, start=START, end=END, verification=None))
    assert "<code>[2001:618:1:8000::5]:80</code>" in html
    assert "<code>[2001:618:400::5199:cc70]:35995</code>" in html
    assert "2001:618:1:8000::5:80" not in html


def test_violations_with_unknown_orientation_are_marked_and_counted(corpus: Path) -> None:
    """four_ipv6_http_streams.pcap: neither end in the policy's local_networks; the table's
    "Local" address is only the end that did not decide — each such row says so, and the
    summary counts them with the advice to list the registry hosts in local_networks."""
    records = _capture_records(corpus, "pcapplusplus/four_ipv6_http_streams.pcap", summary=True)
    assert records[0]["data"]["orientation_unknown_public"] == 4
    data = build_report(records, start=START, end=END, verification=None)
    (residency,) = [c for c in data["criteria"] if c["key"] == "data_residency"]
    assert residency["summary"] == (
        "4 flow(s) left the jurisdiction. 4 flow(s) had neither end in local_networks and were "
        "judged from both ends (4 of the violation records), 4 of them between public "
        "addresses: list the registry hosts' addresses in local_networks so that Sentinel "
        "knows which end is ours"
    )
    html = render_html(data)
    assert html.count("orientation unknown: neither end in local_networks (both ends") == 4
    assert "list the registry hosts&#39; addresses in local_networks" in html


def test_special_purpose_only_flows_get_no_local_networks_advice(corpus: Path) -> None:
    """zeek linux_dlt_sll2.pcap: 192.0.2.1 and fe80:: talking to themselves — unoriented but
    internal from either end: not egress, no advice."""
    records = _capture_records(corpus, "zeek/linux_dlt_sll2.pcap", summary=True)
    (summary,) = records
    assert summary["data"]["orientation_unknown"] == 2
    assert summary["data"]["orientation_unknown_public"] == 0
    data = build_report(records, start=START, end=END, verification=None)
    (residency,) = [c for c in data["criteria"] if c["key"] == "data_residency"]
    assert residency["summary"] == "2 flow(s) judged, none left the jurisdiction"
    # a summary written before orientation_unknown_public existed counts whole (conservative)
    del summary["data"]["orientation_unknown_public"]
    data = build_report(records, start=START, end=END, verification=None)
    (residency,) = [c for c in data["criteria"] if c["key"] == "data_residency"]
    assert "2 of them between public addresses: list the registry hosts" in residency["summary"]
