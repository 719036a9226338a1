"""Turning one distribution 2.8.2 application-log entry (logrus fields) into audit events.

Shared by the JSON and text formatters: both give the same field names (``msg``, ``level``,
``http.request.*``, ``http.response.status``, ``auth.user.name``, ``vars.name``,
``vars.reference``, ``vars.digest``, ``err.code``; see distribution ``registry/handlers/app.go``
and ``context/http.go`` at v2.8.2). Which lines are audit events:

* ``response completed`` / ``response completed with error`` (they carry
  ``http.response.status``): one event, meaning from the request (``_distribution.classify``).
  The actor is ``auth.user.name`` when present — 2.8.2 only attaches it on some error lines —
  and is verified: the registry sets it after authenticating the request.
* ``error authenticating user "NAME": …``: ``auth_failure`` (status 401), actor ``NAME`` as
  *claimed*, ``actor_verified=False``.
* ``error authorizing context: …``:
  - ``… invalid authorization credential`` means no credentials were sent (the Basic-auth
    challenge). On ``/v2/`` it is the login challenge every client gets first: ``other``,
    outcome ``failure``, status 401. On a repository path it is an anonymous request that was
    refused: ``access_denied``.
  - ``… authentication failure`` repeats the ``error authenticating user`` line of the same
    request: no event (not counted twice).
  - any other reason (e.g. token auth ``insufficient scope``): ``access_denied``.
* everything else (``authorized request``, startup, notification-sink retries, debug lines):
  no event. These are well-formed lines that record no access; they are not ``Unparsed``.

``client_ip`` is ``http.request.remoteaddr``; see ``_distribution.split_addr`` for how a
header-sourced (``X-Forwarded-For``) address is told from a socket one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sentinel.audit.parsers._distribution import classify, is_digest, split_addr
from sentinel.audit.parsers.interface import ParseResult
from sentinel.records import Action, AuditEvent, sha256_hex

SOURCE_KIND = "distribution"

_AUTHN_FAILED = re.compile(r'^error authenticating user "(?P<user>(?:[^"\\]|\\.)*)"')
_AUTHN_PREFIX = 'error authenticating user "'  # what _AUTHN_FAILED needs: skip it cheaply
_AUTHZ = "error authorizing context:"
_NO_CREDENTIAL = "invalid authorization credential"
_AUTHN_FAILURE = "authentication failure"


def _str(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None or value == "":
        return None
    return str(value)


def _status(fields: Mapping[str, Any]) -> int | None:
    """``http.response.status`` (RFC 9110 section 15: 100–599), ``None`` when absent.

    Raises ``ValueError`` for a value that is there but no status code (``1e400``, ``"abc"``,
    ``true``, ``99999``): such a line is ``Unparsed``, never an event with an invented meaning.
    """
    value = fields.get("http.response.status")
    if value is None or value == "":
        return None
    code: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        code = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        code = int(value)
    if code is None or not 100 <= code <= 599:
        raise ValueError(f"http.response.status is not an HTTP status code: {value!r}")
    return code


def events_from_fields(
    fields: Mapping[str, Any],
    ts: datetime | None,
    *,
    raw: bytes,
    source: str,
    src_pos: str,
) -> ParseResult | str:
    """Events for one logrus entry, or a reason string when the entry should be ``Unparsed``.

    ``ts`` is the entry's time (aware UTC), or ``None`` when the line has no wall-clock time
    (logrus TTY format without ``FullTimestamp``); an event-bearing line without a time is
    reported as a reason, never given an invented time.
    """
    msg = str(fields.get("msg", ""))
    method = _str(fields, "http.request.method")
    uri = _str(fields, "http.request.uri")
    try:
        status = _status(fields)
    except ValueError as exc:
        return str(exc)
    actor = _str(fields, "auth.user.name")
    verified = actor is not None
    action: Action | None = None
    outcome = "failure"

    if (msg.startswith("response completed") or status is not None) and method and uri:
        meaning = classify(method, uri, status)
        action, outcome = meaning.action, meaning.outcome
        artifact, reference, digest = meaning.artifact, meaning.reference, meaning.digest
    elif msg.startswith(_AUTHN_PREFIX) and (m := _AUTHN_FAILED.match(msg)) and method and uri:
        meaning = classify(method, uri, 401)
        action, status = "auth_failure", 401
        artifact, reference, digest = meaning.artifact, meaning.reference, meaning.digest
        actor, verified = m["user"].replace('\\"', '"').replace("\\\\", "\\"), False
    elif msg.startswith(_AUTHZ) and method and uri:
        if msg.endswith(_AUTHN_FAILURE):
            return []
        meaning = classify(method, uri, None)
        status = 401 if _NO_CREDENTIAL in msg else 403
        action = "other" if _NO_CREDENTIAL in msg and meaning.artifact is None else "access_denied"
        artifact, reference, digest = meaning.artifact, meaning.reference, meaning.digest
    else:
        return []

    if ts is None:
        return (
            "event-bearing line has no wall-clock time"
            " (logrus TTY format counts seconds since start)"
        )
    artifact = artifact or _str(fields, "vars.name")
    ref_var = _str(fields, "vars.reference")
    if ref_var and not reference and not digest:
        if is_digest(ref_var):
            digest = ref_var
        else:
            reference = ref_var
    digest = digest or _str(fields, "vars.digest")
    client_ip, ip_source = split_addr(_str(fields, "http.request.remoteaddr"))
    return [
        AuditEvent(
            ts=ts,
            source=source,
            source_kind=SOURCE_KIND,
            action=action,
            outcome="success" if outcome == "success" else "failure",
            raw_sha256=sha256_hex(raw),
            src_pos=src_pos,
            actor=actor,
            actor_verified=verified,
            artifact=artifact,
            reference=reference,
            digest=digest,
            client_ip=client_ip,
            client_ip_source=ip_source,
            user_agent=_str(fields, "http.request.useragent"),
            request_id=_str(fields, "http.request.id"),
            http_method=method,
            http_status=status,
        )
    ]
