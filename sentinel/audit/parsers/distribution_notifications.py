"""``distribution-notifications``: CNCF distribution 2.8.2 webhook envelopes.

Payload (``notifications/event.go``, docs ``about/notifications.md``; media type
``application/vnd.docker.distribution.events.v1+json``)::

    {"events": [{"id", "timestamp", "action", "target": {"mediaType", "digest", "size",
      "repository", "tag", "url", "fromRepository"...}, "request": {"id", "addr", "host",
      "method", "useragent"}, "actor": {"name"}, "source": {"addr", "instanceID"}}, ...]}

Accepted raw shapes: the envelope itself (compact or pretty-printed JSON), or Sentinel's own
capture record ``{"received_at", "path", "headers", "body"}`` whose ``body`` is the envelope
string (the corpus' ``notifications-received.jsonl``). One payload gives one record per event.

Mapping:

* ``push`` → ``push``; ``mount`` → ``mount`` (``repository`` is the destination).
* ``pull`` with ``request.method`` ``GET`` → ``pull``. ``pull`` with ``HEAD`` → ``other``:
  2.8.2 reports a blob existence check (HEAD) as a pull, but no content left the registry.
* ``delete`` whose target has a ``digest`` → ``delete``; a ``delete`` target with only a
  ``tag`` → ``untag``. A DELETE by digest emits both (one per tag that pointed at it): two
  records with distinct event ids and the same ``request_id``.
* any other action → ``other``.
* outcome is ``success``: the registry only notifies completed operations.
* ``actor.name`` → ``actor`` with ``actor_verified=True`` (the registry sets it from the
  authenticated request context); an empty ``actor`` gives ``None``/``False``.
* ``request.addr`` → ``client_ip``: with a port it is the socket peer (``socket``); without a
  port the registry took it from ``X-Forwarded-For``/``X-Real-Ip`` (``header``; see
  ``_distribution.split_addr``).
* ``id`` → ``event_id`` (the dedup key for at-least-once redelivery).
* ``timestamp`` RFC 3339 with any fraction and zone → UTC.

``raw_sha256`` is the hash of the whole raw payload; each event's ``src_pos`` is the caller's
``src_pos`` plus ``#<index in the envelope>``. A payload that is not an envelope gives one
``Unparsed``; a malformed event inside a good envelope gives one ``Unparsed`` for that event.
"""

from __future__ import annotations

from typing import Any

from sentinel.audit.parsers._distribution import split_addr
from sentinel.audit.parsers.interface import ParseResult, loads_limited, unparsed
from sentinel.records import Action, AuditEvent, Unparsed, sha256_hex
from sentinel.timefmt import parse_ts

MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


def _s(obj: Any, key: str) -> str | None:
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _action(raw_action: str, method: str | None, target: dict[str, Any]) -> Action:
    if raw_action == "pull":
        return "other" if (method or "").upper() == "HEAD" else "pull"
    if raw_action == "push":
        return "push"
    if raw_action == "mount":
        return "mount"
    if raw_action == "delete":
        return "delete" if _s(target, "digest") else "untag"
    return "other"


class DistributionNotificationsParser:
    """Parser for one distribution notification payload (``{"events": [...]}``)."""

    name = "distribution-notifications"
    source_kind = "distribution"

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One payload → one record per event, or one ``Unparsed``. Never raises."""
        if not raw.strip():
            return []
        try:
            doc = loads_limited(raw)
        except ValueError as exc:
            return [unparsed(source, f"not JSON: {exc}", raw, src_pos)]
        if isinstance(doc, dict) and "events" not in doc and isinstance(doc.get("body"), str):
            try:
                doc = loads_limited(doc["body"])
            except ValueError as exc:
                return [unparsed(source, f"capture record body is not JSON: {exc}", raw, src_pos)]
        if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
            return [unparsed(source, "not a notification envelope (no events list)", raw, src_pos)]
        digest = sha256_hex(raw)
        out: ParseResult = []
        for index, item in enumerate(doc["events"]):
            pos = f"{src_pos}#{index}"
            out.append(self._event(item, raw=raw, digest=digest, source=source, src_pos=pos))
        return out

    def _event(
        self, item: Any, *, raw: bytes, digest: str, source: str, src_pos: str
    ) -> AuditEvent | Unparsed:
        def bad(reason: str) -> Unparsed:
            return Unparsed(
                source=source,
                reason=reason,
                raw=raw,
                src_pos=src_pos,
                raw_sha256=digest,
                raw_len=len(raw),
            )

        if not isinstance(item, dict):
            return bad("event is not a JSON object")
        action = _s(item, "action")
        stamp = _s(item, "timestamp")
        if action is None or stamp is None:
            return bad("event has no action or timestamp")
        try:
            ts = parse_ts(stamp)
        except ValueError as exc:
            return bad(f"bad timestamp: {exc}")
        target = item.get("target")
        target = target if isinstance(target, dict) else {}
        request = item.get("request")
        request = request if isinstance(request, dict) else {}
        method = _s(request, "method")
        actor = _s(item.get("actor"), "name")
        client_ip, ip_source = split_addr(_s(request, "addr"))
        return AuditEvent(
            ts=ts,
            source=source,
            source_kind=self.source_kind,
            action=_action(action, method, target),
            outcome="success",
            raw_sha256=digest,
            src_pos=src_pos,
            actor=actor,
            actor_verified=actor is not None,
            artifact=_s(target, "repository"),
            reference=_s(target, "tag"),
            digest=_s(target, "digest"),
            client_ip=client_ip,
            client_ip_source=ip_source,
            user_agent=_s(request, "useragent"),
            request_id=_s(request, "id"),
            event_id=_s(item, "id"),
            http_method=method,
        )
