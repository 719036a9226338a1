"""``harbor-nginx``: the access log of Harbor's nginx proxy (the one Harbor log with the client).

Harbor's nginx (``make/photon/prepare/templates/nginx/nginx.http.conf.jinja``) logs with
``log_format timed_combined '$remote_addr - "$request" $status $body_bytes_sent
"$http_referer" "$http_user_agent" $request_time $upstream_response_time $pipe'``. Two forms
of it are read (corpus ``harbor/harbor-nginx-access-helm.log``, goharbor/harbor-helm#1098)::

    [25/Nov/2021:15:28:20 +0000]:10.42.80.0 - "PUT /v2/p/r/manifests/v1 HTTP/1.1" 201 0 "-"
      "docker/20.10.9 …" 3.043 3.044 .
    Jun 13 01:40:55 172.18.0.1 proxy[1234]: 10.0.0.9 - "GET /v2/ HTTP/1.1" 401 87 "-" "curl"
      0.001 - .

(one line each, wrapped here).

The Helm chart prefixes ``[$time_local]:`` (zone stated, converted to UTC); the docker-compose
install sends the line to Harbor's log container over syslog, which writes an RFC 3164 header
(no zone, no year: the configured zone and ``clock`` give them, ``ts_zone_assumed`` set). A
line with neither time is ``Unparsed``. nginx escapes ``"``, ``\\`` and control bytes in
variables as ``\\xHH``; they are decoded.

``$remote_addr`` is nginx's socket peer (``client_ip_source: socket``; behind a load balancer
that is the balancer, unless nginx's ``real_ip`` module is configured). No user is logged
(``actor`` ``None``). The request's meaning is the registry API's
(``_distribution.classify``: Harbor proxies ``/v2/`` to distribution); Harbor's own
``/api/v2.0/…`` and UI requests are ``other``. Every well-formed line gives exactly one event.
"""

from __future__ import annotations

import re

from sentinel.audit.parsers._common import DEFAULT_OPTIONS, ParserOptions, bad, strip_pri
from sentinel.audit.parsers._distribution import classify, parse_apache_ts, split_addr
from sentinel.audit.parsers.interface import ParseResult
from sentinel.audit.timeparse import Stamp, parse_syslog
from sentinel.records import AuditEvent, sha256_hex

SOURCE_KIND = "harbor"

_SYSLOG = re.compile(
    r"^(?P<sts>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) \S+ [\w.\-/]+(?:\[\d+\])?: ?"
)
_LINE = re.compile(
    r"^(?:\[(?P<ts>[^\]]+)\]:)?(?P<host>\S+) - "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>[^"]*)" "(?P<ua>[^"]*)"(?: (?P<rest>.*))?$'
)
_REQUEST = re.compile(r"^(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/\d(?:\.\d)?$")
_HEX = re.compile(r"\\x([0-9A-Fa-f]{2})")


def _unescape(value: str) -> str:
    return _HEX.sub(lambda m: chr(int(m[1], 16)), value)


class HarborNginxParser:
    """Parser for one line of Harbor's nginx access log (Helm or syslog form)."""

    name = "harbor-nginx"
    source_kind = SOURCE_KIND

    def __init__(self, options: ParserOptions = DEFAULT_OPTIONS) -> None:
        self.options = options

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One line (without newline) → exactly one event, or ``Unparsed``. Never raises."""
        text = strip_pri(raw).decode("utf-8", errors="replace").strip()
        if not text:
            return []
        header = _SYSLOG.match(text)
        body = text[header.end() :] if header else text
        m = _LINE.match(body)
        if not m:
            return [bad(source, "not a Harbor nginx access-log line", raw, src_pos)]
        req = _REQUEST.match(_unescape(m["request"]))
        if not req:
            return [bad(source, "malformed request line", raw, src_pos)]
        try:
            if m["ts"]:
                stamp = Stamp(parse_apache_ts(m["ts"]))
            elif header:
                stamp = parse_syslog(
                    header["sts"], zone=self.options.zone, reference=self.options.clock()
                )
            else:
                return [bad(source, "Harbor nginx access line has no time", raw, src_pos)]
        except ValueError as exc:
            return [bad(source, f"bad time: {exc}", raw, src_pos)]
        status = int(m["status"])
        meaning = classify(req["method"], req["uri"], status)
        client_ip, _ = split_addr(m["host"])
        ua = _unescape(m["ua"]) if m["ua"] not in ("", "-") else None
        return [
            AuditEvent(
                ts=stamp.ts,
                source=source,
                source_kind=SOURCE_KIND,
                action=meaning.action,
                outcome=meaning.outcome,
                raw_sha256=sha256_hex(raw),
                src_pos=src_pos,
                artifact=meaning.artifact,
                reference=meaning.reference,
                digest=meaning.digest,
                client_ip=client_ip,
                client_ip_source="socket" if client_ip else None,
                user_agent=ua,
                http_method=req["method"],
                http_status=status,
                ts_zone_assumed=stamp.zone_assumed,
            )
        ]
