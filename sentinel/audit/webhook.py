"""HTTP receiver for CNCF distribution notifications (``notifications.endpoints[].url``).

``WebhookReceiver`` runs a stdlib ``ThreadingHTTPServer`` (127.0.0.1 by default; port 0 picks
a free port, see ``server_address``). Per request, in this order:

1. ``POST`` on the configured path only (404 elsewhere, 405 for other methods);
2. ``Authorization: Bearer <token>`` compared with ``hmac.compare_digest`` → 401 otherwise,
   with a fixed body that says nothing about why;
3. ``Content-Length`` required (411) and ≤ ``max_body_bytes`` (413; the body is not read);
4. ``Content-Type`` ``application/vnd.docker.distribution.events.v1+json`` or
   ``application/json`` (parameters ignored) → 415 otherwise;
5. the body parsed by the ``distribution-notifications`` parser (JSON depth-limited); a body
   that is not an envelope → 400 (the records still reach the sink as ``Unparsed``, so bad
   input is kept as evidence);
6. ``deliver(records)`` is called synchronously; 200 only after it returns (the sink makes the
   records durable). If it raises, 503 so that the registry retries (at-least-once; the
   event ids deduplicate the retry).

``src_pos`` of each delivery is ``"<source>:webhook:<received UTC time>:<n>"``.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count

from sentinel.audit.parsers import PARSERS
from sentinel.records import AuditEvent, Unparsed
from sentinel.timefmt import format_ts, utcnow

log = logging.getLogger(__name__)

ACCEPTED_TYPES = frozenset(
    {"application/vnd.docker.distribution.events.v1+json", "application/json"}
)
DEFAULT_MAX_BODY = 1 << 20

Deliver = Callable[[list[AuditEvent | Unparsed]], None]


class WebhookReceiver:
    """Receive notification envelopes and hand their records to ``deliver``.

    ``token`` is the shared bearer secret (non-empty). ``listen`` is ``(host, port)``.
    ``max_body_bytes`` bounds a request body, in bytes.
    """

    def __init__(
        self,
        deliver: Deliver,
        *,
        token: str,
        source: str = "registry",
        listen: tuple[str, int] = ("127.0.0.1", 9465),
        path: str = "/notifications",
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        if not token:
            raise ValueError("webhook token must not be empty")
        self.deliver = deliver
        self.source = source
        self.path = path
        self.max_body_bytes = max_body_bytes
        self._token = f"Bearer {token}".encode()
        self._seq = count(1)
        self._seq_lock = threading.Lock()
        self._server = ThreadingHTTPServer(listen, self._handler_class())
        self._server.daemon_threads = False
        self._server.block_on_close = True
        self._thread: threading.Thread | None = None
        self.stats = {"delivered": 0, "rejected": 0, "sink_errors": 0}

    @property
    def server_address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` (the real port when 0 was asked for)."""
        host, port = self._server.server_address[:2]
        return (str(host), int(port))

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
        self._server.server_close()

    def _authorized(self, header: str | None) -> bool:
        given = (header or "").encode("utf-8", errors="replace")
        return hmac.compare_digest(given, self._token)

    def _next_pos(self) -> str:
        with self._seq_lock:
            n = next(self._seq)
        return f"{self.source}:webhook:{format_ts(utcnow())}:{n}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "sentinel-webhook"
            sys_version = ""
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                log.debug("webhook %s %s", self.address_string(), format % args)

            def _reply(self, status: int, text: str) -> None:
                body = (text + "\n").encode()
                if status >= 400:
                    receiver.stats["rejected"] += 1
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if status >= 400 and status != 503:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def _other(self) -> None:
                if self.path.split("?", 1)[0] != receiver.path:
                    self._reply(404, "not found")
                else:
                    self._reply(405, "method not allowed")

            do_GET = do_PUT = do_DELETE = do_PATCH = _other  # noqa: N815

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != receiver.path:
                    self._reply(404, "not found")
                    return
                if not receiver._authorized(self.headers.get("Authorization")):
                    self._reply(401, "unauthorized")
                    return
                length_text = self.headers.get("Content-Length")
                if length_text is None or not length_text.strip().isdigit():
                    self._reply(411, "length required")
                    return
                length = int(length_text)
                if length > receiver.max_body_bytes:
                    self._reply(413, "payload too large")
                    return
                ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
                if ctype not in ACCEPTED_TYPES:
                    self._reply(415, "unsupported media type")
                    return
                body = self.rfile.read(length)
                if len(body) != length:
                    self._reply(400, "truncated body")
                    return
                records = PARSERS["distribution-notifications"].parse(
                    body, source=receiver.source, src_pos=receiver._next_pos()
                )
                try:
                    receiver.deliver(records)
                except Exception:  # the sink is the caller's; the registry will retry
                    receiver.stats["sink_errors"] += 1
                    log.exception("webhook: delivering %d records failed", len(records))
                    self._reply(503, "try again")
                    return
                if any(isinstance(r, Unparsed) for r in records) and not any(
                    isinstance(r, AuditEvent) for r in records
                ):
                    self._reply(400, "not a notification envelope")
                    return
                receiver.stats["delivered"] += len(records)
                self._reply(200, "ok")

        return Handler
