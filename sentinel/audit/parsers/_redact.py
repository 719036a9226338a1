"""Removing credentials from registry payloads before anything is stored.

MinIO's audit entries copy the request headers verbatim (``requestHeader.Authorization``: the
SigV4 ``Credential=…/Signature=…``), and presigned URLs carry ``X-Amz-Signature``,
``X-Amz-Credential`` and ``X-Amz-Security-Token`` in the query (AWS SigV4 docs, "Authenticating
requests: using query parameters"). Sentinel stores no raw payload for a parsed event, but an
``Unparsed`` keeps up to 4 KiB of its input as evidence: that copy is redacted.

Policy (documented in ``minio_audit``): ``raw_sha256`` is always the SHA-256 of the *original*
bytes, so an auditor holding the original log can still link it to the ledger record, while the
secret itself never reaches the ledger. The value is replaced by ``REDACTED``; a SigV4
``Authorization`` keeps its scheme and ``Credential=<access key>/…`` scope (the access key id is
an identifier, not a secret) and loses its signature.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "REDACTED"

#: header and query names whose values are secrets (compared case-insensitively)
SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-amz-server-side-encryption-customer-key",
        "x-amz-copy-source-server-side-encryption-customer-key",
        "x-minio-internal-sse-key",
        "signature",
        "awsaccesskeyid",
        "x-mlflow-signature",
        "secretkey",
        "secret_key",
        "password",
        "token",
    }
)

_NAMES = "|".join(sorted((re.escape(n) for n in SECRET_NAMES), key=len, reverse=True))
# "Name": "value" in (possibly broken) JSON text
_JSON_PAIR = re.compile(rb'("(?i:' + _NAMES.encode() + rb')"\s*:\s*)"(?:[^"\\]|\\.)*"?')
# name=value in a query string or a SigV4 header (…,Signature=hex)
_QUERY_PAIR = re.compile(rb"(?<![\w-])((?i:" + _NAMES.encode() + rb")=)[^&\s\",]*")
_SIGV4 = re.compile(r"^(AWS4-HMAC-SHA256 Credential=[^,]*),.*$", re.DOTALL)
_QUERY_TEXT = re.compile(r"(?<![\w-])((?i:" + _NAMES + r")=)[^&\s\",]*")


def redact_value(name: str, value: str) -> str:
    """The stored form of header/query ``name``'s ``value``: SigV4 keeps its credential scope."""
    if name.lower() == "authorization":
        m = _SIGV4.match(value)
        if m:
            return f"{m[1]},Signature={REDACTED}"
    return REDACTED


def redact_text(text: str) -> str:
    """Redact ``name=value`` query/SigV4 pairs inside free text (paths, URLs)."""
    return _QUERY_TEXT.sub(lambda m: m[1] + REDACTED, text)


def redact_json(value: Any) -> Any:
    """A deep copy of a parsed JSON value with every secret-named key's value redacted and
    secret query parameters inside strings removed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in SECRET_NAMES:
                out[key] = redact_value(key, item) if isinstance(item, str) else REDACTED
            else:
                out[key] = redact_json(item)
        return out
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_bytes(raw: bytes) -> bytes:
    """Redact secrets in raw bytes that may not even be valid JSON (kept ``Unparsed`` input):
    ``"Authorization": "…"`` pairs and ``X-Amz-Signature=…`` query pairs."""
    out = _JSON_PAIR.sub(lambda m: m[1] + b'"' + REDACTED.encode() + b'"', raw)
    return _QUERY_PAIR.sub(lambda m: m[1] + REDACTED.encode(), out)
