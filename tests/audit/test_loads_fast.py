"""``loads_limited`` decodes through orjson only where that equals ``json.loads`` (property)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.audit.parsers.interface import JSONDepthError, loads_limited

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson would give a float
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()  # lone surrogates included: orjson refuses them, json keeps them
)
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=400, deadline=None)
@given(values, st.booleans(), st.booleans())
def test_same_value_as_json_loads(value: Any, ascii_only: bool, as_bytes: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    raw: str | bytes = text
    if as_bytes:
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate written raw: not UTF-8 bytes
            return
    assert _same(loads_limited(raw), json.loads(raw))


@pytest.mark.parametrize(
    "raw",
    [b"\xef\xbb\xbf{}", b"[NaN]", b"1e400", b'"\\ud800"', b"123456789012345678901234567890"],
)
def test_orjson_refusals_decode_like_json(raw: bytes) -> None:
    assert _same(loads_limited(raw), json.loads(raw))


@pytest.mark.parametrize("raw", [b"{", b"\xff", b"[1,]"])
def test_invalid_input_still_raises_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        loads_limited(raw)


def test_depth_limit_kept() -> None:
    with pytest.raises(JSONDepthError):
        loads_limited(b"[" * 40 + b"]" * 40)
