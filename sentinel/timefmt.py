"""Timestamps as Sentinel writes them: RFC 3339, UTC, exactly six fractional digits.

Source: RFC 3339 section 5.6; DESIGN.md "Ledger" (six fractional digits, ``Z`` suffix).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# the shape most sources write (Go's RFC3339Nano, Sentinel's own): parsed by fromisoformat
# directly, which truncates a fraction beyond six digits exactly as the general path does
_UTC_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def format_ts(ts: datetime) -> str:
    """Return ``ts`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    Raises ``ValueError`` for a naive datetime: Sentinel never guesses a zone silently.
    """
    if ts.tzinfo is None:
        raise ValueError("naive datetime: attach a zone before formatting")
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    if ts.year < 1000:  # strftime writes such a year without leading zeros; keep its bytes
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # the same text as strftime above, about twice as fast: "…+00:00" → "…Z"
    return ts.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (any fraction length, ``Z`` or offset) into aware UTC.

    Raises ``ValueError`` when ``text`` is not RFC 3339 or has no zone.
    """
    if _UTC_Z.fullmatch(text):
        try:
            return datetime.fromisoformat(text).astimezone(UTC)
        except ValueError:
            pass  # e.g. month 13: the general path below words the error
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Python < 3.11 limits fractions to 6 digits; trim longer ones (nanoseconds) rather than fail.
    head, sep, frac_and_zone = value.partition(".")
    if sep:
        digits = ""
        rest = frac_and_zone
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        value = f"{head}.{(digits + '000000')[:6]}{rest}"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp has no zone: {text!r}")
    return parsed.astimezone(UTC)


def parse_when(text: str) -> datetime:
    """A command-line time (``report``, ``ledger export`` ``--from``/``--to``): an RFC 3339
    timestamp with a zone (``parse_ts``) or a date ``YYYY-MM-DD``, taken as midnight UTC.

    Returns an aware UTC datetime; raises ``ValueError`` for anything else.
    """
    if _DATE.fullmatch(text):
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    return parse_ts(text)


#: what ``parse_when`` accepts, for messages
WHEN_FORMATS = "RFC 3339 with a zone (2026-11-29T00:00:00Z) or a date (2026-11-29, UTC)"


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def from_epoch(seconds: float) -> datetime:
    """Unix seconds (float allowed) → aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)
