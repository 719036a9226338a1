"""Violation aggregation: first occurrence at once, periodic summaries, bounded memory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.geo import GeoDatabase
from sentinel.policy.aggregate import Aggregator, Emission
from sentinel.policy.egress import EgressPolicy
from sentinel.records import Flow, Verdict

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = EgressPolicy.from_yaml(b"jurisdiction: {allow_countries: [EEA]}\n")


def violation(remote: str = "81.2.69.142", port: int = 443, at: float = 0.0, out: int = 1000,
              proto: int = 6, reason: str = "foreign country") -> Verdict:  # fmt: skip
    seen = T0 + timedelta(seconds=at)
    flow = Flow(proto, "10.20.0.5", 50000, remote, port, 2, 1, out, 10, seen, seen)
    return Verdict(flow, "violation", reason, "GB", "jurisdiction")


def test_real_verdicts_first_then_summary(corpus: Path) -> None:
    agg = Aggregator(interval=60)
    with GeoDatabase.open(corpus / "geoip" / "GeoIP2-City-Test.mmdb") as geo:
        for i in range(5):
            t = T0 + timedelta(seconds=i)
            for remote in ("81.2.69.142", "89.160.20.112", "175.16.199.1"):
                flow = Flow(6, "10.20.0.5", 40000 + i, remote, 443, 2, 1, 500, 50, t, t)
                agg.add(POLICY.evaluate(flow, geo, t))
    first = agg.drain(T0 + timedelta(seconds=5))
    # SE is allowed: only GB and CN are violations, one first occurrence each
    assert [(e.kind, e.remote_ip, e.country) for e in first] == [
        ("first", "81.2.69.142", "GB"),
        ("first", "175.16.199.1", "CN"),
    ]
    assert first[0].verdict is not None and first[0].verdict.flow.local_port == 40000
    assert agg.drain(T0 + timedelta(seconds=30)) == []  # not due yet
    later = agg.drain(T0 + timedelta(seconds=65))
    assert [(e.kind, e.remote_ip, e.count, e.bytes_out, e.total_count) for e in later] == [
        ("summary", "81.2.69.142", 4, 2000, 5),
        ("summary", "175.16.199.1", 4, 2000, 5),
    ]
    s = later[0]
    assert (s.first_seen, s.last_seen) == (T0 + timedelta(seconds=1), T0 + timedelta(seconds=4))
    body = json.loads(json.dumps(s.to_json()))
    assert body["protocol"] == "tcp" and body["first_seen"] == "2026-01-01T00:00:01.000000Z"
    assert "verdict" not in body and "verdict" in first[0].to_json()
    keys = [e.dedup_key for e in first + later]
    assert len(set(keys)) == 4 and keys[0].startswith("egress-first:81.2.69.142:443:6:")


def test_key_is_ip_port_protocol_reason() -> None:
    agg = Aggregator(interval=60)
    for v in (violation(), violation(port=80), violation(proto=17), violation(remote="1.1.1.1"),
              violation(reason="unknown location"), violation()):  # fmt: skip
        assert agg.add(v)
    assert len(agg.drain(T0)) == 5
    allowed = Verdict(violation().flow, "allowed", "allowed country", "SE", "jurisdiction")
    assert agg.add(allowed) is False


def test_retire_then_a_new_first_occurrence() -> None:
    agg = Aggregator(interval=60)
    agg.add(violation(at=0))
    assert [e.kind for e in agg.drain(T0)] == ["first"]
    assert agg.drain(T0 + timedelta(seconds=61)) == []  # quiet: retired
    assert len(agg) == 0
    agg.add(violation(at=100))
    assert [e.kind for e in agg.drain(T0 + timedelta(seconds=100))] == ["first"]


def test_final_drain_flushes_everything() -> None:
    agg = Aggregator(interval=3600)
    for i in range(3):
        agg.add(violation(at=i))
    assert [e.kind for e in agg.drain(T0)] == ["first"]
    agg.add(violation(at=10))
    out = agg.drain(T0 + timedelta(seconds=11), final=True)
    assert [(e.kind, e.count, e.total_count) for e in out] == [("summary", 3, 4)]
    assert len(agg) == 0


def test_bounded_memory_overflow_is_counted_not_dropped() -> None:
    agg = Aggregator(interval=60, max_keys=3)
    for i in range(10):  # 10 distinct remotes, no drain: every key has pending data
        agg.add(violation(remote=f"81.2.69.{i}", out=100))
    assert len(agg) == 4  # 3 keys + 1 overflow bucket for the reason
    assert agg.overflowed == 7
    out = agg.drain(T0)
    firsts = [e for e in out if e.kind == "first"]
    overflow = [e for e in out if e.remote_ip is None]
    assert len(firsts) == 3
    assert [(e.count, e.bytes_out, e.reason) for e in overflow] == [(7, 700, "foreign country")]
    # after the drain the drained keys make room again: new remotes get their own first
    agg.add(violation(remote="9.9.9.9"))
    assert [e.remote_ip for e in agg.drain(T0 + timedelta(seconds=1))] == ["9.9.9.9"]
    assert len(agg) <= 3


def test_naive_now_and_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Aggregator(interval=0)
    with pytest.raises(ValueError, match="timezone"):
        Aggregator().drain(datetime(2026, 1, 1))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 500), st.booleans()),
        max_size=80,
    ),
    st.integers(1, 4),
)
def test_every_violation_is_accounted_for(
    events: list[tuple[int, int, int, bool]], max_keys: int
) -> None:
    """Whatever the order, drains and table size: emitted counts and bytes equal the input."""
    agg = Aggregator(interval=10, max_keys=max_keys)
    emitted: list[Emission] = []
    t = 0
    for host, port, out, drain in events:
        t += 3
        agg.add(violation(remote=f"81.2.69.{host}", port=port, at=t, out=out))
        assert len(agg) <= max_keys + 1
        if drain:
            emitted += agg.drain(T0 + timedelta(seconds=t))
    emitted += agg.drain(T0 + timedelta(seconds=t + 1), final=True)
    assert sum(e.count for e in emitted) == len(events)
    assert sum(e.bytes_out for e in emitted) == sum(e[2] for e in events)
    assert len(agg) == 0


def test_repeats_carry_the_remote_names_of_the_latest_occurrence() -> None:
    from dataclasses import replace

    from sentinel.records import RemoteName

    agg = Aggregator(interval=60)
    plain = violation(at=0)
    agg.add(plain)
    name = RemoteName("s3.ap-northeast-2.amazonaws.com", (), T0, 5, "10.20.0.5", "10.20.0.53")
    agg.add(replace(plain, flow=replace(plain.flow, remote_names=(name,))))
    (first,) = agg.drain(T0)
    assert "remote_names" not in first.to_json()  # the first flow had no name
    (summary,) = agg.drain(T0 + timedelta(seconds=61))
    assert summary.to_json()["remote_names"] == ["s3.ap-northeast-2.amazonaws.com"]
