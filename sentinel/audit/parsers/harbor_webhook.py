"""``harbor-webhook``: Harbor 2.x webhook payloads, default and CloudEvents formats.

Payloads (goharbor/website ``configure-webhooks.md``; Harbor ``src/pkg/notifier/model``):

* default: ``{"type": "PUSH_ARTIFACT", "occur_at": <unix s>, "operator": "…",
  "event_data": {"resources": [{"digest", "tag", "resource_url"}], "repository":
  {"repo_full_name", …}, …}}``
* CloudEvents 1.0 (Harbor 2.8+): ``{"specversion": "1.0", "id", "requestid", "source",
  "type": "harbor.artifact.pushed", "time": RFC 3339, "data": {same as event_data},
  "operator"}``

Accepted raw shapes: the payload itself or Sentinel's capture record
(``{"received_at", "path", "headers", "body"}``). Bytes that are not JSON — e.g. the docs'
CloudEvents samples with ``//`` comments — are one ``Unparsed`` ("not JSON: …").

Mapping: ``PUSH_ARTIFACT``/``harbor.artifact.pushed`` → ``push``, ``PULL_ARTIFACT``/``…pulled``
→ ``pull``, ``DELETE_ARTIFACT``/``…deleted`` → ``delete`` — one event per resource;
``TAG_RETENTION``/``harbor.tag_retention.finished`` → one ``delete`` per successfully deleted
artifact; every other type (scanning, quota, replication, …) → one ``other`` event whose
``detail`` names the type. Outcome ``success`` (Harbor notifies completed operations) except a
retention/replication whose status is not success. ``operator`` → ``actor``, verified (Harbor
authenticated it; system operators such as ``harbor-jobservice``, ``auto``, ``MANUAL`` are kept
verbatim). A ``tag`` equal to the digest (pull by digest) is not a reference. No client address
is sent. CloudEvents ``id`` → ``event_id`` (``#<n>`` appended for the n-th resource after the
first) and ``requestid`` → ``request_id``; the default format has no id (dedup by position).
"""

from __future__ import annotations

from typing import Any

from sentinel.audit.parsers._common import (
    DEFAULT_OPTIONS,
    Delivery,
    ParserOptions,
    bad,
    d,
    load_delivery,
    s,
)
from sentinel.audit.parsers._distribution import is_digest
from sentinel.audit.parsers.interface import ParseResult
from sentinel.audit.timeparse import parse_rfc3339, parse_unix
from sentinel.records import Action, AuditEvent, Outcome, Unparsed, sha256_hex

SOURCE_KIND = "harbor"

_DEFAULT_TYPES: dict[str, str] = {
    "PUSH_ARTIFACT": "artifact.pushed",
    "PULL_ARTIFACT": "artifact.pulled",
    "DELETE_ARTIFACT": "artifact.deleted",
    "TAG_RETENTION": "tag_retention.finished",
}
_ARTIFACT_ACTIONS: dict[str, Action] = {
    "artifact.pushed": "push",
    "artifact.pulled": "pull",
    "artifact.deleted": "delete",
}


class HarborWebhookParser:
    """Parser for one Harbor webhook payload (either format)."""

    name = "harbor-webhook"
    source_kind = SOURCE_KIND

    def __init__(self, options: ParserOptions = DEFAULT_OPTIONS) -> None:
        self.options = options

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One payload → one record per affected artifact, or one ``Unparsed``. Never raises."""
        if not raw.strip():
            return []
        delivery = load_delivery(raw, source, src_pos)
        if isinstance(delivery, Unparsed):
            return [delivery]
        body = delivery.body
        if not isinstance(body, dict):
            return [bad(source, "not a Harbor webhook payload (not an object)", raw, src_pos)]
        try:
            if body.get("specversion") is not None:
                return self._events(body, delivery, raw, source, src_pos, cloud=True)
            if isinstance(body.get("type"), str) and "event_data" in body:
                return self._events(body, delivery, raw, source, src_pos, cloud=False)
        except ValueError as exc:
            return [bad(source, f"bad Harbor webhook: {exc}", raw, src_pos)]
        return [bad(source, "not a Harbor webhook payload (no type/event_data)", raw, src_pos)]

    def _events(
        self,
        body: dict[str, Any],
        delivery: Delivery,
        raw: bytes,
        source: str,
        src_pos: str,
        *,
        cloud: bool,
    ) -> ParseResult:
        raw_type = s(body, "type") or ""
        if cloud:
            kind = raw_type.removeprefix("harbor.")
            stamp = s(body, "time")
            if stamp is None:
                raise ValueError("CloudEvent without time")
            ts = parse_rfc3339(stamp)
            data = d(body, "data")
        else:
            kind = _DEFAULT_TYPES.get(raw_type, raw_type)
            occur = body.get("occur_at")
            if not isinstance(occur, int | str):
                raise ValueError("no occur_at")
            ts = parse_unix(occur)
            data = d(body, "event_data")
        operator = s(body, "operator")
        event_id = s(body, "id")
        digest = sha256_hex(raw)
        base: dict[str, Any] = {
            "ts": ts,
            "source": source,
            "source_kind": SOURCE_KIND,
            "raw_sha256": digest,
            "actor": operator,
            "actor_verified": operator is not None,
            "request_id": s(body, "requestid"),
        }
        repo = d(data, "repository")
        repo_name = s(repo, "repo_full_name")
        if repo_name is None and s(repo, "namespace") and s(repo, "name"):
            repo_name = f"{s(repo, 'namespace')}/{s(repo, 'name')}"
        out: ParseResult = []

        def add(n: int, action: Action, outcome: Outcome, **extra: Any) -> None:
            eid = event_id if n == 0 or event_id is None else f"{event_id}#{n}"
            pos = src_pos if n == 0 else f"{src_pos}#{n}"
            out.append(
                AuditEvent(
                    **base, action=action, outcome=outcome, src_pos=pos, event_id=eid, **extra
                )
            )

        if kind in _ARTIFACT_ACTIONS:
            resources = [r for r in data.get("resources") or [] if isinstance(r, dict)]
            for n, res in enumerate(resources or [{}]):
                tag = s(res, "tag")
                add(
                    n,
                    _ARTIFACT_ACTIONS[kind],
                    "success",
                    artifact=repo_name,
                    reference=tag if tag and not is_digest(tag) else None,
                    digest=s(res, "digest"),
                )
            return out
        if kind == "tag_retention.finished":
            ret = d(data, "retention")
            project = s(ret, "project_name")
            deleted = [a for a in ret.get("deleted_artifact") or [] if isinstance(a, dict)]
            for n, art in enumerate(deleted):
                name_tag = s(art, "name_tag") or ""
                name, _, tag = name_tag.partition(":")
                ok = (s(art, "status") or "").upper() == "SUCCESS"
                add(
                    n,
                    "delete",
                    "success" if ok else "failure",
                    artifact=f"{project}/{name}" if project and name else name or None,
                    reference=tag or None,
                    detail="tag retention",
                )
            if not deleted:
                add(0, "other", _status_outcome(s(ret, "result")), detail=f"harbor {kind}")
            return out
        first = next((r for r in data.get("resources") or [] if isinstance(r, dict)), {})
        status = s(d(data, "replication"), "job_status")
        add(
            0,
            "other",
            _status_outcome(status) if status else "success",
            artifact=repo_name,
            digest=s(first, "digest"),
            detail=f"harbor {kind}",
        )
        return out


def _status_outcome(status: str | None) -> Outcome:
    if status is None:
        return "unknown"
    return "success" if status.upper() in ("SUCCESS", "SUCCEED", "SUCCEEDED") else "failure"
