"""A tiny HTTP listener on 127.0.0.1 that records what the registry's notifier POSTs.

Envelope format: distribution ``notifications/event.go`` (``{"events": [...]}``, content type
``application/vnd.docker.distribution.events.v1+json``). Bodies over 1 MiB are refused (413).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from .net import wait_for

MAX_BODY = 1 << 20  # bytes


@dataclass(frozen=True)
class Delivery:
    """One POST as received."""

    path: str
    headers: dict[str, str]
    body: bytes

    def envelope(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class NotificationListener:
    """Records every POST; ``url`` is ``http://127.0.0.1:PORT/events``. Context manager: the
    server thread is stopped and joined on exit."""

    def __init__(self, status: int = 200) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if length > MAX_BODY:
                    self.send_response(413)
                    self.end_headers()
                    return
                body = self.rfile.read(length)
                with listener._lock:
                    listener.deliveries.append(
                        Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="notification-listener", daemon=False
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/events"

    def events(self) -> list[dict[str, Any]]:
        """Every event of every envelope received so far, in arrival order (duplicates kept)."""
        with self._lock:
            deliveries = list(self.deliveries)
        return [e for d in deliveries for e in d.envelope().get("events", [])]

    def wait_for_actions(self, actions: set[str], timeout: float = 15.0) -> bool:
        """Wait until events with each of ``actions`` (push, pull, delete, mount) have arrived."""
        return wait_for(lambda: actions <= {e.get("action") for e in self.events()}, timeout)

    def __enter__(self) -> NotificationListener:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
