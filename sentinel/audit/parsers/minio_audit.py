"""``minio-audit``: MinIO audit log entries (webhook/Kafka targets), 2019, 2021 and 2024 schemas.

Entry fields (minio ``docs/logging/README.md`` at the three commits cited in the corpus'
SOURCES.md; ``internal/logger/message/audit``): ``version``, ``deploymentid``, ``time`` (RFC
3339, nanoseconds), ``trigger`` (2021+), ``api.{name, bucket, object, status, statusCode, rx,
tx, timeToResponse}``, ``remotehost``, ``requestID``, ``userAgent``, ``requestPath``/
``requestHost`` (2024), ``requestHeader``, ``responseHeader``, ``tags``, ``accessKey`` (2024),
``error`` (when the call failed).

A payload is one entry (pretty-printed or not), a JSON array of entries, or an NDJSON batch
(the webhook target with ``batch_size`` > 1 posts entries separated by newlines); each entry
gives one record. ``src_pos`` gets ``#<n>`` for the n-th entry of a batch.

Mapping: ``accessKey`` (else the SigV4 ``Credential=`` access key in ``Authorization``, else
``X-Amz-Credential`` of a presigned request) → ``actor``, verified when the call did not fail
with 401/403 (MinIO checked the signature). ``bucket/object`` → ``artifact``;
``x-amz-version-id`` → ``reference``. ``api.name``: ``GetObject`` → ``pull``;
``PutObject``/``CompleteMultipartUpload``/``CopyObject``/``PutObjectRetention``… → ``push``
(``CopyObject`` and ``UploadPartCopy`` read another object too); ``DeleteObject(s)``/
``DeleteBucket`` → ``delete``; bucket policy/lifecycle/replication/encryption/notification
setters and admin APIs → ``config_change``; others → ``other``. Status 401, or 403 with a
signature/access-key error → ``auth_failure``; other 403 → ``access_denied``.
``remotehost`` is MinIO's ``GetSourceIP`` (it honours ``X-Forwarded-For``/``X-Real-Ip``/
``Forwarded``): ``client_ip_source`` is ``header`` when the request carried one, else ``socket``.

Credentials: nothing from ``requestHeader``/query except the access key id is copied into an
event; an ``Unparsed`` keeps a *redacted* copy of the entry (``_redact``), and ``raw_sha256`` is
the SHA-256 of the original bytes so the evidence stays linkable to the source log.
``event_id`` is ``<deploymentid>/<requestID>/<api>/<bucket/object>`` (dedup of redeliveries).
"""

from __future__ import annotations

import re
from typing import Any

from sentinel.audit.parsers._common import (
    DEFAULT_OPTIONS,
    JsonError,
    ParserOptions,
    bad,
    d,
    header,
    i,
    iter_json,
    s,
)
from sentinel.audit.parsers._distribution import split_addr
from sentinel.audit.parsers._redact import redact_bytes, redact_text
from sentinel.audit.parsers.interface import ParseResult
from sentinel.audit.timeparse import parse_rfc3339
from sentinel.records import Action, AuditEvent, Unparsed, sha256_hex

SOURCE_KIND = "minio"

_PULL = frozenset({"GetObject", "SelectObjectContent", "GetObjectAttributes"})
_PUSH = frozenset(
    {
        "PutObject",
        "CompleteMultipartUpload",
        "CopyObject",
        "PostPolicyBucket",
        "PutObjectRetention",
        "PutObjectLegalHold",
        "PutObjectExtract",
    }
)
_DELETE = frozenset({"DeleteObject", "DeleteObjects", "DeleteMultipleObjects", "DeleteBucket"})
_CONFIG = re.compile(
    r"^(?:Put|Delete)Bucket(?:Policy|Lifecycle|Replication|Encryption|Notification|Tagging|"
    r"Versioning|ObjectLockConfig|Cors|Website|Acl)|^SetBucket|^(?:Add|Remove|Set|Update|Delete)"
    r"(?:User|Group|Policy|ServiceAccount|Canned|Config|Tier|RemoteTarget)|^PutBucket$|^MakeBucket"
)
_AUTH_ERRORS = re.compile(r"signature|access ?key|credential|InvalidToken|expired", re.I)
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_PROXY_HEADERS = ("X-Forwarded-For", "X-Real-Ip", "Forwarded")


def _action(api: str, status: int | None, error: str) -> Action:
    if status == 401 or (status == 403 and _AUTH_ERRORS.search(error)):
        return "auth_failure"
    if status == 403:
        return "access_denied"
    if api in _PULL:
        return "pull"
    if api in _PUSH:
        return "push"
    if api in _DELETE:
        return "delete"
    if _CONFIG.search(api):
        return "config_change"
    return "other"


def _actor(entry: dict[str, Any], req_headers: dict[str, Any]) -> str | None:
    if key := s(entry, "accessKey"):
        return key
    auth = header(req_headers, "Authorization") or ""
    if m := _CREDENTIAL.search(auth):
        return m[1]
    query = d(entry, "requestQuery")
    cred = header(query, "X-Amz-Credential")
    return cred.split("/", 1)[0] if cred else None


def _event_id(entry: dict[str, Any], api_name: str, artifact: str | None) -> str | None:
    """MinIO's request id plus what it acted on: a redelivered entry (the webhook and Kafka
    targets retry from their queue store) repeats it; distinct requests never share it."""
    request_id = s(entry, "requestID")
    if request_id is None:
        return None
    return f"{s(entry, 'deploymentid') or '-'}/{request_id}/{api_name}/{artifact or '-'}"


#: marks an entry already reported as ``Unparsed`` (a JSON ``null`` entry is still parsed)
_FAILED = object()


class MinioAuditParser:
    """Parser for one MinIO audit payload (entry, array or NDJSON batch)."""

    name = "minio-audit"
    source_kind = SOURCE_KIND

    def __init__(self, options: ParserOptions = DEFAULT_OPTIONS) -> None:
        self.options = options

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One payload or log line → one record per entry. Never raises; never keeps a secret."""
        if not raw.strip():
            return []
        docs = iter_json(raw)
        entries: list[tuple[Any, bytes]] = []
        out: ParseResult = []
        for doc in docs:
            if isinstance(doc, JsonError):
                out.append(self._bad(source, doc.reason, doc.raw, src_pos, len(entries)))
                entries.append((_FAILED, doc.raw))
            elif isinstance(doc.value, list) and doc.value:
                entries.extend((v, doc.raw) for v in doc.value)
            elif isinstance(doc.value, list):  # ``[]``: counted, never silently dropped
                out.append(self._bad(source, "empty MinIO audit batch", doc.raw, src_pos, 0))
                entries.append((_FAILED, doc.raw))
            else:
                entries.append((doc.value, doc.raw))
        many = len(entries) > 1
        for n, (entry, entry_raw) in enumerate(entries):
            if entry is _FAILED:
                continue
            pos = f"{src_pos}#{n}" if many else src_pos
            out.append(self._entry(entry, entry_raw, source, pos))
        return out

    def _bad(self, source: str, reason: str, raw: bytes, src_pos: str, n: int) -> Unparsed:
        return bad(
            source,
            reason,
            redact_bytes(raw),
            src_pos if n == 0 else f"{src_pos}#{n}",
            digest=sha256_hex(raw),
            length=len(raw),
        )

    def _entry(self, entry: Any, raw: bytes, source: str, src_pos: str) -> AuditEvent | Unparsed:
        def fail(reason: str) -> Unparsed:
            return bad(
                source, reason, redact_bytes(raw), src_pos, digest=sha256_hex(raw), length=len(raw)
            )

        if not isinstance(entry, dict):
            return fail("MinIO audit entry is not a JSON object")
        api = d(entry, "api")
        stamp = s(entry, "time")
        api_name = s(api, "name")
        if stamp is None or api_name is None:
            return fail("not a MinIO audit entry (no time or api.name)")
        try:
            ts = parse_rfc3339(stamp)
        except ValueError as exc:
            return fail(f"bad time: {exc}")
        status = i(api, "statusCode")
        req_headers = d(entry, "requestHeader")
        error = s(entry, "error") or s(api, "error") or ""
        action = _action(api_name, status, error)
        actor = _actor(entry, req_headers)
        bucket, obj = s(api, "bucket"), s(api, "object")
        artifact = f"{bucket}/{obj}" if bucket and obj else bucket
        remote = s(entry, "remotehost")
        client_ip, ip_source = split_addr(remote)
        if client_ip is not None:
            proxied = any(header(req_headers, h) for h in _PROXY_HEADERS)
            ip_source = "header" if proxied else "socket"
        ua = s(entry, "userAgent") or header(req_headers, "User-Agent")
        return AuditEvent(
            ts=ts,
            source=source,
            source_kind=SOURCE_KIND,
            action=action,
            outcome="unknown" if status is None else ("success" if status < 400 else "failure"),
            raw_sha256=sha256_hex(raw),
            src_pos=src_pos,
            actor=actor,
            actor_verified=actor is not None and status not in (401, 403),
            artifact=redact_text(artifact) if artifact else None,
            reference=header(d(entry, "responseHeader"), "x-amz-version-id"),
            client_ip=client_ip,
            client_ip_source=ip_source,
            user_agent=redact_text(ua) if ua else None,
            request_id=s(entry, "requestID"),
            event_id=_event_id(entry, api_name, artifact),
            http_status=status,
            detail=f"minio {api_name}",
        )
