"""Run the ledger's Alembic migrations on an open connection (no ``alembic.ini``).

``upgrade(conn)`` brings the database to ``HEAD``: a database without Alembic's version table
but with ``ledger_entries`` is a version-1 database from before Alembic and is stamped ``0001``
first (after checking ``ledger_meta.schema_version`` is ``1``). The caller holds the schema
lock and the transaction; Alembic runs inside it (``env.py`` sees an external transaction).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from sentinel.errors import LedgerError

if TYPE_CHECKING:  # Alembic is imported when a migration runs (~0.35 s of every start-up)
    from alembic.config import Config

HEAD = "0003"
#: revisions whose tables this code reads unchanged: a read-only open (which never migrates)
#: accepts them. ``0003`` changed only SQLite's storage (``WITHOUT ROWID``), not the columns.
READABLE = frozenset({"0002", HEAD})
VERSION_TABLE = "ledger_alembic_version"
#: ``ledger_meta.schema_version`` at ``HEAD``
SCHEMA_VERSION = 2
_MIGRATIONS = Path(__file__).with_name("migrations")


def _config(conn: sa.Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def current_revision(conn: sa.Connection) -> str | None:
    """The Alembic revision stored in the database, or ``None`` (no version table)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    table = sa.table(VERSION_TABLE, sa.column("version_num"))
    value = conn.execute(sa.select(table.c.version_num)).scalar()
    return None if value is None else str(value)


def _meta_version(conn: sa.Connection) -> str | None:
    value = conn.execute(
        sa.text("SELECT value FROM ledger_meta WHERE key = 'schema_version'")
    ).scalar_one_or_none()
    return None if value is None else str(value)


def upgrade(conn: sa.Connection) -> None:
    """Migrate to ``HEAD`` inside the caller's transaction. Raises ``LedgerError``."""
    from alembic import command
    from alembic.util.exc import CommandError

    revision = current_revision(conn)
    try:
        if revision is None and sa.inspect(conn).has_table("ledger_entries"):
            found = _meta_version(conn) if sa.inspect(conn).has_table("ledger_meta") else None
            if found != "1":
                raise LedgerError(
                    f"ledger: database schema version {found} is not {SCHEMA_VERSION} "
                    "(written by another Sentinel version)"
                )
            command.stamp(_config(conn), "0001")
        if revision != HEAD:
            command.upgrade(_config(conn), HEAD)
    except CommandError as exc:
        raise LedgerError(f"ledger: cannot migrate the database schema: {exc}") from exc
    found = _meta_version(conn)
    if found != str(SCHEMA_VERSION):
        raise LedgerError(
            f"ledger: database schema version {found} is not {SCHEMA_VERSION} "
            "(written by another Sentinel version)"
        )
