"""``harbor-audit-syslog`` and ``harbor-audit-file``: Harbor's audit log, forwarded or on disk.

Harbor (``pkg/audit/manager.go``, 2.6+) logs each audit record through its own logger; with
"audit log forward endpoint" set it goes to a syslog server over TCP (Go ``log/syslog``:
``<PRI>RFC3339 host audit[pid]: …``), and Harbor's ``log`` container (rsyslog) writes the same
records to ``/var/log/harbor/audit.log`` with an RFC 3164 header (``Jul 19 06:54:41 host
audit[1]: …``). The message itself::

    2022-07-19T06:54:41Z [INFO] [/pkg/audit/manager.go:75][operator="admin"
      resourceType="project" time="2022-07-19 06:54:41.148 +0000 UTC m=+104056.78"]:
      action:delete, resource:test01/photon:sha256:c371…

Later releases add fields: 2.9 ``resourceType="…"`` in the bracket; 2.13+ (``pkg/auditext``)
``action:%s, resource:%s, operation_description:%s``. Every ``, key:`` pair is read; the
description goes to ``detail`` with ``password=``/``token=``-style values redacted.

Mapping: ``operator`` → ``actor`` (verified: Harbor authenticated it; ``""`` → ``None``;
only claimed on a failed login).
``resource`` ``project/repo:tag``, ``project/repo@sha256:…`` or ``project/repo:sha256:…`` →
``artifact``/``reference``/``digest``. ``action``: ``pull`` → ``pull``; ``create`` of an
artifact or tag → ``push``; ``delete`` of a project, repository or artifact → ``delete``
(an artifact deleted by tag removes the manifest and all its tags, so with
``resourceType="artifact"`` it is a ``delete`` whatever the reference; without a type a
``repo:tag`` resource is taken as a tag), of a tag → ``untag``. A project ``delete`` removes
every repository in the project: ``artifact`` is the project name, or, when Harbor logged only
the project id (2.9: ``resourceType="project"``, ``resource:1``), that id, and ``detail`` says
which. ``login``/``logout`` → ``login`` (``…fail…``, or a ``login`` whose
``operation_result`` is false, → ``auth_failure`` with the user name only claimed); any other
action on a project, and any action on a project member, user, robot, configuration, policy,
quota… (``resourceType`` not artifact/repository/tag, or a bare number as resource without a
type) → ``config_change``: these change access or settings, not stored content; anything
else → ``other``.

Known gaps (DESIGN.md "Known traps"): the record has no result before 2.13 (``outcome`` is
``unknown`` unless ``operation_result`` says) and never a client address; HEAD-only pulls are
not recorded at all.

Time: the record's ``time="…"`` (Go ``time.String()``, zone stated) is the operation time; else
the logger's RFC 3339 stamp; else the syslog header (no zone, no year: the configured zone and
``clock`` — ``ts_zone_assumed`` set). A line from another Harbor component (``core[…]``,
``registry[…]``, a wrapped table row) is ``Unparsed`` ("not a Harbor audit record"), so a
misrouted log shows up instead of vanishing.
"""

from __future__ import annotations

import re

from sentinel.audit.parsers._common import DEFAULT_OPTIONS, ParserOptions, bad, strip_pri
from sentinel.audit.parsers._distribution import is_digest
from sentinel.audit.parsers._redact import redact_text
from sentinel.audit.parsers.interface import ParseResult
from sentinel.audit.timeparse import Stamp, parse_go_string, parse_rfc3339, parse_syslog
from sentinel.records import Action, AuditEvent, Outcome, sha256_hex

SOURCE_KIND = "harbor"

_HEADER_3164 = re.compile(
    r"^(?P<ts>[A-Z][a-z]{2} {1,2}\d{1,2} \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T\S+) "
    r"(?P<host>\S+) (?P<tag>[\w.\-/]+)(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)$"
)
_HEADER_5424 = re.compile(
    r"^1 (?P<ts>\S+) (?P<host>\S+) (?P<tag>\S+) (?P<pid>\S+) \S+ (?:-|\[.*?\]) ?(?P<msg>.*)$"
)
_RECORD = re.compile(
    r"^(?P<logts>\d{4}-\d{2}-\d{2}T\S+) \[(?P<level>[A-Z]+)\] \[(?P<caller>[^\]]*)\]"
    r"\[(?P<fields>[^\]]*)\]: (?P<body>.*)$"
)
_FIELD = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_PAIR_SPLIT = re.compile(r"(?:^|, )([a-z][A-Za-z_]*):")
_CONFIG_TYPES = frozenset(
    {"project", "user", "robot", "configuration", "user_group", "member", "policy", "quota"}
)
_ARTIFACT_TYPES = frozenset({"artifact", "repository", "tag", ""})
#: resource types whose ``delete`` removes stored content (a tag's delete is an ``untag``)
_DELETE_TYPES = frozenset({"project", "repository", "artifact"})


def _pairs(body: str) -> dict[str, str]:
    parts = _PAIR_SPLIT.split(body)
    # ['', key1, value1, key2, value2, ...]
    if len(parts) < 3 or parts[0].strip():
        return {}
    return {parts[k]: parts[k + 1].strip() for k in range(1, len(parts) - 1, 2)}


def split_resource(resource: str) -> tuple[str | None, str | None, str | None]:
    """``project/repo[:tag|@digest|:digest]`` → (artifact, reference, digest)."""
    if not resource:
        return None, None, None
    if "@" in resource:
        name, _, ref = resource.partition("@")
        return name, None, ref if is_digest(ref) else None
    slash = resource.rfind("/")
    colon = resource.find(":", slash + 1)
    if colon < 0:
        return resource, None, None
    name, ref = resource[:colon], resource[colon + 1 :]
    if is_digest(ref):
        return name, None, ref
    return name, ref, None


def _action(op: str, rtype: str, reference: str | None, digest: str | None, res: str) -> Action:
    op = op.lower()
    if "login" in op or "logout" in op or rtype == "user_login":
        return "auth_failure" if "fail" in op else "login"
    if op == "delete" and rtype in _DELETE_TYPES:
        return "delete"  # a project or an artifact goes with everything in it, tags included
    if rtype in _CONFIG_TYPES or (not rtype and res.isdigit()):
        return "config_change"
    if rtype not in _ARTIFACT_TYPES:
        return "config_change" if op in ("create", "update", "delete") else "other"
    if op == "pull":
        return "pull"
    if op in ("create", "push"):
        return "push"
    if op == "delete":
        if rtype == "tag" or (reference and not digest):
            return "untag"
        return "delete"
    if op == "update":
        return "config_change"
    return "other"


def _project_delete_detail(resource: str, description: str | None) -> str:
    what = (
        f"project id {resource} deleted (Harbor logged the project id, not its name)"
        if resource.isdigit()
        else f"project {resource or '(unnamed)'} deleted"
    )
    what += ": every repository in it is deleted"
    return f"{what}; {description}" if description else what


def _outcome(pairs: dict[str, str]) -> Outcome:
    result = (pairs.get("operation_result") or pairs.get("result") or "").lower()
    if result in ("true", "success", "succeeded"):
        return "success"
    if result in ("false", "failure", "failed"):
        return "failure"
    return "unknown"


class HarborAuditParser:
    """One Harbor audit record: a syslog message (``harbor-audit-syslog``) or an
    ``audit.log`` line (``harbor-audit-file``). Both accept either header style."""

    source_kind = SOURCE_KIND

    def __init__(self, name: str, options: ParserOptions = DEFAULT_OPTIONS) -> None:
        self.name = name
        self.options = options

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One line/message (without terminator) → 0..1 events, or ``Unparsed``. Never raises."""
        text = strip_pri(raw).decode("utf-8", errors="replace").strip()
        if not text:
            return []
        header_ts: str | None = None
        tag = None
        m = _HEADER_5424.match(text) or _HEADER_3164.match(text)
        if m:
            header_ts, tag, text = m["ts"], m["tag"], m["msg"]
        rec = _RECORD.match(text)
        if (tag is not None and tag != "audit") or not rec:
            what = f" (syslog tag {tag!r})" if tag else ""
            return [bad(source, f"not a Harbor audit record{what}", raw, src_pos)]
        fields = dict(_FIELD.findall(rec["fields"]))
        pairs = _pairs(rec["body"])
        op = pairs.get("action") or pairs.get("operation")
        resource = pairs.get("resource", "")
        if not op:
            return [bad(source, "Harbor audit record without action", raw, src_pos)]
        try:
            stamp = self._time(fields.get("time"), rec["logts"], header_ts)
        except ValueError as exc:
            return [bad(source, f"bad time: {exc}", raw, src_pos)]
        rtype = (
            fields.get("resourceType") or pairs.get("resourceType") or pairs.get("resource_type")
        )
        rtype = (rtype or "").lower()
        artifact, reference, digest = (
            split_resource(resource)
            if rtype in _ARTIFACT_TYPES and not resource.isdigit()
            else (resource or None, None, None)
        )
        operator = fields.get("operator") or pairs.get("operator") or None
        action = _action(op, rtype, reference, digest, resource)
        outcome = _outcome(pairs)
        detail = (
            redact_text(pairs["operation_description"])
            if pairs.get("operation_description")
            else None
        )
        if rtype == "project" and action == "delete":
            detail = _project_delete_detail(resource, detail)
        if action == "login" and outcome == "failure":
            action = "auth_failure"  # 2.13+: "action:login, … operation_result:false"
        if action == "auth_failure":
            outcome = "failure"
        return [
            AuditEvent(
                ts=stamp.ts,
                source=source,
                source_kind=SOURCE_KIND,
                action=action,
                outcome=outcome,
                raw_sha256=sha256_hex(raw),
                src_pos=src_pos,
                actor=operator,
                actor_verified=operator is not None and action != "auth_failure",
                artifact=artifact,
                reference=reference,
                digest=digest,
                ts_zone_assumed=stamp.zone_assumed,
                detail=detail,
            )
        ]

    def _time(self, go_time: str | None, log_ts: str, header_ts: str | None) -> Stamp:
        if go_time:
            return Stamp(parse_go_string(go_time))
        try:
            return Stamp(parse_rfc3339(log_ts))
        except ValueError:
            if header_ts is None:
                raise
        try:
            return Stamp(parse_rfc3339(header_ts))
        except ValueError:
            return parse_syslog(header_ts, zone=self.options.zone, reference=self.options.clock())
