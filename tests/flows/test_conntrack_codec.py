"""The fast ctnetlink decoder gives what pyroute2's generic decoder gives, on messages pyroute2
encodes (every field combination) and on damaged ones (never a crash, counted as ``None``)."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.flows.conntrack import CtCodec, CtMessage

CODEC = CtCodec()


def _tuple(v6: bool, src: int, dst: int, proto: int, sport: int, dport: int) -> dict[str, Any]:
    if v6:
        ips = [
            ["CTA_IP_V6_SRC", str(ipaddress.IPv6Address(src))],
            ["CTA_IP_V6_DST", str(ipaddress.IPv6Address(dst))],
        ]
    else:
        ips = [
            ["CTA_IP_V4_SRC", str(ipaddress.IPv4Address(src % 2**32))],
            ["CTA_IP_V4_DST", str(ipaddress.IPv4Address(dst % 2**32))],
        ]
    ports: list[list[Any]] = [["CTA_PROTO_NUM", proto]]
    if proto in (6, 17, 132):
        ports += [["CTA_PROTO_SRC_PORT", sport], ["CTA_PROTO_DST_PORT", dport]]
    return {"attrs": [["CTA_TUPLE_IP", {"attrs": ips}], ["CTA_TUPLE_PROTO", {"attrs": ports}]]}


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

    v6 = draw(st.booleans())
    proto = draw(st.sampled_from([1, 6, 17, 58, 132, 47]))
    src, dst = draw(st.integers(0, 2**128 - 1)), draw(st.integers(0, 2**128 - 1))
    sport, dport = draw(st.integers(0, 65535)), draw(st.integers(0, 65535))
    msg = nfct_msg()
    msg["nfgen_family"] = 10 if v6 else 2
    op, flags = draw(st.sampled_from([(0, 0x600), (0, 0), (2, 0)]))
    msg["header"]["type"] = (1 << 8) | op
    msg["header"]["flags"] = flags
    attrs: list[list[Any]] = [
        ["CTA_TUPLE_ORIG", _tuple(v6, src, dst, proto, sport, dport)],
        ["CTA_TUPLE_REPLY", _tuple(v6, dst, src, proto, dport, sport)],
        ["CTA_STATUS", draw(st.integers(0, 2**16))],
    ]
    if draw(st.booleans()):
        for name in ("CTA_COUNTERS_ORIG", "CTA_COUNTERS_REPLY"):
            packets, size = draw(st.integers(0, 2**63)), draw(st.integers(0, 2**63))
            attrs.append(
                [
                    name,
                    {"attrs": [["CTA_COUNTERS_PACKETS", packets], ["CTA_COUNTERS_BYTES", size]]},
                ]
            )
    if draw(st.booleans()):
        attrs.append(["CTA_ID", draw(st.integers(0, 2**32 - 1))])
    if draw(st.booleans()):
        stamps = [["CTA_TIMESTAMP_START", draw(st.integers(1, 2**63))]]
        if draw(st.booleans()):
            stamps.append(["CTA_TIMESTAMP_STOP", draw(st.integers(1, 2**63))])
        attrs.append(["CTA_TIMESTAMP", {"attrs": stamps}])
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def _done() -> bytes:
    return struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0\0\0\0"


@settings(max_examples=150, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=5), st.booleans())
def test_fast_decoder_equals_pyroute2(datagram: list[bytes], dump: bool) -> None:
    data = b"".join(datagram) + (_done() if dump else b"")
    fast = list(CODEC.decode(data, dump=dump))
    reference = list(CODEC.decode_reference(data, dump=dump))
    assert fast == reference
    assert all(isinstance(m, CtMessage) for m in fast[: len(datagram)])


@settings(max_examples=150, deadline=None)
@given(messages(), st.data())
def test_damaged_messages_are_none_never_an_exception(msg: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(1, len(msg) - 1))
    damaged = bytearray(msg)
    # a length field that lies, or a message cut short
    if data.draw(st.booleans()):
        at = data.draw(st.integers(20, len(msg) - 4))
        damaged[at : at + 2] = struct.pack("=H", data.draw(st.integers(0, 65535)))
        out = list(CODEC.decode(bytes(damaged)))
    else:
        out = list(CODEC.decode(bytes(damaged[:cut])))
    assert all(m is None or isinstance(m, CtMessage | int) for m in out)


def test_netlink_error_and_ack() -> None:
    err = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -95) + b"\0" * 16
    ack = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", 0) + b"\0" * 16
    assert list(CODEC.decode(err + ack)) == [-95, 0]
