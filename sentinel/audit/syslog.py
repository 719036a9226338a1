"""TCP syslog receiver, for Harbor's forwarded audit log (and any RFC 5424/3164 sender).

Harbor's "audit log forward endpoint" writes each audit record with Go's ``log/syslog`` over
TCP: ``<PRI>RFC3339 host audit[pid]: message`` + LF. rsyslog/syslog-ng forwarders may use
RFC 5424 (``<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG``) and octet counting.

Framing (RFC 6587 section 3.4), decided per frame by its first byte:

* a digit: octet counting, ``MSG-LEN SP SYSLOG-MSG`` (``MSG-LEN`` at most 10 digits, no
  leading zero);
* anything else: non-transparent framing, the frame ends at LF (a CR before it is dropped; NUL
  bytes are kept: they are data here). Empty lines are skipped: some senders end an
  octet-counted frame with LF too.

A frame longer than ``max_line`` bytes becomes one ``Unparsed`` keeping its first KiB; the rest
of it is read and discarded (bounded memory), then the stream goes on. A connection that ends
in the middle of a frame gives that partial frame to the parser (it is what the sender sent).

Each complete frame — the whole message, ``<PRI>`` included — is handed to ``parser.parse``
(e.g. ``harbor-audit-syslog``, which reads both header styles). Frames of one read are
delivered together to ``deliver``; the next read happens only after ``deliver`` returns. If it
raises, the connection is closed without reading further (the sender's own queue keeps what it
has not written; TCP syslog has no acknowledgement, so what was in flight is lost — prefer a
file or webhook source where the sender supports it).

``src_pos`` is ``"<source>:syslog:<connection start UTC>:<connection n>:<frame n>"``.
Listening on 127.0.0.1 by default; at most ``max_connections`` clients at once (more are
closed at once); a connection silent for ``idle_timeout`` seconds is closed.
``start()``/``stop()`` run one accept thread plus one thread per connection, all joined by
``stop()``. Optional TLS (RFC 5425 framing is octet counting) with ``ssl_context``.
"""

from __future__ import annotations

import logging
import socketserver
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

from sentinel.audit.parsers.interface import Parser, flush_parser, unparsed
from sentinel.audit.serving import CappedServerMixin, tls_handshake
from sentinel.records import AuditEvent, Unparsed
from sentinel.timefmt import format_ts, utcnow

log = logging.getLogger(__name__)

#: RFC 5425 section 4.3.1 asks receivers to take messages of at least 2048 bytes and should
#: take 8192; Harbor audit records are far below 64 KiB.
DEFAULT_MAX_LINE = 64 * 1024
DEFAULT_MAX_CONNECTIONS = 16
DEFAULT_IDLE_TIMEOUT = 300.0
KEEP_OVERSIZE = 1024
READ_SIZE = 64 * 1024
_MAX_LEN_DIGITS = 10

Deliver = Callable[[list[AuditEvent | Unparsed]], None]


@dataclass(frozen=True, slots=True)
class Frame:
    """One syslog message as framed on the wire (without its length prefix or LF)."""

    data: bytes
    octet_counted: bool


@dataclass(frozen=True, slots=True)
class Oversize:
    """A frame over the size limit: its first ``KEEP_OVERSIZE`` bytes and its full length in
    bytes (``None`` while unknown: newline framing still discarding)."""

    head: bytes
    length: int | None


class SyslogFramer:
    """Incremental RFC 6587 framing: ``feed(bytes)`` → complete ``Frame`` / ``Oversize`` items.

    Memory is bounded by ``max_line`` + one read. Pure (no I/O); ``finish()`` returns a partial
    last frame when the stream ends.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 16:
            raise ValueError("max_line must be at least 16 bytes")
        self.max_line = max_line
        self._buf = bytearray()
        self._discard = 0  # bytes still to skip of an oversized octet-counted frame
        self._skip_line = False  # discarding an oversized LF-framed frame until its LF

    def feed(self, data: bytes) -> list[Frame | Oversize]:
        self._buf += data
        out: list[Frame | Oversize] = []
        while self._buf:
            if self._discard:
                n = min(self._discard, len(self._buf))
                del self._buf[:n]
                self._discard -= n
                continue
            if self._skip_line:
                lf = self._buf.find(b"\n")
                if lf < 0:
                    self._buf.clear()
                    break
                del self._buf[: lf + 1]
                self._skip_line = False
                continue
            item = self._next()
            if item is None:
                break
            if not isinstance(item, Frame) or item.data:
                out.append(item)
        return out

    def _next(self) -> Frame | Oversize | None:
        buf = self._buf
        if buf[:1].isdigit():
            sp = buf.find(b" ", 0, _MAX_LEN_DIGITS + 1)
            digits = bytes(buf[:sp]) if sp > 0 else b""
            if sp < 0 and len(buf) <= _MAX_LEN_DIGITS and bytes(buf).isdigit():
                return None  # the length is still arriving
            if sp > 0 and digits.isdigit() and not digits.startswith(b"0"):
                length = int(digits)
                start = sp + 1
                if length > self.max_line:
                    head = bytes(buf[start : start + KEEP_OVERSIZE])
                    have = len(buf) - start
                    if have >= length:
                        del buf[: start + length]
                    else:
                        del buf[:]
                        self._discard = length - have
                    return Oversize(head, length)
                if len(buf) - start < length:
                    return None
                data = bytes(buf[start : start + length])
                del buf[: start + length]
                return Frame(data, True)
            # not a valid length prefix: a newline-framed message that starts with a digit
        lf = buf.find(b"\n", 0, self.max_line + 2)
        if lf < 0:
            if len(buf) > self.max_line + 1:
                head = bytes(buf[:KEEP_OVERSIZE])
                end = buf.find(b"\n")
                if end < 0:
                    del buf[:]
                    self._skip_line = True
                    return Oversize(head, None)
                del buf[: end + 1]
                return Oversize(head, end)
            return None
        line = bytes(buf[:lf])
        del buf[: lf + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line:
            return Oversize(line[:KEEP_OVERSIZE], len(line))
        return Frame(line, False)  # may be empty: ``feed`` skips blank lines

    def finish(self) -> list[Frame | Oversize]:
        """The partial frame left when the stream ended (if any), then reset."""
        rest = bytes(self._buf)
        self._buf.clear()
        skipping = self._discard or self._skip_line
        self._discard, self._skip_line = 0, False
        if skipping or not rest.strip():
            return []
        return [Frame(rest.rstrip(b"\r\n"), False)]


@dataclass(slots=True)
class SyslogStats:
    """Counters since the receiver was created."""

    connections: int = 0
    frames: int = 0
    oversize: int = 0
    sink_errors: int = 0
    connection_errors: int = 0


class _Server(CappedServerMixin, socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[socketserver.BaseRequestHandler],
        *,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        on_error: Callable[[], None],
    ) -> None:
        self._init_cap(max_connections, ssl_context, on_error)
        super().__init__(address, handler)


class SyslogReceiver:
    """Receive syslog over TCP and deliver parsed records (see the module docstring).

    ``parser`` turns one frame into records (``source`` is written into them). ``listen`` is
    ``(host, port)`` (port 0: a free port); ``max_line`` in bytes; ``idle_timeout`` in seconds.
    The socket is bound in the constructor, so ``server_address`` is known before ``start()``;
    ``OSError`` when the address is taken.
    """

    def __init__(
        self,
        deliver: Deliver,
        parser: Parser,
        *,
        source: str = "harbor",
        listen: tuple[str, int] = ("127.0.0.1", 1514),
        max_line: int = DEFAULT_MAX_LINE,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.deliver = deliver
        self.parser = parser
        self.source = source
        self.max_line = max_line
        self.idle_timeout = idle_timeout
        self.stats = SyslogStats()
        self._lock = threading.Lock()
        self._conn_seq = count(1)
        self._server = _Server(
            listen,
            self._handler_class(),
            ssl_context=ssl_context,
            max_connections=max_connections,
            on_error=self._on_error,
        )
        self._thread: threading.Thread | None = None

    @property
    def server_address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        host, port = self._server.server_address[:2]
        return (str(host), int(port))

    @property
    def active_connections(self) -> int:
        """Connections being served right now."""
        return self._server.open_connections()

    def start(self) -> None:
        """Accept connections in a background thread."""
        if self._thread is not None:
            raise RuntimeError("receiver already started")
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="syslog", kwargs={"poll_interval": 0.2}
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, end every connection after its current batch, join all threads,
        close the socket. Safe to call twice."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close_reads()
        self._server.server_close()
        held = flush_parser(self.parser, self.source)  # k8s-audit: stages with no final one
        if held:
            try:
                self.deliver(held)
            except Exception:  # the sink is the caller's code
                log.exception("syslog: delivering %d held records failed", len(held))

    def _on_error(self) -> None:
        with self._lock:
            self.stats.connection_errors += 1

    def _records(self, items: list[Frame | Oversize], pos: Callable[[], str]) -> list[Any]:
        records: list[AuditEvent | Unparsed] = []
        for item in items:
            p = pos()
            if isinstance(item, Oversize):
                size = f"{item.length} bytes" if item.length is not None else "unterminated"
                records.append(
                    unparsed(
                        self.source,
                        f"syslog message over {self.max_line} bytes ({size}); first "
                        f"{len(item.head)} bytes kept",
                        item.head,
                        p,
                    )
                )
            else:
                records.extend(self.parser.parse(item.data, source=self.source, src_pos=p))
        with self._lock:
            self.stats.frames += len(items)
            self.stats.oversize += sum(isinstance(i, Oversize) for i in items)
        return records

    def _handler_class(self) -> type[socketserver.BaseRequestHandler]:
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                tls_handshake(self.request, receiver.idle_timeout)
                self.request.settimeout(receiver.idle_timeout)
                with receiver._lock:
                    receiver.stats.connections += 1
                    conn = next(receiver._conn_seq)
                prefix = f"{receiver.source}:syslog:{format_ts(utcnow())}:{conn}"
                frame_no = count(1)

                def pos() -> str:
                    return f"{prefix}:{next(frame_no)}"

                framer = SyslogFramer(receiver.max_line)
                while True:
                    try:
                        data = self.request.recv(READ_SIZE)
                    except TimeoutError:
                        log.debug("syslog: %s idle, closing", self.client_address)
                        data = b""
                    items = framer.feed(data) if data else framer.finish()
                    if items and not self._deliver(receiver._records(items, pos)):
                        return
                    if not data:
                        return

            def _deliver(self, records: list[AuditEvent | Unparsed]) -> bool:
                if not records:
                    return True
                try:
                    receiver.deliver(records)
                except Exception:
                    with receiver._lock:
                        receiver.stats.sink_errors += 1
                    log.exception("syslog: delivering %d records failed; closing", len(records))
                    return False
                return True

        return Handler
