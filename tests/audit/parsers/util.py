"""Reading corpus files through a parser exactly as `sentinel audit parse` does."""

from __future__ import annotations

from pathlib import Path

from sentinel.audit.files import parse_file
from sentinel.audit.parsers import ParserOptions, build_parser
from sentinel.records import AuditEvent, Unparsed

REG = "registry-logs"


def read(
    path: Path, fmt: str, options: ParserOptions | None = None
) -> tuple[list[AuditEvent], list[Unparsed]]:
    parser = build_parser(fmt, options or ParserOptions())
    items = list(parse_file(path, parser, "src"))
    return (
        [i for i in items if isinstance(i, AuditEvent)],
        [i for i in items if isinstance(i, Unparsed)],
    )


def parse_one(
    fmt: str, raw: bytes, options: ParserOptions | None = None
) -> list[AuditEvent | Unparsed]:
    return build_parser(fmt, options or ParserOptions()).parse(raw, source="src", src_pos="t:0")
