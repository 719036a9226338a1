"""What a CNCF distribution 2.8.2 HTTP request means, shared by the app-log and access-log parsers.

Routes follow the registry API (distribution ``registry/api/v2/descriptors.go`` and
``routes.go`` at v2.8.2; OCI distribution-spec "Endpoints"):

=====================================================  =========================================
request                                                action
=====================================================  =========================================
``GET  /v2/<name>/manifests/<ref>``                    ``pull`` (a download)
``GET  /v2/<name>/blobs/<digest>``                     ``pull``
``HEAD /v2/<name>/manifests|blobs/…``                  ``other``: an existence check, never a
                                                       download (distribution's own notification
                                                       calls a blob HEAD ``pull``; we do not)
``PUT  /v2/<name>/manifests/<ref>``                    ``push``
``PUT  /v2/<name>/blobs/uploads/<uuid>?digest=…``      ``push`` (a blob upload completes)
``POST /v2/<name>/blobs/uploads/?mount=…&from=…``      ``mount`` when 201; a 202 is a refused mount
                                                       that fell back to an upload: ``other``
``POST|PATCH|GET /v2/<name>/blobs/uploads/…``          ``other`` (upload in progress)
``DELETE /v2/<name>/manifests/<digest>``               ``delete``
``DELETE /v2/<name>/manifests/<tag>``                  ``untag``
``DELETE /v2/<name>/blobs/<digest>``                   ``delete``
``/v2/``, ``/v2/_catalog``, ``/v2/<name>/tags/list``   ``other``
anything else                                          ``other``
=====================================================  =========================================

Status overrides: 401 on a repository path → ``auth_failure`` (credentials were presented
and rejected, or none were sent where the client should have sent them); 401 on ``/v2/``
itself → ``other`` with outcome ``failure``: it is the login challenge every client receives
before it presents credentials, so counting it as a failure would flood the trail with one
false failure per login. 403 → ``access_denied``. Outcome: 1xx–3xx ``success``, else ``failure``.

Digest references (``sha256:…``) go to ``digest``, tags to ``reference``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlsplit

from sentinel.records import Action, ClientIPSource, Outcome, normalize_ip

# distribution's reference grammar (``reference/regexp.go``): path components of lower-case
# alphanumeric runs joined by ``.``, ``_``, ``__`` or dashes. The runs and the separator loop are
# possessive (Python ≥ 3.11): what follows a component is ``/`` or the end, never an alphanumeric
# or a separator, so giving characters back could never lead to a match — it only made a failed
# match (``_MANIFEST`` tried on a blob path) backtrack through every split of the name, about
# 10-16 µs per request line. tests/audit/test_fast_paths.py compares them with the plain forms.
_COMPONENT = r"[a-z0-9]++(?:(?:[._]|__|-++)[a-z0-9]++)*+"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_TAG = r"[\w][\w.-]{0,127}"

_MANIFEST = re.compile(rf"^/v2/(?P<name>{_NAME})/manifests/(?P<ref>{_DIGEST}|{_TAG})$")
_BLOB = re.compile(rf"^/v2/(?P<name>{_NAME})/blobs/(?P<digest>{_DIGEST})$")
_UPLOAD = re.compile(rf"^/v2/(?P<name>{_NAME})/blobs/uploads/(?P<uuid>[^/]*)$")
_TAGS = re.compile(rf"^/v2/(?P<name>{_NAME})/tags/list$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")
# a path-only target urlsplit would leave alone: one leading "/", printable ASCII without
# space, "%", "?", "#" (nothing to unquote, no query, no fragment, no scheme or netloc)
_PLAIN_PATH = re.compile(r"/(?!/)[^\x00-\x20\x7f-\U0010ffff%?#]*")


@dataclass(frozen=True, slots=True)
class RequestMeaning:
    """The audit meaning of one request: action, outcome, artifact, reference, digest."""

    action: Action
    outcome: Outcome
    artifact: str | None = None
    reference: str | None = None
    digest: str | None = None


def is_digest(ref: str) -> bool:
    """True when ``ref`` has the OCI digest shape ``algorithm:hex``."""
    return bool(_DIGEST_RE.match(ref))


def outcome_of(status: int | None) -> Outcome:
    """HTTP status → outcome (``unknown`` without a status)."""
    if status is None:
        return "unknown"
    return "success" if status < 400 else "failure"


def classify(method: str, uri: str, status: int | None) -> RequestMeaning:
    """Map an HTTP request to its audit meaning (table in the module docstring).

    ``uri`` is the request target as logged (path and query, percent-encoded).
    """
    if _PLAIN_PATH.fullmatch(uri):  # what urlsplit + unquote + parse_qs would give
        path, raw_query = uri, ""
    else:
        parts = urlsplit(uri)
        path = unquote(parts.path)
        raw_query = parts.query
    method = method.upper()
    outcome = outcome_of(status)
    artifact: str | None = None
    reference: str | None = None
    digest: str | None = None
    action: Action = "other"

    if m := _MANIFEST.match(path):
        artifact, ref = m["name"], m["ref"]
        if is_digest(ref):
            digest = ref
        else:
            reference = ref
        if method == "GET":
            action = "pull"
        elif method == "PUT":
            action = "push"
        elif method == "DELETE":
            action = "delete" if digest else "untag"
    elif m := _BLOB.match(path):
        artifact, digest = m["name"], m["digest"]
        if method == "GET":
            action = "pull"
        elif method == "DELETE":
            action = "delete"
    elif m := _UPLOAD.match(path):
        artifact = m["name"]
        # only these two requests read the query (an upload's long ``_state`` costs ~20 µs)
        query = parse_qs(raw_query) if method in ("POST", "PUT") else {}
        if method == "POST" and "mount" in query:
            digest = query["mount"][0]
            action = "mount" if status in (None, 201) else "other"
        elif method == "PUT" and "digest" in query:
            digest = query["digest"][0]
            action = "push"
    elif m := _TAGS.match(path):
        artifact = m["name"]

    if status == 401:
        action = "other" if path.rstrip("/") == "/v2" else "auth_failure"
    elif status == 403:
        action = "access_denied"
    return RequestMeaning(action, outcome, artifact, reference, digest)


def split_addr(
    addr: str | None, *, with_port: bool = False
) -> tuple[str | None, ClientIPSource | None]:
    """A logged client address → (IP without port, ``"socket"`` | ``"header"``).

    Go's ``net/http`` always gives the socket peer as ``host:port`` (``[v6]:port``).
    distribution's ``context.RemoteAddr`` (``context/http.go``) replaces it with the first
    ``X-Forwarded-For`` entry, or ``X-Real-Ip``, when the client sent one — and those carry no
    port. So an address *with* a port is socket-sourced, one *without* came from a header
    (forgeable). A bare IPv6 address (``2001:db8::1:5000``) is only split at its last colon
    when ``with_port`` says the logger always appends a port (uvicorn writes ``%s:%d`` with no
    brackets); otherwise it is taken whole. An ``X-Forwarded-For`` list (``a, b``) gives its
    first entry, the client it names, as ``header``. IPv4-mapped IPv6 (``::ffff:a.b.c.d``)
    becomes the IPv4 address. A value that is not an IP address is returned verbatim (the
    whole list, for a list): ``AuditEvent`` then moves it to ``detail`` and leaves
    ``client_ip`` empty with its source set, which location rules treat as an unknown
    location (fail closed).
    """
    if not addr:
        return None, None
    text = addr.strip()
    if "," in text:  # an X-Forwarded-For list
        first, _ = split_addr(text.split(",", 1)[0])
        return (first if first and normalize_ip(first) else text), "header"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            return _norm_ip(host), "socket"
        return _norm_ip(host), "header"
    if with_port:
        host, sep, port = text.rpartition(":")
        if sep and port.isdigit() and host:
            return _norm_ip(host.removeprefix("[").removesuffix("]")), "socket"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if port.isdigit():
            return _norm_ip(host), "socket"
    return _norm_ip(text), "header"


def _norm_ip(text: str) -> str:
    return normalize_ip(text) or text


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_APACHE_TS = re.compile(
    r"^(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)


def parse_apache_ts(text: str) -> datetime:
    """Apache/Common Log Format time ``29/Nov/2026:19:09:53 +0000`` → aware UTC datetime.

    Month names are English regardless of locale (as Go's ``time`` package writes them).
    Raises ``ValueError`` on any other shape.
    """
    m = _APACHE_TS.match(text)
    if not m or m[2] not in _MONTHS:
        raise ValueError(f"not an Apache timestamp: {text!r}")
    offset = timedelta(hours=int(m[8]), minutes=int(m[9]))
    zone = timezone(offset if m[7] == "+" else -offset)
    local = datetime(
        int(m[3]), _MONTHS[m[2]], int(m[1]), int(m[4]), int(m[5]), int(m[6]), tzinfo=zone
    )
    return local.astimezone(UTC)
