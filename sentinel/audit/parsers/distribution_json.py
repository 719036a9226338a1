"""``distribution-json``: CNCF distribution 2.8.2 application log, ``log.formatter: json``.

One logrus ``JSONFormatter`` object per line (``time`` RFC 3339 with up to nine fractional
digits, ``level``, ``msg``, plus the request fields). Which lines become events and how is
described in ``sentinel.audit.parsers._applog``. A blank line gives nothing; a line that is
not a JSON object with ``time`` and ``msg`` is ``Unparsed``.

Zone: the formatter writes the zone (``Z`` or an offset), so none is assumed.
"""

from __future__ import annotations

from sentinel.audit.parsers._applog import SOURCE_KIND, events_from_fields
from sentinel.audit.parsers.interface import ParseResult, loads_limited, unparsed
from sentinel.timefmt import parse_ts


class DistributionJSONParser:
    """Parser for one line of distribution's JSON application log."""

    name = "distribution-json"
    source_kind = SOURCE_KIND

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One line (without newline) → 0..1 events, or ``Unparsed``. Never raises."""
        line = raw.strip()
        if not line:
            return []
        try:
            fields = loads_limited(line)
        except ValueError as exc:
            return [unparsed(source, f"not JSON: {exc}", raw, src_pos)]
        if not isinstance(fields, dict):
            return [unparsed(source, "not a JSON object", raw, src_pos)]
        if not isinstance(fields.get("time"), str) or "msg" not in fields:
            return [unparsed(source, "not a logrus JSON entry (no time/msg)", raw, src_pos)]
        try:
            ts = parse_ts(fields["time"])
        except ValueError as exc:
            return [unparsed(source, f"bad time: {exc}", raw, src_pos)]
        result = events_from_fields(fields, ts, raw=raw, source=source, src_pos=src_pos)
        if isinstance(result, str):
            return [unparsed(source, result, raw, src_pos)]
        return result
