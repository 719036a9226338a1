"""``mlflow-access``: MLflow tracking-server access logs (uvicorn and gunicorn).

MLflow has no audit log (DESIGN.md "Known traps"); its access log is the only trail. Two
layouts, both read by this one parser (captured from MLflow 3.17.2, corpus ``mlflow-live``):

* uvicorn (``mlflow server``, the default): MLflow's log format prefixes uvicorn's access
  line with the local wall-clock time, no zone::

      2026/11/29 19:16:39 INFO:     127.0.0.1:55778 - "GET /health HTTP/1.1" 200 OK

  The time is read in the configured zone (``ts_zone_assumed``). A line without the time
  prefix (plain uvicorn) is ``Unparsed``: Sentinel never invents a time. No user is logged.

  The client is uvicorn's ``scope["client"]`` written ``%s:%d`` (``protocols/utils.py``
  ``get_client_addr``): the TCP peer, *unless* uvicorn's ``ProxyHeadersMiddleware`` replaced
  it. That middleware is on by default (``--proxy-headers``) and trusts the peers in
  ``--forwarded-allow-ips`` / ``$FORWARDED_ALLOW_IPS`` (default ``127.0.0.1``): a request from
  a trusted peer that carries ``X-Forwarded-For`` is logged with the rightmost untrusted
  entry of that header (the first entry when every entry is trusted or the setting is
  ``*``). So behind a local reverse proxy the logged address came from a header. What the
  line shows, and how Sentinel labels it:

  - ``host:0`` → ``header``, certain: a TCP source port is never 0, and uvicorn writes port
    0 whenever the entry it took had no port (every uvicorn before the 2026 change for
    uvicorn issue #2789; after it, an entry without a port). Older uvicorn kept a port
    written in the header inside the host (``1.2.3.4:1024:0``): the address is the part
    before that port, still ``header``.
  - ``host:<non-zero port>`` → ``socket``, but not certain: uvicorn since that change (0.54 is
    one) also takes a port written in the header (``X-Forwarded-For: 1.2.3.4:1024``, as AWS
    ALB and HAProxy can send), and the line is then the same as a direct connection. Only
    the deployment tells: if uvicorn sits behind a proxy that writes ports into
    ``X-Forwarded-For``, or a local process can reach it with that header, treat uvicorn
    addresses as header-sourced (the proxy's own access log then holds the socket peer).
  - A request from a trusted peer *without* the header is logged with that peer's own
    address (the proxy's, usually ``127.0.0.1``), ``socket``.
* gunicorn ``--access-logfile`` (``--app-name basic-auth``): Combined Log Format
  (gunicorn ``glogging.py``, ``%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"``).
  ``%(u)s`` is the Basic-auth user name *as sent*: on a 401 it is only claimed
  (``actor_verified=False``); on any other status the basic-auth app has checked the password
  (``actor_verified=True``). ``%(h)s`` is the socket peer.

Request meaning (MLflow REST API 2.0, ``mlflow/server/handlers.py`` routes; also ``/ajax-api``):

=================================================  ==============  ===========================
request                                            action          model named?
=================================================  ==============  ===========================
POST registered-models/create                      register        no (name is in the body)
POST model-versions/create                         register        no
POST model-versions/transition-stage               stage_change    no
POST registered-models/alias                       tag             no
DELETE registered-models/alias                     untag           no
DELETE registered-models/delete, model-versions/…  delete          no
GET model-versions/get-download-uri?name&version   pull            yes (query)
GET mlflow-artifacts/artifacts/<path>              pull            artifact path only
PUT mlflow-artifacts/artifacts/<path>              push            artifact path only
users/*, permissions, webhooks (create/update/…)   config_change   —
anything else (reads, runs, experiments, UI)       other           query ``name`` if present
=================================================  ==============  ===========================

Where the line does not name the model, ``artifact`` is ``None`` (or the artifact file path)
and ``detail`` says so; MLflow's REST API can fill it in, the line cannot:
``sentinel.audit.mlflow_rest.ReconstructingParser`` wraps this parser and does
(``[audit.files.mlflow_rest]``). Status 401 →
``auth_failure`` (``access_denied`` when no user was sent), 403 → ``access_denied``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

from sentinel.audit.parsers._common import DEFAULT_OPTIONS, ParserOptions, bad
from sentinel.audit.parsers._distribution import split_addr
from sentinel.audit.parsers.interface import ParseResult
from sentinel.audit.timeparse import Stamp, parse_apache, parse_local
from sentinel.records import Action, AuditEvent, ClientIPSource, normalize_ip, sha256_hex

SOURCE_KIND = "mlflow"

_UVICORN = re.compile(
    r"^(?:(?P<ts>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) )?INFO:\s+(?P<client>\S+) - "
    r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[\d.]+" (?P<status>\d{3})(?: .*)?$'
)
_GUNICORN = re.compile(
    r"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<ts>[^\]]+)\] "
    r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[\d.]+" (?P<status>\d{3}) (?P<size>\d+|-)'
    r'(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)")?.*$'
)
_API = re.compile(r"^/(?:ajax-)?api/[23]\.0/(?P<rest>.*)$")
_NOT_NAMED = "model name/version not in the access log"

_ROUTES: dict[tuple[str, str], Action] = {
    ("POST", "mlflow/registered-models/create"): "register",
    ("POST", "mlflow/model-versions/create"): "register",
    ("POST", "mlflow/model-versions/transition-stage"): "stage_change",
    ("POST", "mlflow/registered-models/alias"): "tag",
    ("DELETE", "mlflow/registered-models/alias"): "untag",
    ("DELETE", "mlflow/registered-models/delete"): "delete",
    ("DELETE", "mlflow/model-versions/delete"): "delete",
    ("GET", "mlflow/model-versions/get-download-uri"): "pull",
}
_CONFIG_PREFIXES = ("mlflow/users/", "mlflow/registered-models/permissions/",
                    "mlflow/experiments/permissions/", "mlflow/webhooks")  # fmt: skip


_ARTIFACT_METHODS: dict[str, Action] = {"GET": "pull", "PUT": "push", "DELETE": "delete"}


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def classify(method: str, uri: str) -> tuple[Action, str | None, str | None, str | None]:
    """(action, artifact, reference, detail) of one MLflow request (table in the module doc)."""
    parts = urlsplit(uri)
    path = unquote(parts.path)
    query = parse_qs(parts.query)
    name = _first(query, "name")
    version = _first(query, "version") or _first(query, "alias")
    m = _API.match(path)
    if not m:
        return "other", None, None, None
    rest = m["rest"].rstrip("/")
    if rest.startswith("mlflow-artifacts/artifacts"):
        art_path = rest.removeprefix("mlflow-artifacts/artifacts").lstrip("/")
        if not art_path:
            art_path = _first(query, "path") or ""
            return "other", f"mlflow-artifacts:/{art_path}" if art_path else None, None, None
        action = _ARTIFACT_METHODS.get(method, "other")
        return action, f"mlflow-artifacts:/{art_path}", None, f"{_NOT_NAMED} (artifact file)"
    routed = _ROUTES.get((method, rest))
    if routed is not None:
        if name:
            return routed, name, version, None
        return routed, None, None, _NOT_NAMED
    if rest.startswith(_CONFIG_PREFIXES) and method in ("POST", "PATCH", "PUT", "DELETE"):
        return "config_change", None, None, None
    return "other", name, version, None


def request_of(raw: bytes) -> tuple[str, str] | None:
    """(method, request URI) of an access-log line in either layout, ``None`` if it is not one."""
    text = raw.decode("utf-8", errors="replace").strip()
    m = _UVICORN.match(text) or _GUNICORN.match(text)
    return (m["method"], m["uri"]) if m else None


def api_route(uri: str) -> str | None:
    """The REST route of ``uri`` without the API prefix and query (``"mlflow/model-versions/
    create"``, ``"mlflow-artifacts/artifacts/1/…"``), ``None`` outside ``/api``/``/ajax-api``."""
    m = _API.match(unquote(urlsplit(uri).path))
    return m["rest"].rstrip("/") if m else None


def _forwarded(entry: str) -> str:
    """The address in the ``X-Forwarded-For`` entry uvicorn logged as the host (port 0):
    the entry itself when it is an IP address, else the address before a port the header
    carried (``1.2.3.4:1024``, ``[2001:db8::1]:8080``: uvicorn before issue #2789's change),
    else the entry verbatim (not an IP address: ``AuditEvent`` keeps it in ``detail``)."""
    ip = normalize_ip(entry)
    if ip:
        return ip
    host, _ = split_addr(entry, with_port=True)
    return normalize_ip(host or "") or entry


class MlflowAccessParser:
    """Parser for one MLflow access-log line (uvicorn or gunicorn layout)."""

    name = "mlflow-access"
    source_kind = SOURCE_KIND

    def __init__(self, options: ParserOptions = DEFAULT_OPTIONS) -> None:
        self.options = options

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """One line → exactly one event, or ``Unparsed``. Never raises."""
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return []
        user: str | None = None
        ua: str | None = None
        ip_source: ClientIPSource | None
        if m := _UVICORN.match(text):
            if not m["ts"]:
                return [bad(source, "uvicorn access line has no time", raw, src_pos)]
            try:
                stamp = parse_local(m["ts"], "%Y/%m/%d %H:%M:%S", zone=self.options.zone)
            except ValueError as exc:
                return [bad(source, f"bad time: {exc}", raw, src_pos)]
            client: str = m["client"]
            client_ip: str | None
            if client.endswith(":0"):  # proxy-headers took it from X-Forwarded-For
                client_ip, ip_source = _forwarded(client[:-2]), "header"
            else:
                client_ip, ip_source = split_addr(client, with_port=True)  # uvicorn: %s:%d
        elif m := _GUNICORN.match(text):
            try:
                stamp = Stamp(parse_apache(m["ts"]))
            except ValueError as exc:
                return [bad(source, f"bad time: {exc}", raw, src_pos)]
            client_ip, _ = split_addr(m["host"])
            ip_source = "socket" if client_ip else None
            user = m["user"] if m["user"] != "-" else None
            ua = m["ua"] if m["ua"] not in (None, "", "-") else None
        else:
            return [
                bad(source, "not an MLflow access-log line (uvicorn or gunicorn)", raw, src_pos)
            ]
        method, status = m["method"], int(m["status"])
        action, artifact, reference, detail = classify(method, m["uri"])
        if status == 401:
            action = "auth_failure" if user else "access_denied"
        elif status == 403:
            action = "access_denied"
        return [
            AuditEvent(
                ts=stamp.ts,
                source=source,
                source_kind=SOURCE_KIND,
                action=action,
                outcome="success" if status < 400 else "failure",
                raw_sha256=sha256_hex(raw),
                src_pos=src_pos,
                actor=user,
                actor_verified=user is not None and status != 401,
                artifact=artifact,
                reference=reference,
                client_ip=client_ip,
                client_ip_source=ip_source,
                user_agent=ua,
                ts_zone_assumed=stamp.zone_assumed,
                http_method=method,
                http_status=status,
                detail=detail,
            )
        ]
