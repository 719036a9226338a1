"""Fuzzing the receivers over real sockets (hypothesis): random methods, paths, headers,
content lengths and bodies never get a 5xx (other than the deliberate 503 when the sink fails)
and never end a connection with an exception in the server; random bytes to the syslog
receiver never crash it. Bounded example counts keep this well under 30 s."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.audit.parsers import PARSERS
from sentinel.audit.syslog import SyslogReceiver
from sentinel.audit.webhook import WebhookReceiver, mlflow_route
from tests.audit.webhook_helpers import Sink

TOKEN = "fuzz-token-0123456789"
TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=40
).filter(lambda t: "\r" not in t and "\n" not in t)

METHODS = st.one_of(
    st.just("POST"),
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "BREW"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12),
)
PATHS = st.one_of(
    st.sampled_from(["/notifications", "/mlflow"]),
    st.sampled_from(["/notifications", "/mlflow", "/", "/notifications?x=1", "*", "//", "/%00"]),
    TEXT.map(lambda t: "/" + t.replace(" ", "")),
)
VERSIONS = st.one_of(
    st.just("HTTP/1.1"),
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.x", "", "FOO"]),
)
HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "Authorization",
            "Content-Type",
            "Content-Length",
            "Transfer-Encoding",
            "Expect",
            "X-MLflow-Signature",
            "X-MLflow-Timestamp",
            "X-MLflow-Delivery-Id",
            "Connection",
        ]
    ),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20).filter(
        lambda t: ":" not in t
    ),
)
HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            f"Bearer {TOKEN}",
            "application/json",
            "chunked",
            "100-continue",
            "close",
            "v1,AAAA",
            "application/vnd.docker.distribution.events.v1+json",
            "-1",
            "99999999999999999999",
        ]
    ),
    TEXT,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b'{"events": []}', b"{}", b"[" * 200, b'{"entity": 1}', b"\xff\xfe"]),
)


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    method, path, version = draw(METHODS), draw(PATHS), draw(VERSIONS)
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8))
    body = draw(BODIES)
    length = draw(
        st.one_of(
            st.just(str(len(body))),
            st.none(),
            st.integers(min_value=-5, max_value=10**7).map(str),
            TEXT,
        )
    )
    lines = [f"{method} {path} {version}".rstrip()]
    lines += [f"{k}: {v}" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(address: tuple[str, int], raw: bytes) -> bytes:
    """Send ``raw``, close our sending side, read until the server closes (max 3 s)."""
    with socket.create_connection(address, timeout=3) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may already have answered and closed
        out = b""
        try:
            while chunk := sock.recv(4096):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return out


def statuses(response: bytes) -> list[int]:
    codes = []
    for line in response.split(b"\r\n"):
        if line.startswith(b"HTTP/1.") and len(line) >= 12 and line[9:12].isdigit():
            codes.append(int(line[9:12]))
    return codes


def test_http_receiver_never_answers_5xx(corpus: Path) -> None:
    sink = Sink()
    rx = WebhookReceiver(
        sink,
        token=TOKEN,
        routes=[mlflow_route("fuzz-secret", path="/mlflow")],
        listen=("127.0.0.1", 0),
        max_body_bytes=4096,
        rate_limit=None,
        request_timeout=0.5,
    )
    rx.start()
    seen: set[int] = set()
    try:

        @settings(
            max_examples=250,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(raw=raw_requests(), failing_sink=st.booleans())
        def run(raw: bytes, failing_sink: bool) -> None:
            sink.fail = failing_sink
            codes = statuses(exchange(rx.server_address, raw))
            seen.update(codes)
            bad = [c for c in codes if c >= 500 and not (c == 503 and failing_sink)]
            assert not bad, (raw[:300], codes)

        run()
        sink.fail = False
        # still serving, and a valid delivery is still taken
        body = (corpus / "registry-logs/distribution-live/notification-mount.json").read_bytes()
        ok = exchange(
            rx.server_address,
            b"POST /notifications HTTP/1.1\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body,
        )
        assert statuses(ok) == [200]
    finally:
        rx.stop()
    assert rx.stats["connection_errors"] == 0, "a handler ended in an exception"
    assert {400, 401, 404, 405} <= seen  # the fuzzer reached the interesting answers


def test_syslog_receiver_survives_random_bytes() -> None:
    sink = Sink()
    rx = SyslogReceiver(
        sink,
        PARSERS["harbor-audit-syslog"],
        listen=("127.0.0.1", 0),
        max_line=256,
        idle_timeout=2.0,
    )
    rx.start()
    try:

        @settings(
            max_examples=150,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            chunks=st.lists(
                st.one_of(
                    st.binary(max_size=600),
                    st.sampled_from([b"\n", b"12 ", b"99999999999 ", b"<14>", b"0 ", b"\r\n"]),
                ),
                max_size=10,
            )
        )
        def run(chunks: list[bytes]) -> None:
            with socket.create_connection(rx.server_address, timeout=3) as sock:
                for chunk in chunks:
                    sock.sendall(chunk)

        run()
        for _ in range(100):  # let the last fuzz connections finish
            if rx.active_connections == 0:
                break
            time.sleep(0.05)

        # fuzz connections still in the accept queue may flush late, so look for the message
        # itself rather than counting records
        def arrived() -> bool:
            return any(b"after the fuzz" in getattr(r, "raw", b"") for r in list(sink.kept))

        with socket.create_connection(rx.server_address, timeout=3) as sock:
            sock.sendall(b"<14>after the fuzz\n")
        deadline = 200
        while not arrived() and deadline:
            time.sleep(0.05)
            deadline -= 1
        assert arrived(), "the receiver stopped taking messages after the fuzz"
    finally:
        rx.stop()
    assert rx.stats.connection_errors == 0 and rx.stats.sink_errors == 0
