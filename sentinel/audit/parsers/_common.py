"""Helpers shared by the issue-4 parsers: per-source options, JSON access, payload unwrapping.

``ParserOptions`` carries what a format needs beyond the raw bytes: the configured zone for
sources that write none (syslog headers, uvicorn's wall clock), the clock that picks the year
of a syslog line, a ``jsonmap`` field mapping and a webhook secret. A parser built with the
defaults (UTC, the real clock, no mapping, no secret) is what ``PARSERS`` holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from sentinel.audit.parsers.interface import loads_limited
from sentinel.records import Unparsed
from sentinel.timefmt import utcnow

if TYPE_CHECKING:
    from sentinel.audit.parsers.jsonmap import JsonMapping


@dataclass(frozen=True, slots=True)
class ParserOptions:
    """Per-source parser settings (all optional).

    ``zone``: zone of zone-less times (events then carry ``ts_zone_assumed``); ``clock``:
    returns aware UTC "now", the reference for syslog's missing year; ``mapping``: the
    ``jsonmap`` field mapping; ``webhook_secret``: shared secret for webhook signatures
    (MLflow), bytes; ``signature_checked_upstream``: the caller (the daemon's webhook
    receiver, ``MLflowSignatureAuth``) verified each delivery's signature before handing it
    over, so the parser needs no secret to call it verified.
    """

    zone: tzinfo = UTC
    clock: Callable[[], datetime] = field(default=utcnow)
    mapping: JsonMapping | None = None
    webhook_secret: bytes | None = None
    signature_checked_upstream: bool = False


DEFAULT_OPTIONS = ParserOptions()


def s(obj: Any, key: str) -> str | None:
    """``obj[key]`` when ``obj`` is a dict and the value a non-empty string, else ``None``."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def d(obj: Any, key: str) -> dict[str, Any]:
    """``obj[key]`` when it is a dict, else ``{}``."""
    if not isinstance(obj, dict):
        return {}
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def i(obj: Any, key: str) -> int | None:
    """``obj[key]`` as an int (JSON number or digit string; never a bool), else ``None``."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def header(headers: Mapping[str, Any], name: str) -> str | None:
    """Case-insensitive HTTP header lookup (RFC 9110 section 5.1); lists give their first item."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            if isinstance(value, list):
                value = value[0] if value else None
            return value if isinstance(value, str) else None
    return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook payload: the parsed body, its bytes and the HTTP headers if known."""

    body: Any
    body_bytes: bytes
    headers: dict[str, Any]


def unwrap_capture(doc: Any, raw: bytes) -> Delivery | str:
    """A payload, or Sentinel's capture record ``{"received_at","path","headers","body"}``
    (``body`` the verbatim request body as a string) → ``Delivery``; a reason string when the
    capture record's body is not JSON."""
    if (
        isinstance(doc, dict)
        and isinstance(doc.get("body"), str)
        and isinstance(doc.get("headers"), dict)
        and "received_at" in doc
    ):
        body_bytes = doc["body"].encode("utf-8")
        try:
            body = loads_limited(body_bytes)
        except ValueError as exc:
            return f"capture record body is not JSON: {exc}"
        return Delivery(body, body_bytes, doc["headers"])
    return Delivery(doc, raw, {})


@dataclass(frozen=True, slots=True)
class JsonDoc:
    """One JSON document found in a payload: byte ``offset`` in it, the value, its bytes."""

    offset: int
    value: Any
    raw: bytes


@dataclass(frozen=True, slots=True)
class JsonError:
    """A part of a payload that is not JSON: byte ``offset``, reason, its bytes."""

    offset: int
    reason: str
    raw: bytes


def iter_json(raw: bytes) -> list[JsonDoc | JsonError]:
    """Split a payload into JSON documents: the whole payload when it is one document (pretty
    printed or not), else one document per non-blank line (NDJSON batches, RFC 7464-style
    without the RS). A JSON array at top level stays one document (the caller decides)."""
    try:
        return [JsonDoc(0, loads_limited(raw), raw)]
    except ValueError as whole_error:
        lines = raw.split(b"\n")
        if len([ln for ln in lines if ln.strip()]) < 2:
            return [JsonError(0, f"not JSON: {whole_error}", raw)]
    out: list[JsonDoc | JsonError] = []
    offset = 0
    for line in lines:
        body = line.rstrip(b"\r")
        if body.strip():
            try:
                out.append(JsonDoc(offset, loads_limited(body), body))
            except ValueError as exc:
                out.append(JsonError(offset, f"not JSON: {exc}", body))
        offset += len(line) + 1
    return out


def bad(
    source: str,
    reason: str,
    raw: bytes,
    src_pos: str,
    *,
    digest: str | None = None,
    length: int | None = None,
) -> Unparsed:
    """An ``Unparsed``; ``digest`` (hex SHA-256) and ``length`` (bytes) describe the original
    input when ``raw`` is a redacted or partial copy of it."""
    if digest is None:
        return Unparsed(source=source, reason=reason, raw=raw, src_pos=src_pos)
    size = len(raw) if length is None else length
    return Unparsed(source, reason, raw, src_pos, raw_sha256=digest, raw_len=size)


def json_object(raw: bytes, source: str, src_pos: str, what: str) -> dict[str, Any] | Unparsed:
    """``raw`` as a JSON object (depth-limited ``loads_limited``), or the ``Unparsed`` saying
    why not: ``not JSON: …`` or ``not <what> (not an object)``."""
    try:
        doc = loads_limited(raw)
    except ValueError as exc:
        return bad(source, f"not JSON: {exc}", raw, src_pos)
    if not isinstance(doc, dict):
        return bad(source, f"not {what} (not an object)", raw, src_pos)
    return doc


def load_delivery(raw: bytes, source: str, src_pos: str) -> Delivery | Unparsed:
    """``raw`` as a webhook delivery: a bare JSON body or a captured ``{headers, body}`` record
    (``unwrap_capture``); the ``Unparsed`` saying why not otherwise."""
    try:
        doc = loads_limited(raw)
    except ValueError as exc:
        return bad(source, f"not JSON: {exc}", raw, src_pos)
    delivery = unwrap_capture(doc, raw)
    if isinstance(delivery, str):
        return bad(source, delivery, raw, src_pos)
    return delivery


_SYSLOG_PRI = re.compile(rb"^<\d{1,3}>")


def strip_pri(raw: bytes) -> bytes:
    """Drop an RFC 3164/5424 ``<PRI>`` prefix if present."""
    return _SYSLOG_PRI.sub(b"", raw, count=1)
