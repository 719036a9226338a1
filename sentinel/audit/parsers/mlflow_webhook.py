"""``mlflow-webhook``: MLflow 3 model-registry webhooks, with signature verification.

Body (MLflow 3 ``mlflow/webhooks/types.py``; corpus ``mlflow-live``): ``{"entity", "action",
"timestamp": RFC 3339, "data": {...}}``. Headers: ``X-MLflow-Delivery-Id`` (UUID, the same on
every retry), ``X-MLflow-Timestamp`` (unix seconds), ``X-MLflow-Signature``:
``v1,`` + base64(HMAC-SHA256(secret, ``<delivery id>.<timestamp>.<body bytes>``)).

Accepted raw shapes: a body, or Sentinel's capture record ``{"received_at", "path",
"headers", "body"}`` (what the receiver stores; the only shape that carries the headers).
When the parser has a secret (``ParserOptions.webhook_secret``, ``sentinel audit parse
--webhook-secret-file``) every delivery must be verified: a capture record must carry a valid
signature, else it is ``Unparsed`` ("signature …"), and a bare body — which carries no
signature to verify — is ``Unparsed`` too ("unverifiable …"): with a secret, nothing
unverified becomes an event. The daemon's receiver verifies the signature itself before it
hands a capture record over (its parser is built with
``ParserOptions.signature_checked_upstream``). Otherwise — no secret and no receiver — nothing
is verified: anyone who can write the input can forge a delivery. Such events keep
``actor_verified`` false and their ``detail`` ends with
``"; signature not verified: no webhook secret configured"``, and the parser logs one warning
(``logging``, level WARNING) the first time it makes one, which ``sentinel audit parse``
prints on stderr.

Mapping (``entity.action``):

=====================================  ============  ===================================
event                                  action        fields
=====================================  ============  ===================================
registered_model.created               register      artifact = name
model_version.created                  register      artifact = name, reference = version
model_version_alias.created            tag           reference = alias, detail names version
model_version_alias.deleted            untag         reference = alias
model_version_tag.set / .deleted       other         reference = version, detail = key
prompt*, anything else                 other         artifact = name if present
=====================================  ============  ===================================

Outcome ``success``; no actor and no client address are sent (``None``).
``event_id`` is ``body-sha256:<hex>``, the SHA-256 of the body bytes (surrounding whitespace
removed): MLflow signs and retries the same body bytes under one ``X-MLflow-Delivery-Id``, and
the body holds the event's own microsecond ``timestamp``, so a retry, and the same delivery
seen as a capture record and as a bare body, give one event. ``X-MLflow-Delivery-Id`` →
``request_id`` (a capture record only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sentinel.audit.parsers._common import (
    DEFAULT_OPTIONS,
    ParserOptions,
    bad,
    d,
    header,
    load_delivery,
    s,
)
from sentinel.audit.parsers.interface import ParseResult
from sentinel.audit.timeparse import parse_rfc3339, parse_unix
from sentinel.records import Action, AuditEvent, Unparsed, sha256_hex

log = logging.getLogger(__name__)

SOURCE_KIND = "mlflow"
#: appended to ``detail`` of an event whose delivery's signature nobody checked
UNVERIFIED = "signature not verified: no webhook secret configured"
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"


def mlflow_signature(secret: bytes, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends: ``v1,<base64 HMAC-SHA256>``."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify_mlflow_signature(
    secret: bytes | str,
    headers: Mapping[str, Any],
    body: bytes,
    *,
    tolerance: float | None = None,
    now: datetime | None = None,
) -> bool:
    """True when ``headers`` carry a valid MLflow 3 signature of ``body`` under ``secret``.

    Headers are matched case-insensitively. ``X-MLflow-Signature`` may hold several
    space-separated ``v1,<base64>`` values (key rotation); any valid one passes. The MAC is
    compared with ``hmac.compare_digest`` (constant time). With ``tolerance`` (seconds) the
    ``X-MLflow-Timestamp`` must also be within that distance of ``now`` (replay window).
    Never raises: missing or malformed headers give ``False``.
    """
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    sig_header = header(headers, SIGNATURE_HEADER)
    stamp = header(headers, TIMESTAMP_HEADER)
    delivery = header(headers, DELIVERY_HEADER)
    if not key or not sig_header or not stamp or not delivery:
        return False
    if tolerance is not None:
        try:
            sent = parse_unix(stamp)
        except ValueError:
            return False
        reference = now if now is not None else datetime.now(sent.tzinfo)
        if abs((reference - sent).total_seconds()) > tolerance:
            return False
    expected = hmac.new(key, f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
    ok = False
    for item in sig_header.split():
        version, _, value = item.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        ok |= hmac.compare_digest(given, expected)
    return ok


_ACTIONS: dict[str, Action] = {
    "registered_model.created": "register",
    "model_version.created": "register",
    "model_version_alias.created": "tag",
    "model_version_alias.deleted": "untag",
}


class MlflowWebhookParser:
    """Parser for one MLflow 3 webhook delivery."""

    name = "mlflow-webhook"
    source_kind = SOURCE_KIND

    def __init__(self, options: ParserOptions = DEFAULT_OPTIONS) -> None:
        self.options = options
        #: events made from deliveries whose signature was not verified (no secret)
        self.unverified = 0

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One delivery → one event, or ``Unparsed``. Never raises."""
        if not raw.strip():
            return []
        delivery = load_delivery(raw, source, src_pos)
        if isinstance(delivery, Unparsed):
            return [delivery]
        secret = self.options.webhook_secret
        if secret is not None and not delivery.headers:
            reason = "unverifiable: a bare body has no X-MLflow-Signature (a secret is set)"
            return [bad(source, reason, raw, src_pos)]
        if secret is not None and not verify_mlflow_signature(
            secret, delivery.headers, delivery.body_bytes
        ):
            return [bad(source, "signature missing or invalid (X-MLflow-Signature)", raw, src_pos)]
        body = delivery.body
        entity, action_name = s(body, "entity"), s(body, "action")
        stamp = s(body, "timestamp")
        if entity is None or action_name is None or stamp is None:
            return [bad(source, "not an MLflow webhook (no entity/action/timestamp)", raw, src_pos)]
        try:
            ts = parse_rfc3339(stamp)
        except ValueError as exc:
            return [bad(source, f"bad timestamp: {exc}", raw, src_pos)]
        kind = f"{entity}.{action_name}"
        data = d(body, "data")
        version = data.get("version")
        version_s = str(version) if isinstance(version, int | str) and version != "" else None
        alias = s(data, "alias")
        reference = alias if entity == "model_version_alias" else version_s
        detail = kind
        if alias and version_s:
            detail = f"{kind}: alias {alias} -> version {version_s}"
        elif entity == "model_version_tag" and s(data, "key"):
            detail = f"{kind}: {s(data, 'key')}"
        if secret is None and not self.options.signature_checked_upstream:
            detail = f"{detail}; {UNVERIFIED}"
            if not self.unverified:
                log.warning(
                    "mlflow-webhook source %r: no webhook secret configured, delivery "
                    "signatures are NOT verified (a forged delivery would be accepted); "
                    "`sentinel audit parse|ingest --webhook-secret-file` verifies them",
                    source,
                )
            self.unverified += 1
        return [
            AuditEvent(
                ts=ts,
                source=source,
                source_kind=SOURCE_KIND,
                action=_ACTIONS.get(kind, "other"),
                outcome="success",
                raw_sha256=sha256_hex(raw),
                src_pos=src_pos,
                artifact=s(data, "name"),
                reference=reference,
                event_id="body-sha256:" + sha256_hex(delivery.body_bytes.strip()),
                request_id=header(delivery.headers, DELIVERY_HEADER),
                detail=detail,
            )
        ]
