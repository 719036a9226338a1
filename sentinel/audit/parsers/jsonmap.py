"""``jsonmap``: generic JSON lines, turned into events by a field mapping from the configuration.

For a registry Sentinel has no parser for, as long as it logs one JSON object per line. The
mapping is data, validated with pydantic at load; paths are looked up, never evaluated::

    # jsonmap.yaml — referenced from [[audit.files]] mapping = "jsonmap.yaml"
    fields:                      # event field -> path in the JSON object
      ts: time                   # dotted path ("a.b.0.c": digits index lists) ...
      action: /event/type        # ... or an RFC 6901 JSON pointer (starts with "/")
      actor: user.name
      artifact: model.name
      reference: model.version
      client_ip: remote_addr
      http_status: status
    time_format: auto            # auto | rfc3339 | unix | unix_ms | apache | syslog | go
                                 # | a strptime pattern such as "%Y/%m/%d %H:%M:%S"
    actions:                     # source value -> Sentinel action (DESIGN.md closed set)
      model.download: pull
      model.upload: push
    default_action: other        # for unmapped values; null makes them Unparsed
    outcomes: {ok: success, denied: failure}
    actor_verified: false        # does the source authenticate the actor it logs?
    client_ip_source: header     # socket | header (say socket only if it is the TCP peer)

Fields: ``ts`` and ``action`` are required; optional ``outcome``, ``actor``,
``actor_verified`` (a boolean in the record, overrides the constant), ``client_ip_source``
(``socket``/``header`` in the record, overrides the constant), ``artifact``,
``reference``, ``digest``, ``client_ip``, ``user_agent``, ``request_id``, ``event_id``,
``http_method``, ``http_status``, ``detail``. Without an ``outcome`` path the outcome comes from
``http_status`` (< 400 success) or is ``unknown``. Zone-less times use the configured zone
(``ts_zone_assumed``).

``DEFAULT_MAPPING`` (what ``PARSERS["jsonmap"]`` uses) reads Sentinel's own event JSON —
``sentinel audit parse --json`` output — so a trail can be re-imported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sentinel.audit.parsers._common import DEFAULT_OPTIONS, ParserOptions, bad
from sentinel.audit.parsers.interface import ParseResult, loads_limited
from sentinel.audit.timeparse import (
    Stamp,
    parse_any,
    parse_apache,
    parse_go_string,
    parse_local,
    parse_rfc3339,
    parse_syslog,
    parse_unix,
)
from sentinel.errors import ConfigError
from sentinel.records import ACTIONS, Action, AuditEvent, ClientIPSource, Outcome, sha256_hex

SOURCE_KIND = "jsonmap"
MAX_MAPPING_BYTES = 64 * 1024
_SEGMENT = re.compile(r"^[^\s]{1,128}$")

Path_ = Annotated[str, Field(min_length=1, max_length=512)]


def split_path(path: str) -> tuple[str, ...]:
    """A dotted path or RFC 6901 JSON pointer → its segments. Raises ``ValueError``."""
    if path.startswith("/"):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    else:
        parts = path.split(".")
    if not 1 <= len(parts) <= 16 or not all(_SEGMENT.match(p) for p in parts):
        raise ValueError(f"bad path {path!r}: 1-16 non-empty segments without spaces")
    return tuple(parts)


def lookup(doc: Any, segments: tuple[str, ...]) -> Any:
    """The value at ``segments`` in ``doc`` (digits index lists), or ``None``."""
    node = doc
    for seg in segments:
        if isinstance(node, dict):
            node = node.get(seg)
        elif isinstance(node, list) and seg.isdigit() and int(seg) < len(node):
            node = node[int(seg)]
        else:
            return None
    return node


class FieldPaths(BaseModel):
    """Where each event field is in the source record (dotted path or JSON pointer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: Path_
    action: Path_
    outcome: Path_ | None = None
    actor: Path_ | None = None
    actor_verified: Path_ | None = None
    artifact: Path_ | None = None
    reference: Path_ | None = None
    digest: Path_ | None = None
    client_ip: Path_ | None = None
    client_ip_source: Path_ | None = None
    user_agent: Path_ | None = None
    request_id: Path_ | None = None
    event_id: Path_ | None = None
    http_method: Path_ | None = None
    http_status: Path_ | None = None
    detail: Path_ | None = None

    @field_validator("*")
    @classmethod
    def _valid_path(cls, value: str | None) -> str | None:
        if value is not None:
            split_path(value)
        return value


class JsonMapping(BaseModel):
    """A validated ``jsonmap`` mapping (schema in the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: FieldPaths
    time_format: Annotated[str, Field(min_length=1, max_length=64)] = "auto"
    actions: dict[str, Action] = {}
    default_action: Action | None = "other"
    outcomes: dict[str, Outcome] = {}
    actor_verified: bool = False
    client_ip_source: ClientIPSource = "header"

    @field_validator("time_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        named = {"auto", "rfc3339", "unix", "unix_ms", "apache", "syslog", "go"}
        if value not in named and "%" not in value:
            raise ValueError(f"time_format must be one of {sorted(named)} or a strptime pattern")
        return value


DEFAULT_MAPPING = JsonMapping(
    fields=FieldPaths(
        ts="ts",
        action="action",
        outcome="outcome",
        actor="actor",
        actor_verified="actor_verified",
        artifact="artifact",
        reference="reference",
        digest="digest",
        client_ip="client_ip",
        client_ip_source="client_ip_source",
        user_agent="user_agent",
        request_id="request_id",
        event_id="event_id",
        http_method="http_method",
        http_status="http_status",
        detail="detail",
    ),
    time_format="rfc3339",
    actions={a: a for a in sorted(ACTIONS)},  # type: ignore[misc]
    default_action=None,
    outcomes={"success": "success", "failure": "failure", "unknown": "unknown"},
)


def load_mapping(path: Path) -> JsonMapping:
    """Read a mapping file (YAML or JSON, at most 64 KiB). Raises ``ConfigError``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_MAPPING_BYTES:
        raise ConfigError(str(path), f"mapping file larger than {MAX_MAPPING_BYTES} bytes")
    try:
        doc = yaml.safe_load(data) if path.suffix not in (".json",) else json.loads(data)
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(str(path), f"not valid YAML/JSON: {exc}") from exc
    try:
        return JsonMapping.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(str(path), first["msg"], key=key or None) from exc


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list) or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class JsonMapParser:
    """Parser for one JSON line under a ``JsonMapping``."""

    name = "jsonmap"
    source_kind = SOURCE_KIND

    def __init__(self, options: ParserOptions = DEFAULT_OPTIONS) -> None:
        self.options = options
        self.mapping = options.mapping or DEFAULT_MAPPING
        fields = self.mapping.fields
        self._paths = {
            name: split_path(value)
            for name, value in fields.model_dump().items()
            if value is not None
        }

    def _get(self, doc: Any, name: str) -> Any:
        path = self._paths.get(name)
        return lookup(doc, path) if path else None

    def _time(self, value: Any) -> Stamp:
        fmt = self.mapping.time_format
        zone = self.options.zone
        if fmt == "auto":
            return parse_any(value, zone=zone, reference=self.options.clock())
        if fmt in ("unix", "unix_ms"):
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                if fmt == "unix_ms":
                    value = float(value) / 1000.0
                return Stamp(parse_unix(value))
            raise ValueError(f"not unix time: {value!r}")
        if not isinstance(value, str):
            raise ValueError(f"time is not a string: {value!r}")
        if fmt == "rfc3339":
            return Stamp(parse_rfc3339(value))
        if fmt == "apache":
            return Stamp(parse_apache(value))
        if fmt == "go":
            return Stamp(parse_go_string(value))
        if fmt == "syslog":
            return parse_syslog(value, zone=zone, reference=self.options.clock())
        return parse_local(value, fmt, zone=zone)

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One JSON line → one event, or ``Unparsed``. Never raises."""
        if not raw.strip():
            return []
        try:
            doc = loads_limited(raw)
        except ValueError as exc:
            return [bad(source, f"not JSON: {exc}", raw, src_pos)]
        if not isinstance(doc, dict):
            return [bad(source, "not a JSON object", raw, src_pos)]
        stamp_value = self._get(doc, "ts")
        if stamp_value is None:
            return [bad(source, f"no time at {self.mapping.fields.ts!r}", raw, src_pos)]
        try:
            stamp = self._time(stamp_value)
        except ValueError as exc:
            return [bad(source, f"bad time: {exc}", raw, src_pos)]
        action_value = _text(self._get(doc, "action"))
        action = self.mapping.actions.get(action_value or "", self.mapping.default_action)
        if action is None:
            return [bad(source, f"unmapped action {action_value!r}", raw, src_pos)]
        status_value = self._get(doc, "http_status")
        status = (
            status_value
            if isinstance(status_value, int) and not isinstance(status_value, bool)
            else int(status_value)
            if isinstance(status_value, str) and status_value.isdigit()
            else None
        )
        outcome: Outcome = "unknown"
        outcome_value = _text(self._get(doc, "outcome"))
        if outcome_value is not None:
            outcome = self.mapping.outcomes.get(outcome_value, "unknown")
        elif status is not None:
            outcome = "success" if status < 400 else "failure"
        actor = _text(self._get(doc, "actor"))
        verified_value = self._get(doc, "actor_verified")
        verified = (
            verified_value if isinstance(verified_value, bool) else self.mapping.actor_verified
        )
        client_ip = _text(self._get(doc, "client_ip"))
        ip_source: ClientIPSource = self.mapping.client_ip_source
        given_source = self._get(doc, "client_ip_source")
        if given_source in ("socket", "header"):
            ip_source = given_source
        return [
            AuditEvent(
                ts=stamp.ts,
                source=source,
                source_kind=SOURCE_KIND,
                action=action,
                outcome=outcome,
                raw_sha256=sha256_hex(raw),
                src_pos=src_pos,
                actor=actor,
                actor_verified=verified and actor is not None,
                artifact=_text(self._get(doc, "artifact")),
                reference=_text(self._get(doc, "reference")),
                digest=_text(self._get(doc, "digest")),
                client_ip=client_ip,
                client_ip_source=ip_source if client_ip else None,
                user_agent=_text(self._get(doc, "user_agent")),
                request_id=_text(self._get(doc, "request_id")),
                event_id=_text(self._get(doc, "event_id")),
                ts_zone_assumed=stamp.zone_assumed,
                http_method=_text(self._get(doc, "http_method")),
                http_status=status,
                detail=_text(self._get(doc, "detail")),
            )
        ]
