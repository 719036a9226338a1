"""Removing credentials from input before any copy of it is stored or printed.

Sentinel stores no raw payload for a parsed event, but an ``Unparsed`` keeps up to 4 KiB of its
input as evidence (``raw_kept``). ``sentinel.records.Unparsed`` passes every kept copy through
``redact_bytes`` when it is constructed, whatever the format or the caller (parsers, the file
reader, the tailer, the webhook receiver): this module is the one place that decides what a
secret looks like. Parsers also use ``redact_text``/``redact_json`` on fields they copy into
events (MinIO paths and user agents).

What is a secret (header, JSON key and query parameter names compared case-insensitively):

- ``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``, ``X-Registry-Auth``
  (Docker Engine API: base64 of a JSON ``{"username", "password", …}``), ``X-Registry-Config``,
  a Docker config's ``auth``/``identitytoken``, API keys, any name ending in ``signature``,
  ``token``, ``private-key`` or ``api-key`` (``X-MLflow-Signature``, ``X-Hub-Signature-256``,
  ``X-Amz-Security-Token``, ``client_secret`` ...), and any name with ``secret``,
  ``password`` or ``passwd`` anywhere in it (``AWS_SECRET_ACCESS_KEY``,
  ``aws_secret_access_key``, ``MINIO_ROOT_PASSWORD``); AWS SigV4 query parameters
  (``X-Amz-Signature``, ``X-Amz-Credential``; AWS SigV4 docs, "Authenticating requests: using
  query parameters") and SSE-C keys;
- such a name's value in every written form: a JSON member (also escaped, also a list),
  a header line, ``Name: value`` in the middle of a log line, Go's ``map[Name:[…]]``, a query
  parameter, and an environment/ini/shell assignment (``NAME=value``, ``name = value``,
  ``export NAME="value"``);
- the ``value`` of a ``{"name": <such a name>, "value": …}`` pair (a Kubernetes container's
  ``env``);
- base64 of a JSON object holding such a name (an ``X-Registry-Auth`` value wherever it is
  written, even without its header name);
- ``Bearer``/``Basic`` credentials (RFC 6750, RFC 7617) wherever they appear;
- the password of a URL's userinfo (``scheme://user:password@host``, RFC 3986 section 3.2.1);
- the values of a Kubernetes Secret's ``data``/``stringData`` (in input that mentions a
  secret: ``objectRef.resource: secrets``, ``kind: Secret``), including the JSON-escaped copy
  in ``kubectl.kubernetes.io/last-applied-configuration``.

``redact_bytes`` works on bytes that may not be JSON at all (truncated payloads, broken
capture records, a JSON string holding escaped JSON, log text): it is regular-expression
based and errs towards removing too much. A value is replaced by ``REDACTED``; a SigV4
``Authorization`` keeps its scheme and ``Credential=<access key>/…`` scope (the access key id
is an identifier, not a secret) and loses its signature.

Policy: ``raw_sha256`` of an ``Unparsed`` is always the SHA-256 of the *original* bytes, so an
auditor holding the original log can still link it to the ledger record, while the secret
itself never reaches the ledger or the terminal.
"""

from __future__ import annotations

import base64
import re
from typing import Any

REDACTED = "REDACTED"
_R = REDACTED.encode()

#: header, key and query names whose values are secrets (compared case-insensitively)
SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-registry-auth",
        "x-registry-config",
        "auth",
        "identitytoken",
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
        "secretaccesskey",
        "password",
        "passwd",
        "token",
        "apikey",
        "api-key",
        "api_key",
        "x-api-key",
    }
)

#: name suffixes that make any name secret (``x-hub-signature-256`` → "signature" inside)
_SUFFIX = r"(?:signature(?:-256)?|secret|password|passwd|token|private[-_]?key|api[-_]?key)"
#: words that make a name secret wherever they are in it (``AWS_SECRET_ACCESS_KEY``,
#: ``MYSQL_ROOT_PASSWORD_HASH``, ``secretKey``)
_INFIX = r"(?:secret|password|passwd)"
_NAMES = "|".join(sorted((re.escape(n) for n in SECRET_NAMES), key=len, reverse=True))
_NAME = rf"(?:{_NAMES}|[\w.-]*{_SUFFIX}|[\w.-]*{_INFIX}[\w.-]*)"
_NAME_RE = re.compile(rf"(?i:{_NAME})")

# "Name": "value" in (possibly broken) JSON text; the value may be cut short
_JSON_PAIR = re.compile(rb'("(?i:' + _NAME.encode() + rb')"\s*:\s*)"(?:[^"\\]|\\.)*"?')
# \"Name\": \"value\" inside a JSON string holding JSON (a capture record's body)
_ESC_PAIR = re.compile(rb'(\\+"(?i:' + _NAME.encode() + rb')\\+"\s*:\s*\\+")(?:[^"\\]|\\+[^"\\])*')
# "Name": [ "value", ... ] (Go/JSON header maps keep lists of values)
_JSON_LIST = re.compile(rb'(\\*"(?i:' + _NAME.encode() + rb')\\*"\s*:\s*\[)[^\]]*')
# Go's map printing, header=map[Authorization:[Bearer x]]
_GO_MAP = re.compile(rb"((?<![\w-])(?i:" + _NAME.encode() + rb"):\[)[^\]]*")
# "Name: value" header lines (raw HTTP text, also after an escaped \n inside JSON strings)
_HEADER_LINE = re.compile(
    rb"((?:^|(?<=\n)|(?<=\\n))(?i:" + _NAME.encode() + rb")[ \t]*:[ \t]*)[^\r\n\\\"\[][^\r\n\\\"]*",
    re.MULTILINE,
)
# name=value in a query string or a SigV4 header (…,Signature=hex)
_QUERY_PAIR = re.compile(rb"(?<![\w-])((?i:" + _NAME.encode() + rb")=)[^&\s\",;'\\][^&\s\",;]*")
# env/ini/shell assignments: NAME = value, NAME="value", export NAME='value' (also escaped)
_ASSIGN = re.compile(
    rb"(?<![\w-])((?i:" + _NAME.encode() + rb")[ \t]*=[ \t]*)"
    rb"(?:(\\*[\"'])(?:[^\"'\r\n\\]|\\(?![\"']))*(?:\\*[\"'])?|[^\s&\",;'\\]+)"
)
# "Name: value" in the middle of a line (a header dumped into a log message); a Bearer/Basic
# value is left to _SCHEME, a JSON value ("Name": "…") was handled by _JSON_PAIR
_INLINE_HEADER = re.compile(
    rb"(?<![\w-])((?i:" + _NAME.encode() + rb")[ \t]*:[ \t]*)"
    rb"(?!(?i:bearer|basic)\s)(?=[^\s\"'\\\[{])[^\s\",;\\]+"
)
# a Kubernetes env var / name-value pair: {"name": "AWS_SECRET_ACCESS_KEY", "value": "…"}
_NAME_VALUE = re.compile(
    rb'(\\*"name\\*"\s*:\s*\\*"(?i:' + _NAME.encode() + rb')\\*"\s*,\s*'
    rb'\\*"value\\*"\s*:\s*(\\*"))(?:[^"\\]|\\+[^"\\])*'
)
# base64 (standard or URL-safe) of a JSON object ("{\"" encodes as eyJ): X-Registry-Auth's
# {"username", "password", ...}, a Docker config "auth"; redacted when it holds a secret name
_B64_JSON = re.compile(rb"eyJ[A-Za-z0-9+/_-]{8,}={0,2}")
_JSON_KEY = re.compile(rb'"(?i:' + _NAME.encode() + rb')"\s*:')
# Bearer/Basic credentials wherever they are (RFC 6750 b64token, RFC 7617)
_SCHEME = re.compile(rb"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{6,}")
# scheme://user:password@host
_USERINFO = re.compile(rb"(://[^/\s:@\"'\\]*:)[^@/\s\"'\\]+(?=@)")
# a Kubernetes Secret's data/stringData object (possibly escaped, possibly cut short)
_SECRET_HINT = re.compile(rb"(?i)secret")
_K8S_DATA = re.compile(rb'(\\*"(?:data|stringData)\\*"\s*:\s*\{)([^{}]*)')
_K8S_VALUE = re.compile(rb'(\\*"\s*:\s*)(?:(\\*")(?:[^"\\]|\\+[^"\\])*(?:\\*")?|[^,}\s]+)')

_SIGV4 = re.compile(r"^(AWS4-HMAC-SHA256 Credential=[^,]*),.*$", re.DOTALL)
_QUERY_TEXT = re.compile(rf"(?<![\w-])((?i:{_NAME})=)[^&\s\",;]*")


def is_secret_name(name: str) -> bool:
    """True when a header, key or query parameter called ``name`` holds a secret."""
    return _NAME_RE.fullmatch(name) is not None


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
            if isinstance(key, str) and is_secret_name(key):
                out[key] = redact_value(key, item) if isinstance(item, str) else REDACTED
            else:
                out[key] = redact_json(item)
        return out
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def _k8s_data(m: re.Match[bytes]) -> bytes:
    body = _K8S_VALUE.sub(lambda v: v[1] + (v[2] or b"") + _R + (v[2] or b""), m[2])
    return m[1] + body


def _b64_json(m: re.Match[bytes]) -> bytes:
    token = m[0]
    try:
        decoded = base64.b64decode(token.replace(b"-", b"+").replace(b"_", b"/") + b"==")
    except ValueError:
        return token
    return _R if _JSON_KEY.search(decoded) else token


def redact_bytes(raw: bytes) -> bytes:
    """``raw`` with every secret (module docstring) replaced by ``REDACTED``.

    Works on any bytes (valid, truncated or escaped JSON, header text, log lines); never
    raises. Idempotent: redacting twice gives the same bytes.
    """
    out = _JSON_PAIR.sub(lambda m: m[1] + b'"' + _R + b'"', raw)
    out = _ESC_PAIR.sub(lambda m: m[1] + _R, out)
    out = _JSON_LIST.sub(lambda m: m[1] + b'"' + _R + b'"', out)
    out = _NAME_VALUE.sub(lambda m: m[1] + _R, out)
    out = _GO_MAP.sub(lambda m: m[1] + _R, out)
    out = _HEADER_LINE.sub(lambda m: m[1] + _R, out)
    out = _ASSIGN.sub(lambda m: m[1] + (m[2] or b"") + _R + (m[2] or b""), out)
    out = _QUERY_PAIR.sub(lambda m: m[1] + _R, out)
    out = _INLINE_HEADER.sub(lambda m: m[1] + _R, out)
    out = _B64_JSON.sub(_b64_json, out)
    out = _SCHEME.sub(lambda m: m[1] + _R, out)
    out = _USERINFO.sub(lambda m: m[1] + _R, out)
    if _SECRET_HINT.search(out):
        out = _K8S_DATA.sub(_k8s_data, out)
    return out
