"""``minio-notification``: MinIO bucket notifications (S3 event message structure).

Payload (minio ``docs/bucket/notifications/README.md``; AWS S3 "Event message structure",
``eventVersion`` 2.x): ``{"EventName", "Key", "Records": [{"eventVersion", "eventSource",
"eventTime", "eventName", "userIdentity": {"principalId"}, "requestParameters":
{"sourceIPAddress", "accessKey"}, "responseElements": {"x-amz-request-id", …}, "s3":
{"bucket": {"name"}, "object": {"key", "size", "eTag", "versionId", "sequencer"}},
"source": {"host", "port", "userAgent"}}]}``. Older targets wrote ``EventType`` for
``EventName``; the logrus-based targets wrap it with ``level``/``msg``/``time`` keys — both are
read the same way. A payload may be NDJSON (one message per line) or Sentinel's capture record.

Mapping per record: ``s3:ObjectCreated:*`` → ``push``; ``s3:ObjectAccessed:Get`` → ``pull``;
``s3:ObjectAccessed:Head`` → ``other``; ``s3:ObjectRemoved:*`` → ``delete``; anything else
→ ``other``. Outcome ``success`` (MinIO notifies completed operations). ``principalId`` →
``actor`` (verified: MinIO authenticated the request); ``bucket/key`` (key URL-decoded, as S3
encodes it) → ``artifact``; ``versionId`` → ``reference``; ``x-amz-request-id`` →
``request_id``; ``sequencer`` identifies the event (``event_id`` ``bucket/key@sequencer``).
``sourceIPAddress`` comes from MinIO's ``GetSourceIP``, which prefers ``X-Forwarded-For``; the
message does not say whether one was sent, so ``client_ip_source`` is ``header`` (forgeable).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from sentinel.audit.parsers._common import (
    DEFAULT_OPTIONS,
    JsonError,
    ParserOptions,
    bad,
    d,
    iter_json,
    s,
    unwrap_capture,
)
from sentinel.audit.parsers._distribution import split_addr
from sentinel.audit.parsers._redact import redact_bytes, redact_text
from sentinel.audit.parsers.interface import ParseResult
from sentinel.audit.timeparse import parse_rfc3339
from sentinel.records import Action, AuditEvent, Unparsed, sha256_hex

SOURCE_KIND = "minio"


def _action(event_name: str) -> Action:
    name = event_name.removeprefix("s3:")
    if name.startswith("ObjectCreated:"):
        return "push"
    if name == "ObjectAccessed:Get":
        return "pull"
    if name.startswith("ObjectRemoved:"):
        return "delete"
    return "other"


class MinioNotificationParser:
    """Parser for one MinIO bucket-notification payload."""

    name = "minio-notification"
    source_kind = SOURCE_KIND

    def __init__(self, options: ParserOptions = DEFAULT_OPTIONS) -> None:
        self.options = options

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One payload → one record per S3 event record, or ``Unparsed``. Never raises."""
        if not raw.strip():
            return []
        out: ParseResult = []
        docs = iter_json(raw)
        for doc in docs:
            pos = src_pos if len(docs) == 1 else f"{src_pos}@{doc.offset}"
            if isinstance(doc, JsonError):
                out.append(_bad(source, doc.reason, doc.raw, pos))
                continue
            delivery = unwrap_capture(doc.value, doc.raw)
            if isinstance(delivery, str):
                out.append(_bad(source, delivery, doc.raw, pos))
                continue
            message = delivery.body
            records = message.get("Records") if isinstance(message, dict) else None
            if not isinstance(records, list):
                out.append(_bad(source, "not an S3 event message (no Records list)", doc.raw, pos))
                continue
            digest = sha256_hex(doc.raw)
            for k, record in enumerate(records):
                rpos = pos if len(records) == 1 else f"{pos}#{k}"
                out.append(self._record(record, doc.raw, digest, source, rpos))
        return out

    def _record(
        self, record: Any, raw: bytes, digest: str, source: str, src_pos: str
    ) -> AuditEvent | Unparsed:
        event_name = s(record, "eventName")
        stamp = s(record, "eventTime")
        if event_name is None or stamp is None:
            return _bad(source, "S3 event record without eventName/eventTime", raw, src_pos)
        try:
            ts = parse_rfc3339(stamp)
        except ValueError as exc:
            return _bad(source, f"bad eventTime: {exc}", raw, src_pos)
        s3 = d(record, "s3")
        bucket = s(d(s3, "bucket"), "name")
        obj = d(s3, "object")
        key = s(obj, "key")
        key = unquote_plus(key) if key else None
        artifact = f"{bucket}/{key}" if bucket and key else bucket
        params = d(record, "requestParameters")
        actor = s(d(record, "userIdentity"), "principalId") or s(params, "accessKey")
        client_ip, _ = split_addr(s(params, "sourceIPAddress") or s(d(record, "source"), "host"))
        sequencer = s(obj, "sequencer")
        ua = s(d(record, "source"), "userAgent")
        return AuditEvent(
            ts=ts,
            source=source,
            source_kind=SOURCE_KIND,
            action=_action(event_name),
            outcome="success",
            raw_sha256=digest,
            src_pos=src_pos,
            actor=actor,
            actor_verified=actor is not None,
            artifact=redact_text(artifact) if artifact else None,
            reference=s(obj, "versionId"),
            client_ip=client_ip,
            client_ip_source="header" if client_ip else None,
            user_agent=redact_text(ua) if ua else None,
            request_id=s(d(record, "responseElements"), "x-amz-request-id"),
            event_id=f"{artifact}@{sequencer}/{event_name}" if sequencer else None,
            detail=event_name,
        )


def _bad(source: str, reason: str, raw: bytes, src_pos: str) -> Unparsed:
    return bad(source, reason, redact_bytes(raw), src_pos, digest=sha256_hex(raw), length=len(raw))
