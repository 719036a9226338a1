"""Every timestamp style found in registry logs, converted to aware UTC.

DESIGN.md "Normalized audit event" lists the styles; the corpus
(``../shared/corpus/registry-logs``) has one of each:

===========================================  ======================================  ==============
style                                        example                                 zone
===========================================  ======================================  ==============
RFC 3339, 0–9 fractional digits              ``2024-05-09T07:38:10.449688982Z``      stated
Apache / Common Log Format                   ``29/Nov/2026:19:09:53 +0000``          stated
syslog (RFC 3164), no year, no zone          ``Nov 29 19:09:53``, ``Jan  9 03:39:48``  configured
unix seconds (int, float or numeric string)  ``1680502598``, ``"1795979955.5"``      UTC
Go ``time.Time.String()``                    ``2022-07-19 06:54:41.148677825 +0000   stated
                                             UTC m=+104056.788453493``
local wall clock (uvicorn ``%Y/%m/%d``)      ``2026/11/29 19:16:39``                 configured
===========================================  ======================================  ==============

Each function returns a ``datetime`` in UTC with microsecond precision (nanoseconds are
truncated, never rounded up into the next second). The zone-less styles take the configured
``zone`` and are used through ``Stamp`` so the caller can set ``AuditEvent.ts_zone_assumed``.

Local times that do not exist (the hour skipped when DST starts) or exist twice (the hour
repeated when it ends) follow PEP 495 with ``fold=0``: a skipped time is read with the offset in
force *before* the transition, a repeated time as its first occurrence. A log does not say which
was meant; this choice is deterministic and documented rather than guessed per line.

Errors: every parser raises ``ValueError`` with the offending text on a malformed input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))$"
)
_APACHE = re.compile(
    r"^(\d{1,2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)
_SYSLOG = re.compile(r"^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
_GO_STRING = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))? ([+-])(\d{2})(\d{2})"
    r"(?: [A-Za-z0-9+\-_/]+)?(?: m=[+-]\d+(?:\.\d+)?)?$"
)
_UNIX = re.compile(r"^-?\d{1,12}(?:\.\d{1,9})?$")

#: Syslog lines stamped more than this far in the future of the reference are from last year.
SYSLOG_FUTURE_SLACK = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class Stamp:
    """A parsed time: ``ts`` aware UTC; ``zone_assumed`` names the configured zone used when the
    source gave none (``None`` when the source stated it)."""

    ts: datetime
    zone_assumed: str | None = None


def get_zone(name: str) -> tzinfo:
    """An IANA zone (``"Europe/Berlin"``) or ``"UTC"``. Raises ``ValueError`` for unknown names."""
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def zone_name(zone: tzinfo) -> str:
    """The configured zone's name as written into ``ts_zone_assumed`` (``"UTC"``, IANA key)."""
    if zone is UTC:
        return "UTC"
    key = getattr(zone, "key", None)
    return key if isinstance(key, str) else str(zone)


def _micro(frac: str | None) -> int:
    return int((frac or "").ljust(6, "0")[:6])


def _fixed(sign: str, hours: str, minutes: str) -> timezone:
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if offset >= timedelta(hours=24):
        raise ValueError("offset out of range")
    return timezone(-offset if sign == "-" else offset)


def parse_rfc3339(text: str) -> datetime:
    """RFC 3339 (section 5.6) with 0–9 fractional digits and ``Z`` or ``±hh:mm`` → UTC.

    Also accepts a space for ``T`` and ``±hhmm`` (both common in logs). A time without a zone
    is rejected: use ``parse_local`` for those.
    """
    m = _RFC3339.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    zone = UTC if m[8] else _fixed(m[9], m[10], m[11])
    try:
        local = datetime(
            int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), _micro(m[7]), zone
        )
    except ValueError as exc:
        raise ValueError(f"not a valid date/time: {text!r} ({exc})") from None
    return local.astimezone(UTC)


def parse_apache(text: str) -> datetime:
    """Apache / Common Log Format ``dd/Mon/yyyy:HH:MM:SS ±zzzz`` (brackets optional) → UTC.

    Month names are English whatever the locale (Apache ``%t``, Go's and gunicorn's writers).
    """
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    m = _APACHE.match(value)
    if not m or m[2] not in _MONTHS:
        raise ValueError(f"not an Apache timestamp: {text!r}")
    try:
        local = datetime(
            int(m[3]),
            _MONTHS[m[2]],
            int(m[1]),
            int(m[4]),
            int(m[5]),
            int(m[6]),
            tzinfo=_fixed(m[7], m[8], m[9]),
        )
    except ValueError as exc:
        raise ValueError(f"not a valid date/time: {text!r} ({exc})") from None
    return local.astimezone(UTC)


def localize(naive: datetime, zone: tzinfo) -> datetime:
    """A wall-clock time in ``zone`` → aware UTC (DST gaps and folds: module docstring)."""
    if naive.tzinfo is not None:
        raise ValueError("localize() takes a naive datetime")
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def parse_syslog(text: str, *, zone: tzinfo, reference: datetime) -> Stamp:
    """RFC 3164 ``Mmm dd HH:MM:SS`` (day space-padded; optional fraction) → ``Stamp``.

    The line has neither year nor zone. The zone is ``zone`` (reported in
    ``Stamp.zone_assumed``). The year is ``reference``'s year in ``zone`` unless that puts the
    line more than ``SYSLOG_FUTURE_SLACK`` after ``reference`` — then it is the year before
    (reading December lines in January). Feb 29 goes back to the latest leap year that fits.
    ``reference`` is the time the line was read (for a tailed file: now). Raises ``ValueError``.
    """
    if reference.tzinfo is None:
        raise ValueError("reference must be timezone-aware")
    m = _SYSLOG.match(text.strip())
    if not m or m[1] not in _MONTHS:
        raise ValueError(f"not a syslog timestamp: {text!r}")
    month, day = _MONTHS[m[1]], int(m[2])
    hour, minute, second = int(m[3]), int(m[4]), int(m[5])
    limit = reference.astimezone(UTC) + SYSLOG_FUTURE_SLACK
    year = reference.astimezone(zone).year
    for candidate in range(year, year - 9, -1):
        try:
            naive = datetime(candidate, month, day, hour, minute, second, _micro(m[6]))
        except ValueError:
            continue  # Feb 29 in a common year, or day 31 of a short month
        ts = localize(naive, zone)
        if ts <= limit:
            return Stamp(ts, zone_name(zone))
    raise ValueError(f"not a valid syslog date: {text!r}")


def parse_unix(value: int | float | str) -> datetime:
    """Unix seconds since 1970-01-01T00:00:00Z (int, float or numeric string) → UTC.

    Booleans, NaN/infinity and values outside years 1970–9999 are rejected.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a unix time")
    if isinstance(value, str):
        text = value.strip()
        if not _UNIX.match(text):
            raise ValueError(f"not unix seconds: {value!r}")
        whole, _, frac = text.partition(".")
        seconds = int(whole)
        micros = _micro(frac) if seconds >= 0 or not frac else -_micro(frac)
    elif isinstance(value, int):
        seconds, micros = value, 0
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not unix seconds: {value!r}")
        seconds = int(value)
        micros = round((value - seconds) * 1_000_000)
    else:
        raise ValueError(f"not unix seconds: {value!r}")
    if not 0 <= seconds < 253_402_300_800:
        raise ValueError(f"unix time out of range: {value!r}")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micros)


def parse_go_string(text: str) -> datetime:
    """Go ``time.Time.String()``: ``2006-01-02 15:04:05.999999999 -0700 MST m=+0.000123``.

    The zone abbreviation is ignored (ambiguous); the numeric offset decides. The monotonic
    clock reading ``m=±…`` (seconds since process start) is dropped. Raises ``ValueError``.
    """
    m = _GO_STRING.match(text.strip())
    if not m:
        raise ValueError(f"not a Go time.String() timestamp: {text!r}")
    try:
        local = datetime(
            int(m[1]),
            int(m[2]),
            int(m[3]),
            int(m[4]),
            int(m[5]),
            int(m[6]),
            _micro(m[7]),
            _fixed(m[8], m[9], m[10]),
        )
    except ValueError as exc:
        raise ValueError(f"not a valid date/time: {text!r} ({exc})") from None
    return local.astimezone(UTC)


def parse_local(text: str, fmt: str, *, zone: tzinfo) -> Stamp:
    """A zone-less wall-clock time in ``strptime`` format ``fmt`` (e.g. uvicorn's
    ``%Y/%m/%d %H:%M:%S``) read in the configured ``zone`` → ``Stamp`` with ``zone_assumed``.
    """
    try:
        naive = datetime.strptime(text.strip(), fmt)
    except ValueError as exc:
        raise ValueError(f"not a {fmt!r} time: {text!r}") from exc
    return Stamp(localize(naive, zone), zone_name(zone))


def parse_any(
    value: str | int | float, *, zone: tzinfo, reference: datetime | None = None
) -> Stamp:
    """Try every style in turn (numbers as unix seconds); for sources whose style varies
    (``jsonmap``). Zone-less styles use ``zone``; syslog needs ``reference`` (default: now).
    Raises ``ValueError`` when no style matches.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Stamp(parse_unix(value))
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    text = value.strip()
    for strict in (parse_rfc3339, parse_go_string, parse_apache, parse_unix):
        try:
            return Stamp(strict(text))
        except ValueError:
            pass
    if _SYSLOG.match(text):
        return parse_syslog(text, zone=zone, reference=reference or datetime.now(UTC))
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f",
                "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S"):  # fmt: skip
        try:
            return parse_local(text, fmt, zone=zone)
        except ValueError:
            pass
    raise ValueError(f"unrecognised timestamp: {value!r}")
