"""What Sentinel's network receivers (webhook, syslog) share: a threaded ``socketserver`` with
a connection cap, lazy TLS handshakes, a stop that does not wait for idle clients, and quiet
per-connection errors.

``CappedServerMixin`` goes before ``socketserver.ThreadingMixIn`` (or ``ThreadingHTTPServer``)
in the bases. Connections beyond ``max_connections`` are handed to ``refuse(request)`` and
closed without a thread. ``close_reads()`` shuts the read side of every open connection, so a
handler blocked reading an idle keep-alive or syslog stream returns at once while a response
being written still goes out; the receiver calls it after ``shutdown()`` and before
``server_close()`` (which joins the handler threads).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class CappedServerMixin:
    """Connection cap + ``close_reads`` + optional TLS; see the module docstring.

    Call ``_init_cap(max_connections, ssl_context, on_error)`` before the server's
    ``__init__``. ``on_error`` is called (no arguments) for each connection that ended in an
    exception (client hang-up, timeout, failed TLS handshake).
    """

    socket: socket.socket
    ssl_context: ssl.SSLContext | None = None

    def _init_cap(
        self,
        max_connections: int,
        ssl_context: ssl.SSLContext | None,
        on_error: Callable[[], None],
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.ssl_context = ssl_context
        self._slots = threading.BoundedSemaphore(max_connections)
        self._on_error = on_error
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()

    def refuse(self, request: Any) -> None:
        """Say something to a connection over the cap before it is closed (default: nothing)."""

    def open_connections(self) -> int:
        with self._open_lock:
            return len(self._open)

    def close_reads(self) -> None:
        """Shut the read side of every open connection (see the module docstring)."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            # the plain socket method: ``SSLSocket.shutdown`` would drop the TLS session
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RD)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        if self.ssl_context is not None:
            # the handshake happens in the connection's own thread (the handler's ``setup``),
            # so a slow or silent client cannot stall the accept loop
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                self.refuse(request)
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request(request, client_address)  # type: ignore[misc]
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self._forget(request)

    def _forget(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up, times out or fails the TLS handshake is routine
        self._on_error()
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def tls_handshake(request: Any, timeout: float) -> None:
    """Finish a lazily wrapped TLS connection's handshake within ``timeout`` seconds (no-op for
    plain sockets). Raises ``ssl.SSLError``/``OSError`` on failure."""
    if isinstance(request, ssl.SSLSocket):
        request.settimeout(timeout)
        request.do_handshake()
