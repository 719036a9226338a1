"""Reading whole log or payload files through a parser (``sentinel audit parse``/``ingest``).

Line formats: every complete line, plus a final line without newline (the file is taken as
finished), each capped at ``max_line`` bytes (longer → ``Unparsed`` keeping the first KiB).
Payload formats (``distribution-notifications``): a file holds one envelope (compact or
pretty-printed), or one JSON document per line (envelopes, or Sentinel's capture records
``{"received_at", "path", "headers", "body"}``); the whole file is read, at most
``max_payload_file`` bytes (64 MiB). A larger file whose first line is a JSON document by
itself (NDJSON, e.g. a day of MinIO audit log) is read line by line instead, each line at
most ``max_payload_line`` bytes (16 MiB; longer → ``Unparsed``), in bounded memory.

``src_pos`` is ``"<absolute path>@<dev>:<ino>.0:<fingerprint>:<byte offset>"``, the same
scheme the tailer uses; the fingerprint (``cursor.first_line_fingerprint``: SHA-256 of the
file's first line, at most 1 KiB) is the file's content identity, and dedup keys use it with
the offset instead of device and inode (``sentinel.records.position_key``): a file ingested by
hand and later tailed, or a byte-for-byte copy of it ingested again, gives the same keys.

A gzip file (RFC 1952 magic ``1f 8b``, e.g. a log rotated with logrotate ``compress``) is read
decompressed: offsets are then offsets in the decompressed stream. ``-`` reads standard input,
and a pipe or character device (``/dev/stdin``, ``<(zcat …)``) is read the same way: spooled
to an anonymous temporary file first, since reading needs to seek. Positions are then
``<stdin>@0:0.0:<fingerprint>:<offset>`` (or the pipe's path); their dedup keys rest on the
content identity, so the same bytes piped in twice are recognised.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO, cast

from sentinel.audit.cursor import HEAD_BYTES, Cursor, first_line_fingerprint
from sentinel.audit.lines import (
    DEFAULT_MAX_LINE,
    GZIP_ERRORS,
    GzipStream,
    Line,
    Oversize,
    iter_lines,
)
from sentinel.audit.parsers import PAYLOAD_FORMATS, Parser
from sentinel.audit.parsers.interface import flush_parser, loads_limited
from sentinel.errors import InputError
from sentinel.records import AuditEvent, Unparsed

MAX_PAYLOAD_FILE = 64 << 20
#: a line of a payload file read line by line (NDJSON over ``MAX_PAYLOAD_FILE``), at most
MAX_PAYLOAD_LINE = 16 << 20
#: a gzip input may decompress to at most this many times its size (64 MiB at least)
MAX_GZIP_RATIO = 200
#: the path that means standard input
STDIN = Path("-")
_GZIP_MAGIC = b"\x1f\x8b"


def parse_file(
    path: Path,
    parser: Parser,
    source: str,
    *,
    max_line: int = DEFAULT_MAX_LINE,
    max_payload_file: int = MAX_PAYLOAD_FILE,
    max_payload_line: int = MAX_PAYLOAD_LINE,
    finish: bool = True,
) -> Iterator[AuditEvent | Unparsed]:
    """Every record in ``path`` (``-``: standard input), in file order.

    With ``finish`` (the default) what the parser still holds is flushed at the end
    (``flush_parser``: ``k8s-audit`` requests seen only at a non-final stage); a caller reading
    several files of one source passes ``False`` and flushes once after the last file.
    A gzip stream damaged (or expanding over ``MAX_GZIP_RATIO``) after its start gives the
    records before the damage and one ``Unparsed`` for the rest.
    Raises ``InputError`` if it cannot be read (missing, a directory, a gzip stream damaged
    at its start,
    a payload file over ``max_payload_file`` bytes that is not one JSON document per line).
    """
    with ExitStack() as stack:
        if path == STDIN:
            fh: BinaryIO = _spool(sys.stdin.buffer, stack)
            name, cur = "<stdin>", Cursor(0, 0, "", 0, 0)
        else:
            try:
                fh = stack.enter_context(path.open("rb"))
            except OSError as exc:
                raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from exc
            st = os.fstat(fh.fileno())
            if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
                fh, cur = _spool(fh, stack), Cursor(0, 0, "", 0, 0)
            elif not stat.S_ISREG(st.st_mode):
                raise InputError(f"{path}: not a regular file")
            else:
                cur = Cursor(st.st_dev, st.st_ino, "", 0, 0)
            name = str(path.absolute())
        if fh.read(2) == _GZIP_MAGIC:
            fh.seek(0)
            stream = GzipStream(fh, max_ratio=MAX_GZIP_RATIO)
            stack.callback(stream.close)
            fh = cast(BinaryIO, stream)
        fh.seek(0)
        try:
            file_id = cur.file_id(name, first_line_fingerprint(fh.read(HEAD_BYTES)))
            fh.seek(0)
            if parser.name in PAYLOAD_FORMATS:
                data = fh.read(max_payload_file + 1)
                if len(data) <= max_payload_file:
                    yield from _payloads(data, parser, source, file_id)
                    yield from _damage(fh, source, file_id, len(data))
                elif _is_ndjson(data, max_payload_line):
                    del data  # one JSON document per line: read line by line, bounded
                    fh.seek(0)
                    yield from _lines(fh, parser, source, file_id, max_payload_line)
                else:
                    raise InputError(
                        f"{path}: more than {max_payload_file} bytes and not one JSON "
                        "document per line; a single payload is limited to that"
                    )
            else:
                yield from _lines(fh, parser, source, file_id, max_line)
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise InputError(f"{path}: read error: {exc}") from exc
        if finish:
            yield from flush_parser(parser, source)


def _spool(source: BinaryIO, stack: ExitStack) -> BinaryIO:
    """``source`` (a pipe) copied to an anonymous temporary file, rewound; closed by ``stack``."""
    fh: BinaryIO = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - it is one
    shutil.copyfileobj(source, fh)
    fh.seek(0)
    return fh


def _is_ndjson(data: bytes, max_line: int) -> bool:
    """Whether ``data`` starts with a complete line (at most ``max_line`` bytes) that is a
    JSON document by itself."""
    first = data.lstrip()
    nl = first.find(b"\n", 0, max_line + 1)
    if nl < 0:
        return False
    try:
        loads_limited(first[:nl])
    except ValueError:
        return False
    return True


def _lines(
    fh: BinaryIO, parser: Parser, source: str, file_id: str, max_line: int
) -> Iterator[AuditEvent | Unparsed]:
    end = 0
    try:
        for line in iter_lines(fh, 0, max_line=max_line):
            if line.data and line.data != b"\r":  # a blank line carries nothing
                yield from _one(line, parser, source, file_id, max_line)
            end = line.end
    except GZIP_ERRORS as exc:
        yield _damaged(exc, source, file_id, end)
        return
    fh.seek(end)
    rest = fh.read(max_line + 1)
    if rest:
        data: bytes | Oversize = rest
        size = end + len(rest)
        if len(rest) > max_line:  # hash the whole unterminated tail, keep its first KiB
            digest = hashlib.sha256(rest)
            while chunk := fh.read(1 << 16):
                digest.update(chunk)
                size += len(chunk)
            data = Oversize(rest[:1024], digest.hexdigest(), size - end)
        yield from _one(Line(end, data, size), parser, source, file_id, max_line)


def _damaged(exc: BaseException, source: str, file_id: str, at: int) -> Unparsed:
    """The rest of a damaged (or over-expanding) gzip stream, from decompressed byte ``at``:
    kept as one ``Unparsed`` so the records before the damage still count."""
    reason = f"damaged gzip stream: {exc}; nothing from this byte on could be read"
    return Unparsed(source, reason, b"", f"{file_id}:{at}")


def _damage(fh: BinaryIO, source: str, file_id: str, at: int) -> Iterator[Unparsed]:
    """After a whole-file read: an ``Unparsed`` if the gzip stream was damaged at ``at``."""
    if isinstance(fh, GzipStream):
        try:
            fh.read(1)
        except GZIP_ERRORS as exc:
            yield _damaged(exc, source, file_id, at)


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
