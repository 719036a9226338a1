"""``k8s-audit``: Kubernetes API-server audit events, ``audit.k8s.io/v1`` and ``v1beta1``.

Input (k8s.io/apiserver ``pkg/apis/audit/v1/types.go``, ``v1beta1``): the log backend writes
one ``Event`` JSON object per line; the webhook backend posts an ``EventList`` (``items``) —
both are accepted (one record per event). Fields used: ``auditID``, ``stage``, ``verb``,
``user.username``, ``impersonatedUser``, ``sourceIPs``, ``userAgent``, ``objectRef.{resource,
subresource, namespace, name, apiGroup}``, ``responseStatus.code``, ``stageTimestamp`` (v1;
``timestamp`` in v1beta1; else ``requestReceivedTimestamp``), ``annotations``
(``authorization.k8s.io/decision``).

Mapping: ``create``/``update``/``patch`` → ``config_change``; ``delete``/``deletecollection`` →
``delete``; ``get``/``list``/``watch`` of ``secrets`` → ``pull`` (secret material left the API
server), other reads → ``other``; a ``create`` on a ``pods/exec|attach|portforward``
subresource → ``other`` with ``detail``. Status 401 → ``auth_failure``; 403 (or decision
``forbid``) → ``access_denied``. ``user.username`` → ``actor`` (verified, except
``system:anonymous``); an impersonated user is named in ``detail``. ``artifact`` is
``[namespace/]resource[/subresource]/name``.

``sourceIPs`` lists ``X-Forwarded-For`` entries first and the socket peer last (the API server
appends the remote address when it differs): the *last* entry is taken, as ``socket``.
One request, one event. The API server logs a request at up to four stages
(``RequestReceived``, ``ResponseStarted`` for long-running requests such as exec and watch,
``ResponseComplete``, ``Panic``). The event is taken from the *final* stage
(``ResponseComplete`` or ``Panic``), with ``auditID`` → ``event_id``, so a redelivery or the
same request seen twice is one event. A non-final stage is held by the parser (in memory, at
most ``MAX_PENDING`` requests) and merged into its final stage when that arrives: it yields
nothing itself and is counted in ``stages_merged``. A request whose final stage never arrives
is still recorded, from its latest non-final stage with outcome ``unknown`` and ``detail``
naming the stage: when the reader finishes (``flush``: end of the files of ``sentinel audit
parse|ingest``, a file tailer or a receiver stopping), or when more than ``MAX_PENDING``
requests are pending (the oldest is recorded). An event without ``auditID`` is recorded as
it comes.
Limit: a held stage lives only in memory, so a daemon that is killed (not stopped) between a
request's first and final stage loses the non-final stage; the final stage, when it arrives,
is recorded as usual.

The raw event may hold request/response objects (secrets at level ``RequestResponse``); only
the fields above are copied into an event, and an ``Unparsed`` copy is redacted
(``sentinel.redact``: the Secret's ``data``/``stringData`` values).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import Any

from sentinel.audit.parsers._common import DEFAULT_OPTIONS, ParserOptions, bad, d, i, json_object, s
from sentinel.audit.parsers._distribution import split_addr
from sentinel.audit.parsers.interface import ParseResult
from sentinel.audit.timeparse import parse_rfc3339
from sentinel.records import Action, AuditEvent, Outcome, Unparsed, sha256_hex

SOURCE_KIND = "k8s"
API_VERSIONS = frozenset({"audit.k8s.io/v1", "audit.k8s.io/v1beta1"})
_READS = frozenset({"get", "list", "watch"})
#: stages after which the API server logs nothing more for a request (audit/v1 ``Stage``)
FINAL_STAGES = frozenset({"ResponseComplete", "Panic"})
#: requests held at a non-final stage, at most (memory: one ``AuditEvent`` each)
MAX_PENDING = 10_000


def _action(verb: str, resource: str | None, sub: str | None) -> Action:
    if verb in ("delete", "deletecollection"):
        return "delete"
    if sub in ("exec", "attach", "portforward", "proxy"):
        return "other"
    if verb in ("create", "update", "patch"):
        return "config_change"
    if verb in _READS and resource == "secrets":
        return "pull"
    return "other"


class K8sAuditParser:
    """Parser for one Kubernetes audit ``Event`` line or ``EventList`` payload."""

    name = "k8s-audit"
    source_kind = SOURCE_KIND

    def __init__(self, options: ParserOptions = DEFAULT_OPTIONS) -> None:
        self.options = options
        #: (source, auditID) → the event of its latest non-final stage, oldest first
        self._pending: OrderedDict[tuple[str, str], tuple[AuditEvent, str]] = OrderedDict()
        #: non-final stages merged into their request's final stage (they yield no event)
        self.stages_merged = 0
        self._lock = threading.Lock()  # receivers parse on several threads

    @property
    def pending(self) -> int:
        """Requests seen only at a non-final stage so far (held, not yet recorded)."""
        return len(self._pending)

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One line/payload → one record per request at its final stage, or ``Unparsed``;
        non-final stages are held (module docstring). Never raises."""
        if not raw.strip():
            return []
        doc = json_object(raw, source, src_pos, "a Kubernetes audit Event")
        if isinstance(doc, Unparsed):
            return [doc]
        digest = sha256_hex(raw)
        if doc.get("kind") == "EventList" and isinstance(doc.get("items"), list):
            items = [(item, f"{src_pos}#{n}") for n, item in enumerate(doc["items"])]
        else:
            items = [(doc, src_pos)]
        out: ParseResult = []
        for item, pos in items:
            rec = self._event(item, raw, digest, source, pos)
            out.extend(self._stage(rec, item, source))
        return out

    def flush(self, source: str | None = None) -> ParseResult:
        """Record every held request (of ``source``, or all) from its latest non-final stage,
        outcome ``unknown``: the reader has finished. Never raises."""
        with self._lock:
            keys = [k for k in self._pending if source is None or k[0] == source]
            return [_unfinished(*self._pending.pop(k)) for k in keys]

    def _stage(self, rec: AuditEvent | Unparsed, ev: Any, source: str) -> ParseResult:
        if isinstance(rec, Unparsed) or rec.event_id is None:
            return [rec]
        with self._lock:
            return self._stage_locked(rec, ev, source)

    def _stage_locked(self, rec: AuditEvent, ev: Any, source: str) -> ParseResult:
        assert rec.event_id is not None
        key = (source, rec.event_id)
        stage = s(ev, "stage") or "ResponseComplete"  # v1beta1 events without a stage are final
        if stage in FINAL_STAGES:
            if self._pending.pop(key, None) is not None:
                self.stages_merged += 1
            return [rec]
        if key in self._pending:
            self.stages_merged += 1  # RequestReceived then ResponseStarted: keep the later
        self._pending[key] = (rec, stage)
        self._pending.move_to_end(key)
        out: ParseResult = []
        while len(self._pending) > MAX_PENDING:
            _, (old, old_stage) = self._pending.popitem(last=False)
            out.append(_unfinished(old, old_stage))
        return out

    def _event(
        self, ev: Any, raw: bytes, digest: str, source: str, src_pos: str
    ) -> AuditEvent | Unparsed:
        def fail(reason: str) -> Unparsed:
            return bad(source, reason, raw, src_pos, digest=digest, length=len(raw))

        if not isinstance(ev, dict) or ev.get("kind") != "Event":
            return fail("not a Kubernetes audit Event (kind is not Event)")
        api_version = ev.get("apiVersion")
        if api_version is not None and api_version not in API_VERSIONS:
            return fail(f"unsupported audit apiVersion {api_version!r}")
        verb = s(ev, "verb")
        stamp = s(ev, "stageTimestamp") or s(ev, "timestamp") or s(ev, "requestReceivedTimestamp")
        if verb is None or stamp is None:
            return fail("audit Event without verb or timestamp")
        try:
            ts = parse_rfc3339(stamp)
        except ValueError as exc:
            return fail(f"bad timestamp: {exc}")
        ref = d(ev, "objectRef")
        resource, sub = s(ref, "resource"), s(ref, "subresource")
        parts = [s(ref, "namespace"), resource, sub, s(ref, "name")]
        artifact = "/".join(p for p in parts if p) or None
        code = i(d(ev, "responseStatus"), "code")
        decision = s(d(ev, "annotations"), "authorization.k8s.io/decision")
        action = _action(verb, resource, sub)
        if code == 401:
            action = "auth_failure"
        elif code == 403 or decision == "forbid":
            action = "access_denied"
        outcome: Outcome = "unknown" if code is None else ("success" if code < 400 else "failure")
        if decision == "forbid":
            outcome = "failure"
        user = s(d(ev, "user"), "username")
        imp = s(d(ev, "impersonatedUser"), "username")
        given = ev.get("sourceIPs")
        ips = [ip for ip in given if isinstance(ip, str) and ip] if isinstance(given, list) else []
        client_ip, _ = split_addr(ips[-1]) if ips else (None, None)
        audit_id = s(ev, "auditID")
        detail = f"{verb} {sub}" if sub else None
        if imp:
            detail = f"{detail + '; ' if detail else ''}impersonating {imp}"
        return AuditEvent(
            ts=ts,
            source=source,
            source_kind=SOURCE_KIND,
            action=action,
            outcome=outcome,
            raw_sha256=digest,
            src_pos=src_pos,
            actor=user,
            actor_verified=user is not None and user != "system:anonymous",
            artifact=artifact,
            client_ip=client_ip,
            client_ip_source="socket" if client_ip else None,
            user_agent=s(ev, "userAgent"),
            event_id=audit_id,
            http_status=code,
            detail=detail,
        )


def _unfinished(ev: AuditEvent, stage: str) -> AuditEvent:
    note = f"seen only at stage {stage} (no final stage)"
    detail = f"{ev.detail}; {note}" if ev.detail else note
    return dataclasses.replace(ev, outcome="unknown", detail=detail)
