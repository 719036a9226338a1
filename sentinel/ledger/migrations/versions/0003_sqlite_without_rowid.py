"""SQLite storage: ``ledger_dedup`` and ``ledger_tree`` become ``WITHOUT ROWID`` tables.

A rowid table with a composite primary key is two B-trees: the rows under a hidden rowid and
the primary-key index, which repeats the key (a dedup key is about 110 characters). Stored
``WITHOUT ROWID`` (https://www.sqlite.org/withoutrowid.html) each row lives once, in its
primary-key B-tree: one insert instead of two per dedup key and per tree node, and a smaller
file (bench/README.md "Issue 3 figures": about 3 µs less per appended record, 10 % smaller).
Columns, keys and constraints are unchanged, so the logical schema version stays 2; PostgreSQL
has no rowid and is left as it is. Existing rows are copied once, in key order.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

#: table → (column definitions, primary key, column list, key order), as 0001/0002 made them
_TABLES = {
    "ledger_dedup": (
        'log_id VARCHAR(128) NOT NULL, "key" TEXT NOT NULL, seq BIGINT NOT NULL',
        'CONSTRAINT pk_ledger_dedup PRIMARY KEY (log_id, "key")',
        'log_id, "key", seq',
        'log_id, "key"',
    ),
    "ledger_tree": (
        "log_id VARCHAR(128) NOT NULL, level SMALLINT NOT NULL, idx BIGINT NOT NULL, "
        "hash BLOB NOT NULL",
        "CONSTRAINT pk_ledger_tree PRIMARY KEY (log_id, level, idx)",
        "log_id, level, idx, hash",
        "log_id, level, idx",
    ),
}


def _rebuild(rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    suffix = "" if rowid else " WITHOUT ROWID"
    for table, (columns, pk, names, order) in _TABLES.items():
        new = f"{table}_new"
        op.execute(sa.text(f"CREATE TABLE {new} ({columns}, {pk}){suffix}"))
        op.execute(
            sa.text(f"INSERT INTO {new} ({names}) SELECT {names} FROM {table} ORDER BY {order}")  # noqa: S608 - fixed names
        )
        op.execute(sa.text(f"DROP TABLE {table}"))
        op.execute(sa.text(f"ALTER TABLE {new} RENAME TO {table}"))


def upgrade() -> None:
    _rebuild(rowid=False)


def downgrade() -> None:
    _rebuild(rowid=True)
