"""Reading whole log or payload files through a parser (``sentinel audit parse``/``ingest``).

Line formats: every complete line, plus a final line without newline (the file is taken as
finished), each capped at ``max_line`` bytes (longer → ``Unparsed`` keeping the first KiB).
Payload formats (``distribution-notifications``): a file holds one envelope (compact or
pretty-printed), or one JSON document per line (envelopes, or Sentinel's capture records
``{"received_at", "path", "headers", "body"}``); the whole file is read, at most
``max_payload_file`` bytes.

``src_pos`` is ``"<absolute path>@<dev>:<ino>.0:<byte offset>"``, the same scheme the tailer
uses, so a file ingested by hand and later tailed gives the same dedup keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sentinel.audit.cursor import Cursor
from sentinel.audit.lines import DEFAULT_MAX_LINE, Line, Oversize, iter_lines
from sentinel.audit.parsers import PAYLOAD_FORMATS, Parser
from sentinel.audit.parsers.interface import loads_limited
from sentinel.errors import InputError
from sentinel.records import AuditEvent, Unparsed, sha256_hex

MAX_PAYLOAD_FILE = 64 << 20


def parse_file(
    path: Path,
    parser: Parser,
    source: str,
    *,
    max_line: int = DEFAULT_MAX_LINE,
    max_payload_file: int = MAX_PAYLOAD_FILE,
) -> Iterator[AuditEvent | Unparsed]:
    """Every record in ``path``, in file order. Raises ``InputError`` if it cannot be read."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    with fh:
        st = os.fstat(fh.fileno())
        if not os.path.isfile(path):  # noqa: PTH113 - after open, to report directories
            raise InputError(f"{path}: not a regular file")
        file_id = Cursor(st.st_dev, st.st_ino, "", 0, 0).file_id(str(path.absolute()))
        try:
            if parser.name in PAYLOAD_FORMATS:
                if st.st_size > max_payload_file:
                    raise InputError(
                        f"{path}: {st.st_size} bytes; payload files are limited to "
                        f"{max_payload_file} bytes"
                    )
                yield from _payloads(fh.read(), parser, source, file_id)
            else:
                yield from _lines(fh, parser, source, file_id, max_line)
        except OSError as exc:
            raise InputError(f"{path}: read error: {exc.strerror or exc}") from exc


def _lines(
    fh: BinaryIO, parser: Parser, source: str, file_id: str, max_line: int
) -> Iterator[AuditEvent | Unparsed]:
    end = 0
    for line in iter_lines(fh, 0, max_line=max_line):
        yield from _one(line, parser, source, file_id, max_line)
        end = line.end
    fh.seek(end)
    rest = fh.read(max_line + 1)
    if rest:
        size = os.fstat(fh.fileno()).st_size
        data: bytes | Oversize = rest
        if len(rest) > max_line:
            data = Oversize(rest[:1024], sha256_hex(rest), size - end)
        yield from _one(Line(end, data, size), parser, source, file_id, max_line)


def _one(
    line: Line, parser: Parser, source: str, file_id: str, max_line: int
) -> list[AuditEvent | Unparsed]:
    pos = f"{file_id}:{line.start}"
    if isinstance(line.data, Oversize):
        o = line.data
        reason = f"line longer than {max_line} bytes ({o.length})"
        return [Unparsed(source, reason, o.head, pos, raw_sha256=o.sha256, raw_len=o.length)]
    return parser.parse(line.data.rstrip(b"\r"), source=source, src_pos=pos)


def _payloads(
    data: bytes, parser: Parser, source: str, file_id: str
) -> Iterator[AuditEvent | Unparsed]:
    if not data.strip():
        return
    try:
        loads_limited(data)
        whole = True
    except ValueError:
        first = data.lstrip().split(b"\n", 1)[0]
        try:
            loads_limited(first)
            whole = False
        except ValueError:
            whole = True  # neither: one payload, reported as one Unparsed
    if whole:
        yield from parser.parse(data, source=source, src_pos=f"{file_id}:0")
        return
    offset = 0
    for line in data.split(b"\n"):
        if line.strip():
            yield from parser.parse(
                line.rstrip(b"\r"), source=source, src_pos=f"{file_id}:{offset}"
            )
        offset += len(line) + 1
