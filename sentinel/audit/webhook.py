"""HTTP receiver for registry webhooks: distribution notifications, MLflow, Harbor, MinIO…

``WebhookReceiver`` runs a stdlib ``ThreadingHTTPServer`` (127.0.0.1 by default; port 0 picks
a free port, see ``server_address``), optionally behind TLS (``make_ssl_context``). It serves one
or more ``Route`` s; each names its URL path, the ``source`` id written into its events, the
``Parser`` for its payloads and how the sender authenticates (``BearerAuth``,
``MLflowSignatureAuth``, ``HmacSha256Auth``). Per request, in this order:

1. at most ``max_connections`` connections are served at once (beyond: ``429`` and close); a
   connection idle for ``request_timeout`` seconds is closed (slow senders cannot pin threads);
2. a known path (404 otherwise) and ``POST`` (405 for any other method, known or not);
3. the per-client rate limit (``RateLimit``: a token bucket per *socket* address, never a
   header) → ``429`` with ``Retry-After`` (whole seconds);
4. header-only authentication (bearer) compared with ``hmac.compare_digest`` → ``401`` with a
   fixed body that says nothing about why;
5. ``Content-Length`` required (411) and ≤ ``max_body_bytes`` (413; the body is not read);
6. ``Content-Type`` among the route's types (parameters ignored) → 415 otherwise;
7. the body is read; body-signature authentication (HMAC over the body, timestamp freshness)
   → 401;
8. a body that is not JSON, or nests deeper than ``max_json_depth``, becomes one ``Unparsed``
   (kept as evidence) without reaching the parser; otherwise the route's parser runs;
9. ``deliver(records)`` is called synchronously; 2xx only after it returns (the sink makes the
   records durable). If it raises, 503 so that the sender retries (at-least-once; event ids
   deduplicate the retry). A body that gave only ``Unparsed`` records is answered 400 after
   it has been kept.

No other 5xx is ever sent: malformed request lines, unsupported methods and unsupported HTTP
versions are 400/405. Secrets never appear in responses or logs.

``src_pos`` of each delivery is ``"<source>:webhook:<received UTC time>:<n>"``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from pathlib import Path
from typing import Any, Protocol

from sentinel.audit.parsers import PARSERS, ParserOptions, build_parser
from sentinel.audit.parsers.interface import (
    MAX_JSON_DEPTH,
    Parser,
    flush_parser,
    loads_limited,
    unparsed,
)
from sentinel.audit.serving import CappedServerMixin, tls_handshake
from sentinel.errors import ConfigError
from sentinel.records import AuditEvent, Unparsed, join_host_port
from sentinel.timefmt import format_ts, utcnow

log = logging.getLogger(__name__)

DISTRIBUTION_TYPES = frozenset(
    {"application/vnd.docker.distribution.events.v1+json", "application/json"}
)
#: kept for callers of the first version of this module
ACCEPTED_TYPES = DISTRIBUTION_TYPES
JSON_TYPES = frozenset({"application/json", "application/cloudevents+json"})
DEFAULT_MAX_BODY = 1 << 20
#: seconds a connection may sit idle (per read) before it is closed
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 64

Deliver = Callable[[list[AuditEvent | Unparsed]], None]

_ERROR_TEXT = {
    405: "method not allowed",
    408: "request timeout",
    414: "request line too long",
    431: "request header fields too large",
}


# -- authentication ---------------------------------------------------------------------------


class Auth(Protocol):
    """How a route's sender proves who it is.

    ``needs_body`` says whether ``verify`` needs the request body (signature schemes) or only
    the headers (tokens: checked before the body is read). ``verify`` never raises.
    """

    @property
    def needs_body(self) -> bool: ...

    def verify(self, headers: Message, body: bytes | None, now: float) -> bool: ...


@dataclass(frozen=True, repr=False)
class BearerAuth:
    """``Authorization: Bearer <token>`` (RFC 6750 section 2.1), compared in constant time.

    CNCF distribution (``notifications.endpoints[].headers``), MinIO (``auth_token``) and
    Harbor (the webhook policy's "Auth Header", sent verbatim as ``Authorization``) all send it.
    ``header`` names another header holding the same ``Bearer <token>`` value.
    """

    token: str
    header: str = "Authorization"
    needs_body: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("bearer token must not be empty")

    def verify(self, headers: Message, body: bytes | None, now: float) -> bool:
        given = (headers.get(self.header) or "").encode("utf-8", errors="replace")
        return hmac.compare_digest(given, f"Bearer {self.token}".encode())

    def __repr__(self) -> str:
        return f"BearerAuth(header={self.header!r}, token=<redacted>)"


@dataclass(frozen=True, repr=False)
class MLflowSignatureAuth:
    """MLflow 3 webhook signatures (``mlflow/webhooks/delivery.py``).

    Headers: ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (unix seconds) and
    ``X-MLflow-Signature`` = ``v1,`` + base64(HMAC-SHA256(secret,
    ``"<delivery id>.<timestamp>.<body>"``)). A timestamp more than ``max_skew_seconds`` from
    ``now`` (either way) is refused, which bounds replays.
    """

    secret: str
    max_skew_seconds: int = 300
    needs_body: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("webhook secret must not be empty")

    def verify(self, headers: Message, body: bytes | None, now: float) -> bool:
        if body is None:
            return False
        delivery = headers.get("X-MLflow-Delivery-Id") or ""
        stamp = headers.get("X-MLflow-Timestamp") or ""
        given = headers.get("X-MLflow-Signature") or ""
        if not delivery or not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            return False
        if abs(now - int(stamp)) > self.max_skew_seconds:
            return False
        signed = delivery.encode("utf-8", errors="replace") + b"." + stamp.encode() + b"." + body
        mac = hmac.new(self.secret.encode(), signed, hashlib.sha256).digest()
        expected = b"v1," + base64.b64encode(mac)
        return hmac.compare_digest(given.encode("utf-8", errors="replace"), expected)

    def __repr__(self) -> str:
        return f"MLflowSignatureAuth(max_skew_seconds={self.max_skew_seconds}, secret=<redacted>)"


@dataclass(frozen=True, repr=False)
class HmacSha256Auth:
    """A hex HMAC-SHA256 of the raw body in one header, e.g. ``X-Hub-Signature-256:
    sha256=<hex>`` (the GitHub/Gitea convention). No timestamp: pair it with TLS."""

    secret: str
    header: str = "X-Hub-Signature-256"
    prefix: str = "sha256="
    needs_body: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("webhook secret must not be empty")

    def verify(self, headers: Message, body: bytes | None, now: float) -> bool:
        if body is None:
            return False
        given = (headers.get(self.header) or "").encode("utf-8", errors="replace")
        mac = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given, (self.prefix + mac).encode())

    def __repr__(self) -> str:
        return f"HmacSha256Auth(header={self.header!r}, secret=<redacted>)"


# -- routes, rate limit, TLS --------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One webhook endpoint: URL ``path``, event ``source`` id, payload ``parser``, ``auth``,
    and the accepted ``content_types`` (media types, lower case, without parameters)."""

    path: str
    source: str
    parser: Parser
    auth: Auth
    content_types: frozenset[str] = JSON_TYPES
    #: when set, the parser gets Sentinel's capture record ``{"received_at", "path",
    #: "headers", "body"}`` holding only these request headers (never ``Authorization``), so
    #: it can read ids the sender puts in headers (``X-MLflow-Delivery-Id`` → ``event_id``)
    capture_headers: tuple[str, ...] = ()


MLFLOW_CAPTURE_HEADERS = ("X-MLflow-Delivery-Id", "X-MLflow-Timestamp", "X-MLflow-Signature")


def mlflow_verified_parser() -> Parser:
    """The ``mlflow-webhook`` parser for a route whose ``MLflowSignatureAuth`` has verified
    every delivery before the parser sees it (its events are not marked unverified)."""
    return build_parser("mlflow-webhook", ParserOptions(signature_checked_upstream=True))


def mlflow_route(
    secret: str, *, path: str = "/mlflow", source: str = "mlflow", max_skew_seconds: int = 300
) -> Route:
    """The route for MLflow 3 model-registry webhooks: ``MLflowSignatureAuth`` and the
    ``mlflow-webhook`` parser fed capture records (delivery id → ``event_id``). The secret is
    required (``ValueError`` when empty): there is no unsigned MLflow route."""
    return Route(
        path,
        source,
        mlflow_verified_parser(),
        MLflowSignatureAuth(secret, max_skew_seconds),
        JSON_TYPES,
        MLFLOW_CAPTURE_HEADERS,
    )


@dataclass(frozen=True)
class RateLimit:
    """Token bucket per client address: ``rate`` requests per second sustained, bursts of up to
    ``burst`` requests. At most ``max_clients`` buckets are kept (least recently seen evicted)."""

    rate: float = 20.0
    burst: int = 100
    max_clients: int = 10_000

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.max_clients < 1:
            raise ValueError("rate > 0, burst ≥ 1 and max_clients ≥ 1 are required")


class TokenBuckets:
    """Per-key token buckets (thread-safe, bounded memory). ``clock`` returns seconds."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token for ``key``: ``0.0`` when allowed, else seconds until one is due."""
        now = self._clock()
        lim = self.limit
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(lim.burst), now))
            tokens = min(float(lim.burst), tokens + (now - last) * lim.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / lim.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > lim.max_clients:
                self._buckets.popitem(last=False)
            return wait


def make_ssl_context(cert_file: Path | str, key_file: Path | str) -> ssl.SSLContext:
    """A server-side TLS context (TLS ≥ 1.2) from a PEM certificate chain and private key.

    Raises ``ConfigError`` naming the file when either cannot be read or they do not match.
    """
    for path in (cert_file, key_file):
        if not Path(path).is_file():
            raise ConfigError(str(path), "no such file (TLS certificate or key)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(str(cert_file), f"cannot load TLS certificate/key: {exc}") from exc
    return ctx


class _Server(CappedServerMixin, ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a connection cap, lazy TLS handshakes and quiet errors."""

    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        on_error: Callable[[], None],
    ) -> None:
        self._init_cap(max_connections, ssl_context, on_error)
        super().__init__(address, handler)

    def refuse(self, request: Any) -> None:
        if not isinstance(request, ssl.SSLSocket):
            request.settimeout(1.0)
            request.sendall(
                b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n"
                b"Connection: close\r\nRetry-After: 1\r\n\r\n"
            )


# -- the receiver ---------------------------------------------------------------------------------


class WebhookReceiver:
    """Receive webhook payloads on ``routes`` and hand their records to ``deliver``.

    The first version's arguments still work: ``token`` (non-empty) adds a distribution route on
    ``path`` for ``source`` with ``BearerAuth(token)``. ``listen`` is ``(host, port)``.
    ``max_body_bytes`` bounds a request body (bytes), ``max_json_depth`` its nesting.
    ``rate_limit`` ``None`` disables the rate limit. ``ssl_context`` turns on TLS.
    ``clock`` (unix seconds) is used for signature freshness. Raises ``ValueError`` when no
    route is given or two routes share a path.
    """

    def __init__(
        self,
        deliver: Deliver,
        *,
        token: str | None = None,
        source: str = "registry",
        listen: tuple[str, int] = ("127.0.0.1", 9465),
        path: str = "/notifications",
        max_body_bytes: int = DEFAULT_MAX_BODY,
        routes: Sequence[Route] = (),
        rate_limit: RateLimit | None = RateLimit(),
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_json_depth: int = MAX_JSON_DEPTH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        all_routes = list(routes)
        if token is not None:
            if not token:
                raise ValueError("webhook token must not be empty")
            all_routes.insert(
                0,
                Route(
                    path,
                    source,
                    PARSERS["distribution-notifications"],
                    BearerAuth(token),
                    DISTRIBUTION_TYPES,
                ),
            )
        if not all_routes:
            raise ValueError("a webhook receiver needs at least one route (or a token)")
        self.routes = {r.path: r for r in all_routes}
        if len(self.routes) != len(all_routes):
            raise ValueError("two webhook routes share a path")
        self.deliver = deliver
        self.source = all_routes[0].source
        self.path = all_routes[0].path
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.request_timeout = request_timeout
        self.tls = ssl_context is not None
        self._clock = clock
        self._buckets = TokenBuckets(rate_limit) if rate_limit is not None else None
        self._seq = count(1)
        self._lock = threading.Lock()
        self.stats = {
            "delivered": 0,
            "rejected": 0,
            "sink_errors": 0,
            "auth_failures": 0,
            "rate_limited": 0,
            "connection_errors": 0,
        }
        self._server = _Server(
            listen,
            self._handler_class(),
            ssl_context=ssl_context,
            max_connections=max_connections,
            on_error=lambda: self._count("connection_errors"),
        )
        self._thread: threading.Thread | None = None
        #: called with the HTTP status of every rejected request (4xx, 503), e.g. a metric
        self.on_reject: Callable[[int], None] | None = None

    @property
    def server_address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (the real port when 0 was asked for)."""
        host, port = self._server.server_address[:2]
        return (str(host), int(port))

    def url(self, path: str | None = None) -> str:
        """``http(s)://host:port/path`` of a route (the first one by default)."""
        host, port = self.server_address
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{join_host_port(host, port)}{path or self.path}"

    def start(self) -> None:
        """Serve in a background thread."""
        if self._thread is not None:
            raise RuntimeError("receiver already started")
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook", kwargs={"poll_interval": 0.2}
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, wait for in-flight requests, close the socket. Safe to call twice."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close_reads()
        self._server.server_close()
        self._flush_parsers()

    def _flush_parsers(self) -> None:
        """Deliver what stateful parsers still hold (``k8s-audit`` requests seen only at a
        non-final stage, with outcome ``unknown``), once nothing more can arrive."""
        for route in self.routes.values():
            held = flush_parser(route.parser, route.source)
            if not held:
                continue
            try:
                self.deliver(held)
            except Exception:  # the sink is the caller's code: report, as for a request
                self._count("sink_errors")
                log.exception("webhook: delivering %d held records failed", len(held))
            else:
                self._count("delivered", len(held))

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def _next_pos(self, source: str) -> str:
        with self._lock:
            n = next(self._seq)
        return f"{source}:webhook:{format_ts(utcnow())}:{n}"

    def _parse(self, route: Route, body: bytes, headers: Message) -> list[AuditEvent | Unparsed]:
        pos = self._next_pos(route.source)
        try:
            loads_limited(body, self.max_json_depth)
            raw = body
            if route.capture_headers:
                kept = {h: headers[h] for h in route.capture_headers if headers.get(h) is not None}
                raw = json.dumps(
                    {
                        "received_at": format_ts(utcnow()),
                        "path": route.path,
                        "headers": kept,
                        "body": body.decode("utf-8"),
                    }
                ).encode()
        except (ValueError, RecursionError) as exc:
            return [unparsed(route.source, f"webhook body is not JSON: {exc}", body, pos)]
        return route.parser.parse(raw, source=route.source, src_pos=pos)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "sentinel-webhook"
            sys_version = ""
            protocol_version = "HTTP/1.1"
            timeout = receiver.request_timeout

            def setup(self) -> None:
                tls_handshake(self.request, receiver.request_timeout)
                super().setup()

            def finish(self) -> None:
                super().finish()
                if self.close_connection and not isinstance(self.request, ssl.SSLSocket):
                    _linger(self.request)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("webhook %s %s", self.address_string(), format % args)

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                # http.server's own errors: never a 5xx for what is the client's fault
                if code == 501:
                    code = 405
                elif code >= 500 and code != 503:
                    code = 400
                if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
                    self.request_version = "HTTP/1.1"  # always answer with a status line
                self.close_connection = True
                # a fixed text: http.server's messages echo the client's input
                self._reply(code, _ERROR_TEXT.get(code, "bad request"))

            def _reply(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
                body = (text.replace("\r", " ").replace("\n", " ")[:200] + "\n").encode()
                if status >= 400:
                    receiver._count("rejected")
                    # visible to operators: someone probing with bad tokens must show up
                    # command/path are unset when the request line itself was malformed
                    log.warning(
                        "webhook: %s %s from %s rejected: %d %s",
                        getattr(self, "command", None) or "-",
                        str(getattr(self, "path", None) or "-")[:100],
                        self.client_address[0],
                        status,
                        text,
                    )
                    if receiver.on_reject is not None:
                        receiver.on_reject(status)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if status >= 400 and status != 503:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _route(self) -> Route | None:
                route = receiver.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self._reply(404, "not found")
                return route

            def _other(self) -> None:
                if self._route() is not None:
                    self._reply(405, "method not allowed", {"Allow": "POST"})

            do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other  # noqa: N815

            def do_POST(self) -> None:
                route = self._route()
                if route is None:
                    return
                if receiver._buckets is not None:
                    wait = receiver._buckets.take(str(self.client_address[0]))
                    if wait > 0:
                        receiver._count("rate_limited")
                        retry = str(max(1, int(wait + 0.999)))
                        self._reply(429, "too many requests", {"Retry-After": retry})
                        return
                now = receiver._clock()
                if not route.auth.needs_body and not route.auth.verify(self.headers, None, now):
                    receiver._count("auth_failures")
                    self._reply(401, "unauthorized")
                    return
                length_text = (self.headers.get("Content-Length") or "").strip()
                if not length_text.isascii() or not length_text.isdigit():
                    self._reply(411, "length required")
                    return
                length = int(length_text)
                if length > receiver.max_body_bytes:
                    self._reply(413, "payload too large")
                    return
                ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
                if ctype not in route.content_types:
                    self._reply(415, "unsupported media type")
                    return
                try:
                    body = self.rfile.read(length)
                except (TimeoutError, OSError):
                    self.close_connection = True
                    return
                if len(body) != length:
                    self._reply(400, "truncated body")
                    return
                if route.auth.needs_body and not route.auth.verify(self.headers, body, now):
                    receiver._count("auth_failures")
                    self._reply(401, "unauthorized")
                    return
                records = receiver._parse(route, body, self.headers)
                try:
                    receiver.deliver(records)
                except Exception:  # the sink is the caller's; the sender will retry
                    receiver._count("sink_errors")
                    log.exception("webhook: delivering %d records failed", len(records))
                    self._reply(503, "try again")
                    return
                if any(isinstance(r, Unparsed) for r in records) and not any(
                    isinstance(r, AuditEvent) for r in records
                ):
                    self._reply(400, "payload not understood (kept as evidence)")
                    return
                receiver._count("delivered", len(records))
                self._reply(200, "ok")

        return Handler


#: bytes and seconds a closing connection's unread input is drained for (lingering close)
LINGER_BYTES = 256 * 1024
LINGER_SECONDS = 0.5


def _linger(sock: socket.socket) -> None:
    """Lingering close (as Apache httpd does): stop writing, then read and drop what the client
    is still sending (bounded) so that closing with unread input does not reset the connection
    and destroy the response the client has not read yet."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(LINGER_SECONDS)
        left = LINGER_BYTES
        while left > 0:
            chunk = sock.recv(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)
    except OSError:
        pass
