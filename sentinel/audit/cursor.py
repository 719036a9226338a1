"""Where a tailed file was left: the cursor, and where cursors are kept.

A cursor identifies the file by device and inode *and* by the SHA-256 of its first
``head_len`` (≤ 1 KiB) bytes (inode numbers are reused after deletion), plus the byte offset
of the next unread line (fail2ban ``server/filter.py`` ``FileContainer`` does the same).

``CursorStore`` is anything with ``get_cursor(key) -> str | None``; ``sentinel.ledger.Ledger``
is one (its ``append(..., cursors={key: value})`` commits cursor and records together).
The *content identity* of a file — what dedup keys use, so that a byte-for-byte copy
(logrotate ``copytruncate``'s ``app.log.1``, a restored backup, a log fetched from another
host) is recognised — is ``first_line_fingerprint``: the SHA-256 of the file's first line
(without its newline), capped at ``HEAD_BYTES`` (Filebeat's ``fingerprint`` file identity and
fail2ban's head hash do the same). Device and inode stay in ``src_pos`` for people to read.

``JSONFileCursorStore`` is a small standalone store (one JSON file, atomic replace) for tests
and ``sentinel audit`` dry runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from sentinel.errors import InputError

HEAD_BYTES = 1024
#: hex digits of the first-line fingerprint kept in ``src_pos`` (64 bits: two different first
#: lines collide with probability 2^-64, and even then only lines with the same bytes at the
#: same offset would share a dedup key)
FINGERPRINT_HEX = 16


def first_line_fingerprint(head: bytes) -> str:
    """Content identity of a file whose first bytes are ``head``: the SHA-256 (hex, first
    ``FINGERPRINT_HEX`` digits) of its first line without the ``\\n``, at most ``HEAD_BYTES``
    bytes of it.

    ``head`` is the file's first line, or its first ``HEAD_BYTES`` bytes or more (anything after
    the first newline is ignored). A file whose whole content has no newline (a finished file,
    read to its end) is fingerprinted by that content. Two files with the same first line share
    a fingerprint: their lines are then told apart by offset and content only (see
    ``sentinel.records.position_key``).
    """
    nl = head.find(b"\n", 0, HEAD_BYTES)
    first = head[:nl] if nl >= 0 else head[:HEAD_BYTES]
    return hashlib.sha256(first).hexdigest()[:FINGERPRINT_HEX]


@runtime_checkable
class CursorStore(Protocol):
    """Read access to committed cursors (the write goes with the records)."""

    def get_cursor(self, key: str) -> str | None:
        """The value last committed for ``key``, or ``None``."""
        ...


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position in one file: ``dev``/``ino`` (``os.stat``), head hash and length, ``offset`` bytes."""  # noqa: E501

    dev: int
    ino: int
    head_sha256: str
    head_len: int
    offset: int
    #: bumped each time the same inode was truncated or rewritten (informative: it tells the
    #: generations of one inode apart in ``src_pos``; dedup keys use the content fingerprint)
    gen: int = 0

    def file_id(self, path: str, fingerprint: str) -> str:
        """``"<path>@<dev>:<ino>.<gen>:<fingerprint>"``: the file part of every ``src_pos``
        from this file (``fingerprint``: ``first_line_fingerprint`` of its content)."""
        return f"{path}@{self.dev}:{self.ino}.{self.gen}:{fingerprint}"

    def dumps(self) -> str:
        """Compact JSON string (what the store keeps)."""
        return json.dumps(
            {
                "dev": self.dev,
                "ino": self.ino,
                "head_sha256": self.head_sha256,
                "head_len": self.head_len,
                "offset": self.offset,
                "gen": self.gen,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: str) -> Cursor | None:
        """Parse ``dumps`` output; ``None`` when it is not a valid cursor (start afresh)."""
        try:
            d = json.loads(text)
            cur = cls(
                int(d["dev"]),
                int(d["ino"]),
                str(d["head_sha256"]),
                int(d["head_len"]),
                int(d["offset"]),
                int(d.get("gen", 0)),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return cur if cur.offset >= 0 and 0 <= cur.head_len <= HEAD_BYTES else None


def head_of(fd: int, length: int = HEAD_BYTES) -> tuple[str, int]:
    """SHA-256 (hex) and length of the first ≤ ``length`` bytes of open file ``fd``."""
    data = os.pread(fd, length, 0)
    return hashlib.sha256(data).hexdigest(), len(data)


class JSONFileCursorStore:
    """Cursors in one JSON object file; ``commit`` replaces it atomically (temp + rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}: unreadable cursor file: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError(f"{self.path}: cursor file is not a JSON object")
        return {str(k): str(v) for k, v in data.items()}

    def get_cursor(self, key: str) -> str | None:
        """The value last committed for ``key``, or ``None``. Raises ``InputError``."""
        with self._lock:
            return self._read().get(key)

    def commit(self, cursors: dict[str, str]) -> None:
        """Merge ``cursors`` into the file atomically."""
        with self._lock:
            data = self._read()
            data.update(cursors)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
            tmp.replace(self.path)
