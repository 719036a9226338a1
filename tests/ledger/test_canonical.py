"""RFC 8785 canonical bytes: official vectors, Sentinel's stricter rules, and a property test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.errors import LedgerError
from sentinel.ledger.canonical import (
    MAX_DEPTH,
    MAX_SAFE_INT,
    MIN_SAFE_INT,
    RecordError,
    _check,
    _fast_dumps,
    _flat_ok,
    canonical_bytes,
    record_body,
)
from tests.ledger.helpers import audit_record

# values.json and structures.json hold JSON numbers with fractions or exponents (56.0, 4.50,
# 1E30 ...). Python decodes them to floats, and Sentinel forbids floats in records (DESIGN.md
# "Ledger"): those two cases must be *rejected*, which test_float_vectors_rejected asserts.
FLOAT_CASES = {"values.json", "structures.json"}


def _cases(corpus: Path) -> list[dict[str, Any]]:
    data = json.loads((corpus / "merkle" / "jcs_rfc8785_vectors.json").read_text("utf-8"))
    cases: list[dict[str, Any]] = data["cases"]
    assert len(cases) == 6
    return cases


def test_jcs_vectors_without_floats(corpus: Path) -> None:
    applied = 0
    for case in _cases(corpus):
        if case["name"] in FLOAT_CASES:
            continue
        value = json.loads(case["input_utf8"])
        assert canonical_bytes(value) == bytes.fromhex(case["expected_hex"]), case["name"]
        applied += 1
    assert applied == 4


def test_float_vectors_rejected(corpus: Path) -> None:
    for case in _cases(corpus):
        if case["name"] in FLOAT_CASES:
            with pytest.raises(RecordError, match="float"):
                canonical_bytes(json.loads(case["input_utf8"]))


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": {"b": [1, 2.5]}}, "$.a.b[1]"),
        ({"n": MAX_SAFE_INT + 1}, "$.n"),
        ({"n": MIN_SAFE_INT - 1}, "$.n"),
        ({"x": {1: "a"}}, "$.x"),
        ({"x": {"y": b"bytes"}}, "$.x.y"),
        ({"x": {"y": {1, 2}}}, "$.x.y"),
        ({"s": "\ud800"}, "$"),
    ],
)
def test_rejections_name_the_path(value: Any, path: str) -> None:
    with pytest.raises(RecordError) as info:
        canonical_bytes(value)
    assert info.value.path == path
    assert isinstance(info.value, LedgerError)
    assert isinstance(info.value, ValueError)


def test_integer_bounds_accepted() -> None:
    assert canonical_bytes([MAX_SAFE_INT, MIN_SAFE_INT]) == b"[9007199254740991,-9007199254740991]"


def test_depth_limit() -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(RecordError, match="deeper"):
        canonical_bytes(deep)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=MIN_SAFE_INT, max_value=MAX_SAFE_INT)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


# keys and strings rich in what JCS treats specially: controls, quotes, backslashes, U+007F,
# U+2028, BMP private use / CJK (code-point vs UTF-16 order agree) and astral characters
# (they disagree: U+1F602 sorts before U+FB33 in UTF-16).
tricky_text = st.text(
    alphabet=st.sampled_from(
        [
            "a",
            "B",
            "1",
            '"',
            "\\",
            "/",
            "\x00",
            "\x1f",
            "\n",
            "\t",
            "\x7f",
            "\u2028",
            "é",
            "€",
            "\ufb33",
            "\ue000",
            "\uffff",
            "😂",
            "\U00010000",
            "中",
        ]
    )
    | st.characters(exclude_categories=["Cs"]),
    max_size=8,
)
tricky_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=MIN_SAFE_INT, max_value=MAX_SAFE_INT)
    | tricky_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(tricky_text, children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_bytes_equal_rfc8785(value: Any) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


@settings(max_examples=500, deadline=None)
@given(tricky_values)
def test_bytes_equal_rfc8785_on_tricky_text(value: Any) -> None:
    """Both encoders (stdlib fast path and the ``rfc8785`` fallback) give JCS bytes."""
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_fast_path_taken_for_audit_records_and_not_for_astral_keys() -> None:
    assert _check(audit_record(3)["data"], "$", 0) is True
    assert _check({"\U0001f602": 1, "\ufb33": 2}, "$", 0) is False
    value = {"\U0001f602": 1, "\ufb33": 2}
    assert canonical_bytes(value) == rfc8785.dumps(value)
    assert canonical_bytes(value) != _fast_dumps(value)  # why the fallback exists


@settings(max_examples=100, deadline=None)
@given(
    data=st.dictionaries(st.text(), json_values, max_size=6),
    kind=st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True),
    log=st.text(min_size=1, max_size=20),
    seq=st.integers(min_value=0, max_value=MAX_SAFE_INT),
    recorded_at=st.text(max_size=30),
)
def test_spliced_record_body_is_jcs(
    data: dict[str, Any], kind: str, log: str, seq: int, recorded_at: str
) -> None:
    """The fast path in ``append`` is byte-identical to canonicalizing the whole record."""
    whole = {"v": 1, "log": log, "seq": seq, "kind": kind, "recorded_at": recorded_at, "data": data}
    spliced = record_body(
        log_json=rfc8785.dumps(log),
        seq=seq,
        kind_json=rfc8785.dumps(kind),
        recorded_at_json=rfc8785.dumps(recorded_at),
        data_canonical=rfc8785.dumps(data),
    )
    assert spliced == rfc8785.dumps(whole)


flat_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=MIN_SAFE_INT, max_value=MAX_SAFE_INT)
    | tricky_text
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(tricky_text, flat_scalars, max_size=25))
def test_flat_fast_path_equals_rfc8785(value: dict[str, Any]) -> None:
    """One-level records (audit events, verdicts) take ``_flat_ok`` → orjson: still JCS."""
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_flat_fast_path_taken_and_refused() -> None:
    assert _flat_ok(audit_record(3)["data"]) is True
    assert _flat_ok({"\U0001f602": 1, "\ufb33": 2}) is False  # astral key: UTF-16 order differs
    assert _flat_ok({"a": 1.5}) is False
    assert _flat_ok({"a": [1]}) is False


@pytest.mark.parametrize("value", [{"a": MAX_SAFE_INT + 1}, {"a": MIN_SAFE_INT - 1}])
def test_flat_path_integer_bounds_named(value: dict[str, Any]) -> None:
    with pytest.raises(RecordError, match=r"\$\.data\.a: integer"):
        canonical_bytes(value, path="$.data", depth=1)


@pytest.mark.parametrize("value", [{"a": "x\ud800y"}, {"a\udfff": 1}, {"a": ["\ud800"]}])
def test_lone_surrogates_rejected_on_every_path(value: dict[str, Any]) -> None:
    with pytest.raises(RecordError, match="lone surrogate"):
        canonical_bytes(value, path="$.data")
