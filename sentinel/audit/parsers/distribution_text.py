"""``distribution-text``: CNCF distribution application log, ``log.formatter: text``.

Two layouts of logrus' ``TextFormatter`` (sirupsen/logrus ``text_formatter.go``):

* plain (output is not a terminal, the usual case for a service):
  ``time="2026-11-29T19:09:53.08Z" level=info msg="response completed" key=value key="a b"``;
  values with spaces or special characters are Go-quoted (``%q``).
* TTY (colour) layout: ``INFO[0005] message padded to 44 columns  key=value …``; the bracket
  holds seconds since the process started unless ``FullTimestamp`` is on, in which case it holds
  an RFC 3339 time. ANSI colour codes are stripped. An event-bearing TTY line without a
  wall-clock time is ``Unparsed`` (Sentinel never invents a time); other TTY lines give nothing.

Fields and event rules are those of ``sentinel.audit.parsers._applog``. Non-UTF-8 bytes are
decoded with replacement for the field values; ``raw_sha256`` always covers the raw bytes.
"""

from __future__ import annotations

import re
from datetime import datetime

from sentinel.audit.parsers._applog import SOURCE_KIND, events_from_fields
from sentinel.audit.parsers.interface import ParseResult, unparsed
from sentinel.timefmt import parse_ts

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PAIR = re.compile(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_TTY = re.compile(
    r"^(?P<level>PANI|FATA|ERRO|WARN|INFO|DEBU|TRAC)\[(?P<clock>[^\]]*)\] ?(?P<rest>.*)$"
)
_TTY_FIELDS = re.compile(r"\s{2,}(?=[A-Za-z_][\w.\-]*=)")
_ESCAPES = re.compile(r'\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[abfnrtv\\"\'])')
_SIMPLE = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


def _go_unquote(value: str) -> str:
    """Undo Go's ``strconv.Quote`` on a ``"…"`` value (bare values are returned unchanged)."""
    if len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
        return value

    def repl(m: re.Match[str]) -> str:
        esc = m[1]
        if esc[0] in "xuU":
            return chr(int(esc[1:], 16))
        return _SIMPLE[esc]

    return _ESCAPES.sub(repl, value[1:-1])


def _pairs(text: str) -> dict[str, str]:
    return {k: _go_unquote(v) for k, v in _PAIR.findall(text)}


class DistributionTextParser:
    """Parser for one line of distribution's text (logrus) application log."""

    name = "distribution-text"
    source_kind = SOURCE_KIND

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One line (without newline) → 0..1 events, or ``Unparsed``. Never raises."""
        text = _ANSI.sub("", raw.decode("utf-8", errors="replace")).strip()
        if not text:
            return []
        ts: datetime | None
        if m := _TTY.match(text):
            parts = _TTY_FIELDS.split(m["rest"], maxsplit=1)
            fields: dict[str, str] = _pairs(parts[1]) if len(parts) > 1 else {}
            fields["msg"] = parts[0].strip()
            fields["level"] = m["level"]
            try:
                ts = parse_ts(m["clock"]) if not m["clock"].isdigit() else None
            except ValueError:
                ts = None
        else:
            fields = _pairs(text)
            if "time" not in fields or "msg" not in fields:
                return [unparsed(source, "not a logrus text entry (no time/msg)", raw, src_pos)]
            try:
                ts = parse_ts(fields["time"])
            except ValueError as exc:
                return [unparsed(source, f"bad time: {exc}", raw, src_pos)]
        result = events_from_fields(fields, ts, raw=raw, source=source, src_pos=src_pos)
        if isinstance(result, str):
            return [unparsed(source, result, raw, src_pos)]
        return result
