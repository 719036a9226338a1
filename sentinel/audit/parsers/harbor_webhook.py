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
artifact; ``QUOTA_EXCEED``/``harbor.quota.exceeded`` → ``push`` with outcome ``failure`` (Harbor
refused the push; ``detail`` carries its reason); ``REPLICATION``/
``harbor.replication.status.changed`` → one ``other`` event per replicated artifact
(``successful_artifact``, ``failed_artifact``; one event if neither is listed) whose
``artifact`` is the *source* repository (``<src namespace>/<name>``) and whose ``detail``
names both ends — ``replication <src endpoint> (<type>, <namespace>) -> <dest endpoint>
(<type>, <namespace>)``, the destination repository, the trigger and the policy's creator —
because a replication moves model data between registries, possibly across a border; every
other type (scanning, quota warning, …) → one ``other`` event whose ``detail`` names the type.
Outcome ``success`` (Harbor notifies completed operations) except: a retention or replication
(job or artifact) whose status is not success, ``SCANNING_FAILED``/``harbor.scan.failed`` and
a quota refusal → ``failure``.

``operator`` → ``actor``, verified (Harbor authenticated it; system users such as
``harbor-jobservice`` and robot accounts are kept). A *trigger type* in ``operator``
(``MANUAL``, ``SCHEDULE``/``scheduled``, ``EVENT_BASED``, ``auto``: Harbor writes the trigger,
not a user, for replication, retention and scan events) is no actor: ``actor`` is ``None`` and
``detail`` says ``trigger <name>``. A ``tag`` equal to the digest (pull by digest) is not a
reference. No client address is sent. CloudEvents ``id`` → ``event_id`` (``#<n>`` appended for
the n-th event after the first) and ``requestid`` → ``request_id``.

The default format has no id, and Harbor retries a failed delivery with the same payload, so
its ``event_id`` is derived from the payload itself: ``payload-sha256:<hex>``, the SHA-256 of
the body's RFC 8785 canonical JSON (``rfc8785``; the bytes' hash when the body cannot be
canonicalised, e.g. an integer beyond 2**53), ``#<n>`` appended as above. A redelivery — the
same payload, even re-indented or received once as a capture record and once bare — is then
one event. Caveat: the payload holds ``occur_at`` in whole seconds, the operator and the
resources (digest, tag) but nothing unique to one operation, so two genuinely separate
identical operations (the same user pulling the same digest twice within one second) give
byte-identical payloads and are counted once.
"""

from __future__ import annotations

from typing import Any

import rfc8785

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
#: what Harbor writes in ``operator`` when a trigger, not a user, started the job
TRIGGERS = frozenset({"manual", "schedule", "scheduled", "event_based", "eventbased", "auto"})
_DEFAULT_TYPES.update(
    {
        "REPLICATION": "replication.status.changed",
        "QUOTA_EXCEED": "quota.exceeded",
        "QUOTA_WARNING": "quota.warned",
        "SCANNING_FAILED": "scan.failed",
        "SCANNING_COMPLETED": "scan.completed",
        "SCANNING_STOPPED": "scan.stopped",
    }
)
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
        trigger = operator if operator and operator.lower() in TRIGGERS else None
        if trigger:
            operator = None
        event_id = s(body, "id") if cloud else _payload_id(body, delivery.body_bytes)
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
            if trigger:
                note = f"trigger {trigger}"
                extra["detail"] = f"{extra['detail']}; {note}" if extra.get("detail") else note
            out.append(
                AuditEvent(
                    **base, action=action, outcome=outcome, src_pos=pos, event_id=eid, **extra
                )
            )

        if kind in _ARTIFACT_ACTIONS:
            resources = _dicts(data.get("resources"))
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
            deleted = _dicts(ret.get("deleted_artifact"))
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
        if kind == "replication.status.changed":
            _replication(d(data, "replication"), add)
            return out
        first = next(iter(_dicts(data.get("resources"))), {})
        if kind == "quota.exceeded":
            why = s(d(data, "custom_attributes"), "Details")
            add(
                0,
                "push",
                "failure",
                artifact=repo_name,
                digest=s(first, "digest"),
                detail=f"harbor {kind}: {why}" if why else f"harbor {kind}",
            )
            return out
        add(
            0,
            "other",
            "failure" if kind == "scan.failed" else "success",
            artifact=repo_name,
            digest=s(first, "digest"),
            detail=f"harbor {kind}",
        )
        return out


def _payload_id(body: dict[str, Any], body_bytes: bytes) -> str:
    """``payload-sha256:<hex>`` of the body's RFC 8785 canonical form (module docstring)."""
    try:
        canonical = rfc8785.dumps(body)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        canonical = body_bytes.strip()
    return "payload-sha256:" + sha256_hex(canonical)


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list (``[]`` for anything that is not a list)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _end(res: dict[str, Any]) -> str:
    """``<endpoint> (<registry type>, <namespace>)`` of a replication end."""
    inner = ", ".join(x for x in (s(res, "registry_type"), s(res, "namespace")) if x)
    return f"{s(res, 'endpoint') or '?'} ({inner})" if inner else s(res, "endpoint") or "?"


def _replication(rep: dict[str, Any], add: Any) -> None:
    """One event per replicated artifact (module docstring)."""
    src, dest = d(rep, "src_resource"), d(rep, "dest_resource")
    where = f"replication {_end(src)} -> {_end(dest)}"
    creator = s(rep, "policy_creator")
    job_ok = _status_outcome(s(rep, "job_status")) if s(rep, "job_status") else "success"
    arts = [
        (a, ok)
        for key, ok in (("successful_artifact", True), ("failed_artifact", False))
        for a in _dicts(rep.get(key))
    ]
    for n, (art, listed_ok) in enumerate(arts or [({}, job_ok == "success")]):
        # name_tag: "alpine [1 item(s) in total]" or "alpine:v1"
        name_tag = (s(art, "name_tag") or "").split(" [", 1)[0].strip()
        name, _, tag = name_tag.partition(":")
        status = s(art, "status")
        ok = listed_ok and (status is None or _status_outcome(status) == "success")
        parts = [where]
        if name and s(dest, "namespace"):
            parts.append(f"to {s(dest, 'namespace')}/{name}")
        if creator:
            parts.append(f"policy by {creator}")
        src_ns = s(src, "namespace")
        add(
            n,
            "other",
            ("success" if ok else "failure") if art else job_ok,
            artifact=(f"{src_ns}/{name}" if src_ns else name) if name else None,
            reference=tag or None,
            detail="; ".join(parts),
        )


def _status_outcome(status: str | None) -> Outcome:
    if status is None:
        return "unknown"
    return "success" if status.upper() in ("SUCCESS", "SUCCEED", "SUCCEEDED") else "failure"
