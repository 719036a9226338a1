"""The ledger database named by a SQLAlchemy URL or a SQLite file path, and how it is shown.

``--ledger`` options and ``[ledger] url`` take either; a path is never parsed as a URL (a
``?``, ``%``, space or parenthesis in it is part of the file name). URL syntax: RFC 3986 as
SQLAlchemy reads it (https://docs.sqlalchemy.org/en/20/core/engines.html#database-urls).
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

#: an RFC 3986 scheme followed by ``://``: the value is a URL, anything else a file path
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def database_url(value: str) -> str:
    """``value`` as a SQLAlchemy URL string: a URL (``scheme://…``) unchanged; a file path
    (relative to the working directory, ``~`` expanded) as ``sqlite:///ABSOLUTE`` with its
    characters quoted, so ``sqlalchemy.make_url`` gives the path back as the database."""
    if _SCHEME_RE.match(value):
        return value
    path = Path(value).expanduser().absolute()
    return sa.URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def display_url(url: str | sa.URL) -> str:
    """``url`` for messages: any password hidden; a SQLite database as ``sqlite:///PATH`` with
    the path as it is (not percent-encoded). A value that is not a URL is returned as is."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return str(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return f"sqlite:///{parsed.database}"
    return parsed.render_as_string(hide_password=True)
