"""Canonical bytes of a ledger record: RFC 8785 (JSON Canonicalization Scheme, "JCS").

The bytes are produced by the ``rfc8785`` package (Trail of Bits) after Sentinel's own,
stricter rules (DESIGN.md "Ledger") have been checked, so that a record that would hash
differently in another JCS implementation never enters the ledger:

* no floats anywhere (JCS serializes them through ECMAScript number formatting, which other
  languages reproduce inconsistently; Sentinel records carry integers and strings only);
* integers within ±(2^53 − 1), the range every JSON reader holds exactly (RFC 8785 §3.2.2.3,
  I-JSON RFC 7493 §2.2);
* object keys are ``str``; values are ``None``, ``bool``, ``int``, ``str``, lists/tuples and
  mappings only; strings are valid Unicode (no lone surrogates);
* at most ``MAX_DEPTH`` levels of nesting (a bound on recursion for hostile input).

Violations raise ``RecordError`` (a ``LedgerError`` and a ``ValueError``) whose ``path`` names
the offending value in JSONPath-like form, e.g. ``$.data.size`` or ``$.data.tags[3]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import rfc8785

from sentinel.errors import LedgerError

#: largest and smallest integers a record may hold (IEEE 754 double's exact range)
MAX_SAFE_INT = 2**53 - 1
MIN_SAFE_INT = -(2**53 - 1)
#: deepest nesting of lists/objects accepted
MAX_DEPTH = 64
#: value of ``v`` in every record this version writes
RECORD_VERSION = 1


class RecordError(LedgerError, ValueError):
    """A value cannot be put in the ledger; ``path`` locates it (``$`` is the root)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"ledger record rejected at {path}: {problem}")


def check_value(obj: Any, path: str = "$", depth: int = 0) -> None:
    """Raise ``RecordError`` unless ``obj`` obeys the rules in this module's docstring.

    ``path`` and ``depth`` locate ``obj`` inside a larger value (for error messages and the
    depth limit).
    """
    _check(obj, path, depth)


_FAST_SCALARS = (str, int, bool, type(None))


def _check(obj: Any, path: str, depth: int) -> bool:
    """Validate ``obj``; return True when ``_fast_dumps`` gives its JCS bytes (see there)."""
    kind = type(obj)
    if obj is None or isinstance(obj, bool | str):
        return kind in _FAST_SCALARS
    if isinstance(obj, int):
        if not MIN_SAFE_INT <= obj <= MAX_SAFE_INT:
            raise RecordError(path, f"integer {obj} outside ±(2^53−1)")
        return kind is int
    if isinstance(obj, float):
        raise RecordError(path, f"float {obj!r} not allowed (use an integer or a string)")
    if depth >= MAX_DEPTH:
        raise RecordError(path, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, Mapping):
        fast = kind is dict
        for key, value in obj.items():
            if not isinstance(key, str):
                raise RecordError(path, f"object key {key!r} is not a string")
            if type(key) is not str or not (key.isascii() or max(key) <= "\uffff"):
                fast = False
            fast = _check(value, f"{path}.{key}", depth + 1) and fast
        return fast
    if isinstance(obj, list | tuple):
        fast = kind is list or kind is tuple
        for index, value in enumerate(obj):
            fast = _check(value, f"{path}[{index}]", depth + 1) and fast
        return fast
    raise RecordError(path, f"type {type(obj).__name__} is not JSON")


_SORTED = orjson.OPT_SORT_KEYS


def _fast_dumps(obj: Any) -> bytes:
    """JCS bytes through ``orjson`` (Rust), valid only for values ``_check`` cleared.

    For plain ``dict``/``list``/``tuple``/``str``/``int``/``bool``/``None`` without floats, RFC
    8785 output equals ``orjson.dumps(obj, option=OPT_SORT_KEYS)``: both escape exactly
    ``"``, ``\\`` and U+0000-U+001F (short forms ``\\b \\f \\n \\r \\t``, else lowercase
    ``\\u00xx``) and write everything else as UTF-8 without spaces; integers print alike; and
    when every key is in the Basic Multilingual Plane, code-point order (orjson sorts by
    UTF-8 bytes, which is code-point order) equals UTF-16 code-unit order (RFC 8785 §3.2.3).
    A lone surrogate raises ``orjson.JSONEncodeError``. Keys outside the BMP, subclasses and
    other mappings go through ``rfc8785``. The property tests in
    tests/ledger/test_canonical.py hold the two paths byte-identical.
    """
    return orjson.dumps(obj, option=_SORTED)


_FLAT_STRICT = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_FLAT_VALUE_TYPES = frozenset((str, int, bool, type(None)))
_STR_ONLY = frozenset((str,))


def _flat_ok(obj: dict[Any, Any]) -> bool:
    """True when ``obj`` (a plain ``dict``) holds only exact-``str`` keys in the Basic
    Multilingual Plane and ``str``/``int``/``bool``/``None`` values.

    The common ledger record (an audit event or a verdict) checked with a few C-level calls
    instead of ``_check``'s recursion. Integer range and lone surrogates are left to
    ``orjson`` (``OPT_STRICT_INTEGER`` raises beyond ±(2^53−1), exactly Sentinel's bound);
    when it raises, ``canonical_bytes`` takes the slow path, which names the problem.
    """
    if not set(map(type, obj)) <= _STR_ONLY:
        return False
    keys = "".join(obj)
    if not keys.isascii() and max(keys) > "\uffff":
        return False
    return set(map(type, obj.values())) <= _FLAT_VALUE_TYPES


def canonical_bytes(obj: Any, *, path: str = "$", depth: int = 0) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of ``obj`` (https://www.rfc-editor.org/rfc/rfc8785).

    ``obj`` is a JSON-ready value (see module docstring). Returns the exact bytes
    ``rfc8785.dumps(obj)`` returns (through a faster, equivalent encoder where that is proven
    safe, see ``_fast_dumps``). Raises ``RecordError`` naming the path of the first offending
    value (float, out-of-range integer, non-string key, unknown type, lone surrogate, excessive
    depth). ``path``/``depth`` locate ``obj`` inside a larger value.
    """
    if type(obj) is dict and depth < MAX_DEPTH and _flat_ok(obj):
        try:
            return orjson.dumps(obj, option=_FLAT_STRICT)
        except orjson.JSONEncodeError:
            pass  # an integer beyond ±(2^53−1) or a lone surrogate: the slow path names it
    fast = _check(obj, path, depth)
    try:
        if fast:
            return _fast_dumps(obj)
        out: bytes = rfc8785.dumps(obj)
    except (
        UnicodeEncodeError,
        orjson.JSONEncodeError,
        rfc8785.CanonicalizationError,
    ) as exc:  # lone surrogates
        raise RecordError(path, f"not valid Unicode (lone surrogate?): {exc}") from exc
    return out


def record_body(
    *, log_json: bytes, seq: int, kind_json: bytes, recorded_at_json: bytes, data_canonical: bytes
) -> bytes:
    """Canonical bytes of a stored record, spliced from its members' canonical bytes.

    Equal, byte for byte, to ``canonical_bytes({"v": 1, "log": log, "seq": seq, "kind": kind,
    "recorded_at": recorded_at, "data": data})`` where each ``*_json`` argument is
    ``canonical_bytes`` of that member: RFC 8785 §3.2.3 sorts member names by UTF-16 code
    units, giving the fixed order ``data, kind, log, recorded_at, seq, v``, and a nested value's
    canonical form does not depend on where it sits. Splicing lets ``append`` encode each
    record's ``data`` once, outside the write lock. ``seq`` must be a safe integer ≥ 0.
    """
    return b"".join(
        (
            b'{"data":',
            data_canonical,
            b',"kind":',
            kind_json,
            b',"log":',
            log_json,
            b',"recorded_at":',
            recorded_at_json,
            b',"seq":',
            str(seq).encode("ascii"),
            b',"v":',
            str(RECORD_VERSION).encode("ascii"),
            b"}",
        )
    )
