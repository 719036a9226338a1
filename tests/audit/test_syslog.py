"""The TCP syslog receiver: RFC 6587 framing (octet counting and LF), size limits, connection
cap, stop with clients attached, sink failures — over real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.audit.parsers import PARSERS
from sentinel.audit.parsers.interface import ParseResult, unparsed
from sentinel.audit.syslog import Frame, Oversize, SyslogFramer, SyslogReceiver
from sentinel.records import Unparsed
from tests.audit.webhook_helpers import Sink

HARBOR = "registry-logs/harbor/harbor-audit-syslog.log"


class PassThrough:
    """Keeps every frame as an ``Unparsed`` record whose ``raw`` is the frame."""

    name = "pass-through"
    source_kind = "harbor"

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        return [unparsed(source, "pass-through", raw, src_pos)]


def frames_of(items: list[Frame | Oversize]) -> list[bytes]:
    return [i.data for i in items if isinstance(i, Frame)]


# -- framing (pure) ---------------------------------------------------------------------------


def test_lf_crlf_and_octet_counting_mixed_in_one_stream() -> None:
    f = SyslogFramer(1024)
    stream = b"<14>one\n<14>two\r\n10 <14>th\nree\n<13>four"
    assert frames_of(f.feed(stream)) == [b"<14>one", b"<14>two", b"<14>th\nree"]
    assert frames_of(f.finish()) == [b"<13>four"]
    assert f.finish() == []


def test_a_line_starting_with_a_digit_but_no_length_is_lf_framed() -> None:
    f = SyslogFramer(1024)
    assert frames_of(f.feed(b"2022-07-19 not counted\n007 x\n")) == [
        b"2022-07-19 not counted",
        b"007 x",
    ]


def test_split_length_prefix_waits_for_more() -> None:
    f = SyslogFramer(1024)
    assert f.feed(b"1") == [] and f.feed(b"1") == [] and f.feed(b" <1>abc") == []
    assert frames_of(f.feed(b"defgh")) == [b"<1>abcdefgh"]


def test_oversize_frames_are_reported_and_skipped_in_both_framings() -> None:
    f = SyslogFramer(64)
    big = b"x" * 200
    items = f.feed(b"200 " + big[:50])
    assert items == [Oversize(big[:50], 200)]
    items = f.feed(big[50:] + b"<1>after\n")
    assert frames_of(items) == [b"<1>after"]
    items = f.feed(b"<1>" + b"y" * 100)
    assert isinstance(items[0], Oversize) and items[0].length is None
    assert frames_of(f.feed(b"y" * 1000 + b"\n<1>next\n")) == [b"<1>next"]


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(
        st.tuples(st.booleans(), st.binary(min_size=1, max_size=80)), min_size=1, max_size=12
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_any_chunking_gives_back_the_messages(
    messages: list[tuple[bool, bytes]], cuts: list[int]
) -> None:
    wire = b""
    expected = []
    for counted, msg in messages:
        if counted:
            wire += str(len(msg)).encode() + b" " + msg
            expected.append(msg)
        else:
            line = b"<" + msg.replace(b"\n", b" ").rstrip(b"\r")
            wire += line + b"\n"
            expected.append(line)
    f = SyslogFramer(128)
    got: list[Frame | Oversize] = []
    last = 0
    for cut in [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]:
        got += f.feed(wire[last:cut])
        last = cut
    got += f.finish()
    assert frames_of(got) == expected


# -- the receiver over TCP ----------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[SyslogReceiver, Sink]]:
    sink = Sink()
    rx = SyslogReceiver(
        sink, PassThrough(), source="harbor-fwd", listen=("127.0.0.1", 0), max_line=4096,
        max_connections=2, idle_timeout=30.0,
    )  # fmt: skip
    rx.start()
    try:
        yield rx, sink
    finally:
        rx.stop()
        rx.stop()


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    pytest.fail("timed out")


def raws(sink: Sink) -> list[bytes]:
    return [r.raw for r in sink.kept if isinstance(r, Unparsed) and r.reason == "pass-through"]


def test_harbor_corpus_lines_in_both_framings(
    corpus: Path, receiver: tuple[SyslogReceiver, Sink]
) -> None:
    rx, sink = receiver
    assert rx.server_address[0] == "127.0.0.1"
    lines = (corpus / HARBOR).read_bytes().splitlines()
    # as Go's log/syslog sends them (PRI + RFC 3339 header), then octet-counted RFC 5424
    go_style = [b"<110>" + line for line in lines]
    rfc5424 = [
        b"<110>1 2022-07-19T06:54:41Z 814da02eb5a8 audit 1 - - " + line.split(b": ", 1)[1]
        for line in lines
    ]
    with socket.create_connection(rx.server_address, timeout=5) as s:
        s.sendall(b"".join(m + b"\n" for m in go_style))
        s.sendall(b"".join(str(len(m)).encode() + b" " + m for m in rfc5424))
    wait_for(lambda: len(raws(sink)) == 2 * len(lines))
    assert raws(sink) == go_style + rfc5424
    positions = [r.src_pos for r in sink.kept]
    assert len(set(positions)) == len(positions)
    assert all(p.startswith("harbor-fwd:syslog:") for p in positions)


def test_oversize_line_is_kept_as_unparsed_and_the_stream_goes_on(
    receiver: tuple[SyslogReceiver, Sink],
) -> None:
    rx, sink = receiver
    with socket.create_connection(rx.server_address, timeout=5) as s:
        s.sendall(b"<14>" + b"A" * 10_000 + b"\n<14>small\n")
    wait_for(lambda: len(sink.kept) == 2)
    big = sink.kept[0]
    assert isinstance(big, Unparsed) and "over 4096 bytes" in big.reason
    assert big.raw == b"<14>" + b"A" * 1020 and raws(sink) == [b"<14>small"]
    assert rx.stats.oversize == 1


def test_connection_cap_and_stop_with_idle_clients_attached() -> None:
    sink = Sink()
    rx = SyslogReceiver(
        sink, PassThrough(), listen=("127.0.0.1", 0), max_connections=1, idle_timeout=60.0
    )
    rx.start()
    held = socket.create_connection(rx.server_address, timeout=5)
    try:
        held.sendall(b"<14>first\n")
        wait_for(lambda: len(sink.kept) == 1)
        with socket.create_connection(rx.server_address, timeout=5) as extra:
            extra.sendall(b"<14>refused\n")
            assert extra.recv(10) == b""  # closed by the server
        started = time.monotonic()
        rx.stop()  # must not wait for the idle client's 60 s timeout
        assert time.monotonic() - started < 30
    finally:
        held.close()
        rx.stop()
    assert raws(sink) == [b"<14>first"]


def test_sink_failure_closes_the_connection_and_later_ones_work(
    receiver: tuple[SyslogReceiver, Sink],
) -> None:
    rx, sink = receiver
    sink.fail = True
    with socket.create_connection(rx.server_address, timeout=5) as s:
        s.sendall(b"<14>lost\n")
        assert s.recv(10) == b""
    assert rx.stats.sink_errors == 1
    sink.fail = False
    with socket.create_connection(rx.server_address, timeout=5) as s:
        s.sendall(b"<14>kept\n")
    wait_for(lambda: raws(sink) == [b"<14>kept"])


def test_partial_last_frame_is_delivered_when_the_client_leaves(
    receiver: tuple[SyslogReceiver, Sink],
) -> None:
    rx, sink = receiver
    with socket.create_connection(rx.server_address, timeout=5) as s:
        s.sendall(b"<14>complete\n<14>no newline")
    wait_for(lambda: len(sink.kept) == 2)
    assert raws(sink) == [b"<14>complete", b"<14>no newline"]


def test_harbor_forwarded_audit_log_becomes_events(corpus: Path) -> None:
    sink = Sink()
    rx = SyslogReceiver(
        sink, PARSERS["harbor-audit-syslog"], source="harbor", listen=("127.0.0.1", 0)
    )
    rx.start()
    try:
        lines = (corpus / HARBOR).read_bytes().splitlines()
        # Go's log/syslog over TCP: <PRI>RFC3339 host tag[pid]: msg LF (Harbor's forwarder)
        with socket.create_connection(rx.server_address, timeout=5) as s:
            for line in lines:
                msg = line.split(b": ", 1)[1]
                s.sendall(b"<110>2022-07-19T06:54:41Z 814da02eb5a8 audit[1]: " + msg + b"\n")
        wait_for(lambda: len(sink.kept) == len(lines))
    finally:
        rx.stop()
    events = sink.events
    assert len(events) == len(lines)
    first = events[0]
    assert (first.source, first.source_kind, first.action) == ("harbor", "harbor", "delete")
    assert first.actor == "admin" and first.artifact == "test01/photon"
    assert [e.action for e in events].count("push") == 1  # library/golang:1.18.3 created
    # the project delete (2.9: resourceType="project", operator="") is a delete with no actor
    assert (events[-1].action, events[-1].artifact, events[-1].actor) == ("delete", "1", None)


def test_tls_syslog_with_a_self_signed_certificate(tmp_path: Path) -> None:
    import ssl

    from sentinel.audit.webhook import make_ssl_context
    from tests.audit.webhook_helpers import self_signed

    cert, key = self_signed(tmp_path)
    sink = Sink()
    rx = SyslogReceiver(
        sink, PassThrough(), listen=("127.0.0.1", 0), ssl_context=make_ssl_context(cert, key)
    )
    rx.start()
    try:
        client = ssl.create_default_context(cafile=str(cert))
        with (
            socket.create_connection(rx.server_address, timeout=5) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"19 <14>over TLS (5425)")
        # a plaintext sender is refused by the handshake and delivers nothing
        with socket.create_connection(rx.server_address, timeout=5) as plain:
            plain.sendall(b"<14>plaintext\n")
        wait_for(lambda: raws(sink) == [b"<14>over TLS (5425)"])
        wait_for(lambda: rx.stats.connection_errors == 1)
    finally:
        rx.stop()
    assert raws(sink) == [b"<14>over TLS (5425)"]
