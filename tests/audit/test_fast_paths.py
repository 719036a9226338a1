"""Parser fast paths give what the general code gives (property tests)."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from urllib.parse import parse_qs, unquote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.audit.parsers import _distribution
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


# the route patterns as they were before their quantifiers became possessive
_PLAIN_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PLAIN_NAME = rf"{_PLAIN_COMPONENT}(?:/{_PLAIN_COMPONENT})*"
_D = _distribution._DIGEST
_PLAIN_ROUTES = {
    "_MANIFEST": rf"^/v2/(?P<name>{_PLAIN_NAME})/manifests/(?P<ref>{_D}|{_distribution._TAG})$",
    "_BLOB": rf"^/v2/(?P<name>{_PLAIN_NAME})/blobs/(?P<digest>{_D})$",
    "_UPLOAD": rf"^/v2/(?P<name>{_PLAIN_NAME})/blobs/uploads/(?P<uuid>[^/]*)$",
    "_TAGS": rf"^/v2/(?P<name>{_PLAIN_NAME})/tags/list$",
}
_segments = st.sampled_from(
    ["a", "b0", "a.b", "a__b", "a_b", "a--b", "a-", "-a", "_", "A", "manifests", "blobs",
     "uploads", "tags", "list", "v2", "", "sha256:" + "ab" * 16, "sha256:ab", "x\n", "é"]
)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(_segments, max_size=7), st.booleans())
def test_possessive_route_patterns_match_as_the_plain_ones(segments: list[str], v2: bool) -> None:
    path = ("/v2/" if v2 else "/") + "/".join(segments)
    for name, plain in _PLAIN_ROUTES.items():
        got = getattr(_distribution, name).match(path)
        want = re.match(plain, path)
        assert (got and got.groupdict()) == (want and want.groupdict()), (name, path)
