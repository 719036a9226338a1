"""Every timestamp style of the corpus → aware UTC (sentinel.audit.timeparse)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.audit.timeparse import (
    Stamp,
    get_zone,
    localize,
    parse_any,
    parse_apache,
    parse_go_string,
    parse_local,
    parse_rfc3339,
    parse_syslog,
    parse_unix,
    zone_name,
)
from sentinel.timefmt import format_ts

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-09T07:38:10.449688982Z", "2024-05-09T07:38:10.449688Z"),  # MinIO, ns
        ("2026-11-29T19:19:16.006276+00:00", "2026-11-29T19:19:16.006276Z"),  # MLflow
        ("2023-04-03T06:16:38Z", "2023-04-03T06:16:38.000000Z"),  # Harbor CloudEvents
        ("2017-07-07T11:46:37-07:00", "2017-07-07T18:46:37.000000Z"),  # MinIO logrus wrapper
        ("2022-02-23T06:11:01.29826979Z", "2022-02-23T06:11:01.298269Z"),  # 8 digits
        ("2018-01-09T03:39:48.8Z", "2018-01-09T03:39:48.800000Z"),  # 1 digit
        ("2018-01-09 03:39:48+0530", "2018-01-08T22:09:48.000000Z"),  # space, ±hhmm
        ("2018-01-09t03:39:48.999999999z", "2018-01-09T03:39:48.999999Z"),  # truncated, not rounded
    ],
)
def test_rfc3339_variable_fractions(text: str, expected: str) -> None:
    assert format_ts(parse_rfc3339(text)) == expected


@pytest.mark.parametrize(
    "text",
    ["2024-05-09T07:38:10", "2024-13-09T07:38:10Z", "2024-05-09T07:38:10.1234567890Z", "", "now"],
)
def test_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)))
def test_rfc3339_round_trips_sentinel_format(naive: datetime) -> None:
    ts = naive.replace(tzinfo=UTC)
    assert parse_rfc3339(format_ts(ts)) == ts


def test_apache() -> None:
    assert format_ts(parse_apache("[29/Nov/2026:19:17:26 +0000]")) == "2026-11-29T19:17:26.000000Z"
    assert format_ts(parse_apache("02/Apr/2022:05:34:13 -0130")) == "2022-04-02T07:04:13.000000Z"
    for bad in ("29/Foo/2026:19:17:26 +0000", "29/Nov/2026 19:17:26", "31/Feb/2026:00:00:00 +0000"):
        with pytest.raises(ValueError):
            parse_apache(bad)


def test_go_time_string_with_monotonic_clock() -> None:
    text = "2022-07-19 06:54:41.148677825 +0000 UTC m=+104056.788453493"
    assert format_ts(parse_go_string(text)) == "2022-07-19T06:54:41.148677Z"
    assert format_ts(parse_go_string("2026-11-29 20:09:53.123456789 +0100 CET m=+0.000123")) == (
        "2026-11-29T19:09:53.123456Z"
    )
    assert format_ts(parse_go_string("2026-11-29 19:09:53 -0500 EST")) == (
        "2026-11-30T00:09:53.000000Z"
    )
    with pytest.raises(ValueError):
        parse_go_string("2026-11-29 19:09:53 UTC")  # no numeric offset


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1680502598, "2023-04-03T06:16:38.000000Z"),  # Harbor occur_at
        ("1795979955", "2026-11-29T19:19:15.000000Z"),  # X-MLflow-Timestamp
        (1680502598.25, "2023-04-03T06:16:38.250000Z"),
        ("1680502598.000001", "2023-04-03T06:16:38.000001Z"),
        (0, "1970-01-01T00:00:00.000000Z"),
    ],
)
def test_unix_seconds(value: int | float | str, expected: str) -> None:
    assert format_ts(parse_unix(value)) == expected


@pytest.mark.parametrize("value", [True, "12ab", float("nan"), float("inf"), -1, 10**13, "", None])
def test_unix_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_unix(value)  # type: ignore[arg-type]


def test_syslog_uses_configured_zone_and_says_so() -> None:
    ref = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    stamp = parse_syslog("Nov 29 19:09:53", zone=UTC, reference=ref)
    assert stamp == Stamp(datetime(2026, 11, 29, 19, 9, 53, tzinfo=UTC), "UTC")
    berlin = parse_syslog("Oct 18 10:17:24", zone=BERLIN, reference=ref)  # CEST, +02:00
    assert format_ts(berlin.ts) == "2026-10-18T08:17:24.000000Z"
    assert berlin.zone_assumed == "Europe/Berlin"
    padded = parse_syslog("Jan  9 03:39:48", zone=UTC, reference=ref)
    assert padded.ts == datetime(2026, 1, 9, 3, 39, 48, tzinfo=UTC)


def test_syslog_year_rollover_january_reads_december() -> None:
    ref = datetime(2027, 1, 1, 0, 5, tzinfo=UTC)
    assert parse_syslog("Dec 31 23:59:59", zone=UTC, reference=ref).ts.year == 2026
    assert parse_syslog("Jan  1 00:04:00", zone=UTC, reference=ref).ts.year == 2027
    # a line a little in the future of the reader's clock (clock skew) keeps this year
    assert parse_syslog("Jan  2 12:00:00", zone=UTC, reference=ref).ts.year == 2027
    # a local zone ahead of UTC: reference 2026-12-31T23:30Z is already 2027 in Berlin
    ref_late = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert parse_syslog("Jan  1 00:20:00", zone=BERLIN, reference=ref_late).ts == datetime(
        2026, 12, 31, 23, 20, tzinfo=UTC
    )


def test_syslog_feb_29_goes_back_to_a_leap_year() -> None:
    ref = datetime(2027, 3, 1, tzinfo=UTC)
    assert parse_syslog("Feb 29 12:00:00", zone=UTC, reference=ref).ts.year == 2024


@given(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 31)),
    st.integers(min_value=0, max_value=300 * 86400),
)
def test_syslog_property_never_future_beyond_slack(ref_naive: datetime, back: int) -> None:
    ref = ref_naive.replace(tzinfo=UTC)
    line_ts = (ref - timedelta(seconds=back)).replace(microsecond=0)
    text = f"{line_ts:%b} {line_ts.day:>2} {line_ts:%H:%M:%S}"  # RFC 3164: day space-padded
    if line_ts.month == 2 and line_ts.day == 29:
        return  # checked by test_syslog_feb_29_goes_back_to_a_leap_year
    assert parse_syslog(text, zone=UTC, reference=ref).ts == line_ts


def test_dst_gap_and_fold_are_deterministic() -> None:
    # 2026-03-29 02:30 does not exist in Berlin (clocks jump 02:00 → 03:00): offset before (+01)
    gap = localize(datetime(2026, 3, 29, 2, 30), BERLIN)
    assert gap == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    # 2026-10-25 02:30 happens twice in Berlin: the first (+02)
    fold = localize(datetime(2026, 10, 25, 2, 30), BERLIN)
    assert fold == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # New York: 2026-03-08 02:30 skipped (-05 before), 2026-11-01 01:30 repeated (-04 first)
    assert localize(datetime(2026, 3, 8, 2, 30), NEW_YORK) == datetime(
        2026, 3, 8, 7, 30, tzinfo=UTC
    )
    assert localize(datetime(2026, 11, 1, 1, 30), NEW_YORK) == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )
    with pytest.raises(ValueError):
        localize(datetime(2026, 1, 1, tzinfo=UTC), BERLIN)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31)))
def test_localize_is_monotonic_outside_folds(naive: datetime) -> None:
    # one hour later in wall-clock time is never earlier in UTC (gaps map forward, folds first)
    later = naive + timedelta(hours=1)
    assert localize(later, BERLIN) >= localize(naive, BERLIN)


def test_local_wall_clock_uvicorn() -> None:
    stamp = parse_local("2026/11/29 19:16:39", "%Y/%m/%d %H:%M:%S", zone=NEW_YORK)
    assert stamp == Stamp(datetime(2026, 11, 30, 0, 16, 39, tzinfo=UTC), "America/New_York")
    with pytest.raises(ValueError):
        parse_local("29/11/2026", "%Y/%m/%d %H:%M:%S", zone=UTC)


def test_parse_any_picks_the_style() -> None:
    ref = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    assert parse_any("2024-05-09T07:38:10.449688982Z", zone=BERLIN).zone_assumed is None
    assert parse_any(1680502598, zone=BERLIN).ts == parse_unix(1680502598)
    assert parse_any("1680502598", zone=BERLIN).zone_assumed is None
    assert parse_any("29/Nov/2026:19:17:26 +0000", zone=BERLIN).zone_assumed is None
    assert parse_any("2022-07-19 06:54:41.1 +0000 UTC m=+1.5", zone=BERLIN).zone_assumed is None
    assert parse_any("Nov 29 19:09:53", zone=BERLIN, reference=ref).zone_assumed == "Europe/Berlin"
    naive = parse_any("2026-11-29 19:09:53", zone=BERLIN)
    assert (naive.ts, naive.zone_assumed) == (
        datetime(2026, 11, 29, 18, 9, 53, tzinfo=UTC),
        "Europe/Berlin",
    )
    for bad in ("yesterday", True, None, [1]):
        with pytest.raises(ValueError):
            parse_any(bad, zone=UTC)  # type: ignore[arg-type]


def test_zones() -> None:
    assert get_zone("UTC") is UTC
    assert zone_name(get_zone("Europe/Berlin")) == "Europe/Berlin"
    with pytest.raises(ValueError, match="unknown time zone"):
        get_zone("Mars/Olympus")


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.sampled_from([UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/St_Johns")]),
)
def test_format_ts_is_strftime_in_utc(naive: datetime, zone: ZoneInfo) -> None:
    ts = naive.replace(tzinfo=zone)
    assert format_ts(ts) == ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
