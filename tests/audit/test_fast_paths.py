"""Parser fast paths give what the general code gives (property tests)."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from urllib.parse import parse_qs, unquote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.audit.parsers._distribution import _PLAIN_PATH, _norm_ip
from sentinel.records import _CANONICAL_V4, normalize_ip
from sentinel.timefmt import parse_ts

uris = st.text(alphabet=st.sampled_from(list("/v2ab:%?#&=; \t\x7fé.-_0")), max_size=12)


@settings(max_examples=1000, deadline=None)
@given(uris)
def test_plain_path_is_what_urlsplit_gives(uri: str) -> None:
    if _PLAIN_PATH.fullmatch(uri):
        parts = urlsplit(uri)
        assert (unquote(parts.path), parse_qs(parts.query)) == (uri, {})


@settings(max_examples=1000, deadline=None)
@given(
    st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
    | st.text(alphabet="0123456789.:abf", max_size=16)
)
def test_canonical_ipv4_shortcut(text: str) -> None:
    try:
        addr = ipaddress.ip_address(text)
        mapped = getattr(addr, "ipv4_mapped", None)
        expected = str(mapped if mapped is not None else addr)
    except ValueError:
        expected = text
    assert _norm_ip(text) == expected
    assert normalize_ip(text) == (None if expected == text and not _is_ip(text) else expected)
    if _CANONICAL_V4.fullmatch(text):
        assert expected == text


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=datetime(1000, 1, 1)),
    st.integers(0, 9),
    st.integers(0, 999_999_999),
)
def test_utc_z_shortcut_equals_general_path(dt: object, digits: int, frac: int) -> None:
    base = f"{dt:%Y-%m-%dT%H:%M:%S}"
    text = base + (f".{frac:09d}"[: digits + 1] if digits else "") + "Z"
    general = parse_ts(text.replace("Z", "+00:00"))  # the general path
    assert parse_ts(text) == general
    assert parse_ts(text).tzinfo is not None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
