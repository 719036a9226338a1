"""``zot-audit``: the zot registry's audit log (``log.audit`` file), zerolog JSON lines.

No real zot audit line could be collected (corpus SOURCES.md "Not found"); the shape is taken
from zot's source, ``pkg/api/session.go`` ``SessionAuditLogger``: after a ``POST``, ``PUT``,
``PATCH`` or ``DELETE`` that answered 200, 201 or 202 it logs (zerolog, JSON, one per line)::

    {"level":"info","clientIP":"127.0.0.1:51234","subject":"alice","action":"PUT",
     "object":"/v2/models/resnet/manifests/v1","status":201,"time":"…","message":"HTTP API Audit"}

``clientIP`` is Go's ``RemoteAddr`` (the socket peer, ``host:port``); ``subject`` is the user
name from a ``Basic`` ``Authorization`` header (``""`` for bearer/OIDC/anonymous); ``object`` is
the path plus query. zerolog's ``time`` is RFC 3339 (zot's default ``TimeFieldFormat``) or
unix seconds; ``message`` may also be written ``msg`` by other zerolog configurations.

Mapping: the request's meaning is the OCI distribution route table shared with the
distribution parsers (``_distribution.classify``): ``PUT …/manifests/<tag>`` → ``push``,
``DELETE …/manifests/<digest>`` → ``delete`` and so on. ``subject`` → ``actor``, verified (only
requests zot accepted are logged). Reads (pulls) and failures are never in zot's audit log: use
its access log or a reverse proxy for those. Any other JSON line (zot's application log) is
``Unparsed`` ("not a zot audit record").
"""

from __future__ import annotations

from sentinel.audit.parsers._common import DEFAULT_OPTIONS, ParserOptions, bad, i, json_object, s
from sentinel.audit.parsers._distribution import classify, split_addr
from sentinel.audit.parsers.interface import ParseResult
from sentinel.audit.timeparse import parse_rfc3339, parse_unix
from sentinel.records import AuditEvent, Unparsed, sha256_hex

SOURCE_KIND = "zot"
AUDIT_MESSAGE = "HTTP API Audit"


class ZotAuditParser:
    """Parser for one line of zot's audit log."""

    name = "zot-audit"
    source_kind = SOURCE_KIND

    def __init__(self, options: ParserOptions = DEFAULT_OPTIONS) -> None:
        self.options = options

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One line → one event, or ``Unparsed``. Never raises."""
        if not raw.strip():
            return []
        doc = json_object(raw, source, src_pos, "a zot audit record")
        if isinstance(doc, Unparsed):
            return [doc]
        message = s(doc, "message") or s(doc, "msg")
        method, obj = s(doc, "action"), s(doc, "object")
        if message != AUDIT_MESSAGE or method is None or obj is None:
            return [bad(source, "not a zot audit record (message/action/object)", raw, src_pos)]
        stamp = doc.get("time")
        try:
            if isinstance(stamp, str) and not stamp.replace(".", "", 1).isdigit():
                ts = parse_rfc3339(stamp)
            elif isinstance(stamp, int | float | str):
                ts = parse_unix(stamp)
            else:
                return [bad(source, "zot audit record without time", raw, src_pos)]
        except ValueError as exc:
            return [bad(source, f"bad time: {exc}", raw, src_pos)]
        status = i(doc, "status")
        meaning = classify(method, obj, status)
        client_ip, ip_source = split_addr(s(doc, "clientIP"))
        actor = s(doc, "subject")
        return [
            AuditEvent(
                ts=ts,
                source=source,
                source_kind=SOURCE_KIND,
                action=meaning.action,
                outcome=meaning.outcome,
                raw_sha256=sha256_hex(raw),
                src_pos=src_pos,
                actor=actor,
                actor_verified=actor is not None,
                artifact=meaning.artifact,
                reference=meaning.reference,
                digest=meaning.digest,
                client_ip=client_ip,
                client_ip_source=ip_source,
                http_method=method.upper(),
                http_status=status,
            )
        ]
