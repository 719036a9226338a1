"""``distribution-access``: CNCF distribution 2.8.2 access log (Combined Log Format, stdout).

Written by gorilla/handlers ``CombinedLoggingHandler`` (``logging.go``: ``writeCombinedLog``)::

    127.0.0.1 - - [29/Nov/2026:19:09:53 +0000] "GET /v2/x/manifests/v1 HTTP/1.1" 200 481 "" "curl"

host, identity (always ``-``), user (the URL userinfo, practically always ``-``), time
(``[dd/Mon/yyyy:HH:MM:SS ±zzzz]``, converted to UTC; zone stated, none assumed), request line,
status, size (bytes), referer, user agent. The host is the socket peer without its port
(gorilla splits ``RemoteAddr``; distribution adds no proxy-header middleware before it), so
``client_ip_source`` is ``socket`` — an ``X-Forwarded-For`` header never reaches this log.

The request's meaning (action, artifact, reference, digest, the 401/403 rules) is
``sentinel.audit.parsers._distribution.classify``. This log names no user and no request id:
``actor`` is ``None`` (unless the user field is set, then it is unverified), ``request_id``
is ``None``.
Every well-formed line gives exactly one event; any other line is ``Unparsed``. A syslog
header or tag before the line (Harbor's ``registry.log``: ``registry[22056]: 172.17.0.7 - - […]
…``) is skipped.
"""

from __future__ import annotations

import re

from sentinel.audit.parsers._distribution import classify, parse_apache_ts, split_addr
from sentinel.audit.parsers.interface import ParseResult, unparsed
from sentinel.records import AuditEvent, sha256_hex

#: a syslog header or tag before the line (Harbor's registry.log: ``Jun 13 01:40:55 172.18.0.1
#: registry[22056]: 172.17.0.7 - - […] …``, or the bare ``registry[22056]: `` tag); its time is
#: not used, the line states its own
_PREFIX = re.compile(
    r"^(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \S+ )?"
    r"[A-Za-z][\w.\-/]*(?:\[\d+\])?: "
)
_LINE = re.compile(
    r"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<ts>[^\]]+)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<size>\d+|-)'
    r'(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)")?\s*$'
)
_REQUEST = re.compile(r"^(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/\d(?:\.\d)?$")


def _unescape(value: str) -> str:
    return value.replace('\\"', '"').replace("\\\\", "\\")


class DistributionAccessParser:
    """Parser for one line of distribution's combined access log."""

    name = "distribution-access"
    source_kind = "distribution"

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One line (without newline) → exactly one event, or ``Unparsed``. Never raises."""
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return []
        m = _LINE.match(text)
        if not m and (prefix := _PREFIX.match(text)):
            m = _LINE.match(text[prefix.end() :])
        if not m:
            return [unparsed(source, "not a combined-log-format line", raw, src_pos)]
        req = _REQUEST.match(_unescape(m["request"]))
        if not req:
            return [unparsed(source, "malformed request line", raw, src_pos)]
        try:
            ts = parse_apache_ts(m["ts"])
        except ValueError as exc:
            return [unparsed(source, str(exc), raw, src_pos)]
        status = int(m["status"])
        meaning = classify(req["method"], req["uri"], status)
        client_ip, _ = split_addr(m["host"])
        user = m["user"] if m["user"] != "-" else None
        ua = _unescape(m["ua"]) if m["ua"] else None
        return [
            AuditEvent(
                ts=ts,
                source=source,
                source_kind=self.source_kind,
                action=meaning.action,
                outcome=meaning.outcome,
                raw_sha256=sha256_hex(raw),
                src_pos=src_pos,
                actor=user,
                actor_verified=False,
                artifact=meaning.artifact,
                reference=meaning.reference,
                digest=meaning.digest,
                client_ip=client_ip,
                client_ip_source="socket" if client_ip else None,
                user_agent=ua,
                http_method=req["method"],
                http_status=status,
            )
        ]
