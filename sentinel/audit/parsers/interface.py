"""The parser interface every registry format implements, and helpers they share.

A parser is pure: it turns one raw unit of input (a log line without its newline, or one
webhook payload) into zero or more normalized records. It never raises on bad input; what it
cannot read becomes an ``Unparsed`` value carrying the reason, the raw bytes and ``src_pos``.

Modelled on pip-audit's ``_dependency_source/interface.py``: a small protocol plus a closed
name → parser registry (``sentinel.audit.parsers.PARSERS``).
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

import orjson

from sentinel.records import AuditEvent, Unparsed

#: What a parser returns for one raw unit: 0..n events, and ``Unparsed`` for what it could not read.
ParseResult = list[AuditEvent | Unparsed]

#: Deepest JSON nesting a parser accepts (distribution's envelope is 5 deep).
MAX_JSON_DEPTH = 32


@runtime_checkable
class Parser(Protocol):
    """One registry log or payload format.

    ``name`` is the format name used in configuration and ``sentinel audit parse --format``;
    ``source_kind`` is the DESIGN.md ``source_kind`` its events carry.
    """

    name: str
    source_kind: str

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        """Parse one line (without its line terminator) or one payload.

        ``source`` is the registry instance id written into every record; ``src_pos`` is the
        caller's position of ``raw`` (``"<file id>:<byte offset>"`` or ``"<source>:<delivery>"``).
        Never raises for bad input: returns ``Unparsed`` instead.
        """
        ...


class JSONDepthError(ValueError):
    """A JSON document nests deeper than allowed."""


_CONTAINERS = frozenset((dict, list))


def _has_float(value: Any) -> bool:
    """True when a decoded JSON value holds a float anywhere (iterative: no recursion)."""
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is float:
            return True
        if kind is dict:
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
    return False


def _loads(raw: bytes | str) -> tuple[Any, bool]:
    """``json.loads(raw)``, through ``orjson`` when it gives the same value; and whether the
    value is a flat object (no nested object or array: depth 1).

    orjson is faster but differs on some input: it refuses NaN/Infinity, lone surrogate
    escapes, a byte-order mark and numbers overflowing a double (``json`` accepts them), and
    decodes an integer beyond 64 bits as a float (``json``: an int). Input orjson refuses,
    and any document in which it found a float, goes through ``json``, so every input
    decodes exactly as ``json.loads`` decodes it. The common log line (a flat object of
    strings and integers) is checked with one C-level pass over its values.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw), False  # json decides, and words the error
    if type(value) is dict:
        kinds = set(map(type, value.values()))
        if float not in kinds and kinds.isdisjoint(_CONTAINERS):
            return value, True
    if _has_float(value):
        return json.loads(raw), False
    return value, False


def loads_limited(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` with a nesting limit (decoded by ``orjson`` where that is equal).

    Raises ``ValueError`` (``json.JSONDecodeError``, ``UnicodeDecodeError`` or
    ``JSONDepthError``) on invalid, non-UTF-8 or too deeply nested input.
    """
    try:
        value, flat = _loads(raw)
    except RecursionError as exc:
        raise JSONDepthError(f"JSON nests deeper than {max_depth} levels") from exc
    if flat and max_depth >= 1:
        return value
    if isinstance(raw, bytes):
        opens = raw.count(b"[") + raw.count(b"{")
    else:
        opens = raw.count("[") + raw.count("{")
    if opens <= max_depth:
        return value  # fewer brackets than the limit (strings only over-count): cannot be deeper
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise JSONDepthError(f"JSON nests deeper than {max_depth} levels")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return value


def flush_parser(parser: Parser, source: str) -> ParseResult:
    """What a stateful parser still holds for ``source`` once its reader has finished (the
    ``k8s-audit`` parser's requests seen only at a non-final stage); ``[]`` for the others."""
    flush = getattr(parser, "flush", None)
    return list(flush(source)) if callable(flush) else []


def unparsed(source: str, reason: str, raw: bytes, src_pos: str) -> Unparsed:
    """Shorthand for an ``Unparsed`` record."""
    return Unparsed(source=source, reason=reason, raw=raw, src_pos=src_pos)
