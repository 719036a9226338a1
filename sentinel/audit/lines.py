"""Reading complete lines from a byte stream, with a line-length cap and no decoding.

Used by the tailer and by ``sentinel audit parse``. A line is the bytes up to (not including)
``\\n``. A last line without ``\\n`` is *not* returned (it may still be being written); the
caller keeps its offset and reads it again later. A line longer than ``max_line`` bytes is
returned as ``Oversize`` (its first ``KEEP`` bytes, the SHA-256 and length of the whole line)
once its newline arrives, and reading resynchronises after that newline; memory stays
O(``max_line`` + chunk) whatever the line length.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

DEFAULT_MAX_LINE = 1 << 20  # 1 MiB
KEEP = 1024
CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Oversize:
    """A line longer than the cap: first ``KEEP`` bytes, SHA-256 (hex) and length of the whole."""

    head: bytes
    sha256: str
    length: int


@dataclass(frozen=True, slots=True)
class Line:
    """One complete line: ``start`` offset (bytes), the content, ``end`` = offset after ``\\n``."""

    start: int
    data: bytes | Oversize
    end: int


def iter_lines(
    fh: BinaryIO, offset: int, *, max_line: int = DEFAULT_MAX_LINE, chunk: int = CHUNK
) -> Iterator[Line]:
    """Complete lines of ``fh`` from byte ``offset`` to the current end of file.

    Stops at end of file; a trailing partial line is left for the next call (resume from the
    last ``Line.end``). Raises ``OSError`` only if reading the file fails.
    """
    fh.seek(offset)
    buf = b""
    pos = offset  # file offset of buf[0]
    while True:
        data = fh.read(chunk)
        if not data:
            return
        buf += data
        at = 0  # start of the current line in buf (buf is cut once per chunk, not per line)
        find = buf.find
        while True:
            nl = find(b"\n", at)
            if nl < 0:
                break
            length = nl - at
            if length > max_line:
                # only possible when a chunk brought both the overflow and the newline
                head = buf[at:nl]
                yield Line(pos, _oversize(head, hashlib.sha256(head), length), pos + length + 1)
            else:
                yield Line(pos, buf[at:nl], pos + length + 1)
            pos += length + 1
            at = nl + 1
        if at:
            buf = buf[at:]
        if len(buf) > max_line:
            over = _skip_oversize(fh, buf, chunk)
            if over is None:
                return  # newline not written yet: the caller retries from ``pos``
            line, rest = over
            yield Line(pos, line, pos + line.length + 1)
            pos += line.length + 1
            buf = rest


def _oversize(head: bytes, digest: hashlib._Hash, length: int) -> Oversize:
    return Oversize(head[:KEEP], digest.hexdigest(), length)


def _skip_oversize(fh: BinaryIO, buf: bytes, chunk: int) -> tuple[Oversize, bytes] | None:
    """Consume an over-long line whose first bytes are ``buf`` (no newline in it yet)."""
    head = buf[:KEEP]
    digest = hashlib.sha256(buf)
    length = len(buf)
    while True:
        data = fh.read(chunk)
        if not data:
            return None
        nl = data.find(b"\n")
        if nl < 0:
            digest.update(data)
            length += len(data)
            continue
        digest.update(data[:nl])
        length += nl
        return _oversize(head, digest, length), data[nl + 1 :]


#: what reading a damaged gzip stream raises
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


class GzipExpansionError(gzip.BadGzipFile):
    """A gzip stream decompressed to more than ``GzipStream.max_ratio`` times its size."""


class GzipStream:
    """A gzip file (RFC 1952) read decompressed, for rotated logs (``app.log.1.gz``).

    ``read`` returns every byte before a damage (``gzip.GzipFile.read`` drops the bytes of the
    buffered read that hit it) and raises the error (one of ``GZIP_ERRORS``) on the next call.
    ``max_ratio``, when set, bounds the decompressed size to ``max(max_ratio × compressed
    size, 64 MiB)``: beyond it ``GzipExpansionError`` — a decompression bomb (a few hundred KB
    of gzip holding gigabytes of newlines) must not keep a reader busy for hours. Rotated text
    logs compress about 5-30×.
    """

    FLOOR = 64 << 20

    def __init__(self, source: Path | BinaryIO, *, max_ratio: int | None = None) -> None:
        if isinstance(source, Path):
            self._gz = gzip.open(source, "rb")  # noqa: SIM115 - closed by close()
            compressed = source.stat().st_size
        else:
            self._gz = gzip.GzipFile(fileobj=source, mode="rb")
            at = source.tell()
            compressed = source.seek(0, 2)
            source.seek(at)
        self._limit = max(max_ratio * compressed, self.FLOOR) if max_ratio is not None else None
        self._error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        if self._error is not None:
            raise self._error
        out = bytearray()
        while n < 0 or len(out) < n:
            try:
                data = self._gz.read1(n - len(out) if n >= 0 else CHUNK)
            except GZIP_ERRORS as exc:
                if not out:
                    raise
                self._error = exc
                break
            if not data:
                break
            out += data
            if self._limit is not None and self._gz.tell() > self._limit:
                self._error = GzipExpansionError(
                    f"decompresses to more than {self._limit} bytes (over the expansion "
                    "limit: a decompression bomb?); not read further"
                )
                break
        return bytes(out)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._gz.seek(offset, whence)

    def tell(self) -> int:
        return self._gz.tell()

    def fileno(self) -> int:
        return self._gz.fileno()

    def close(self) -> None:
        self._gz.close()
