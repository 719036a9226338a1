"""Schema version 1: entries, dedup keys, cursors, meta (the first-run ledger).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column("log_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("recorded_at", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary, nullable=False),
        sa.Column("chain_hash", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("log_id", "seq", name="pk_ledger_entries"),
        sa.UniqueConstraint("log_id", "prev_hash", name="uq_ledger_entries_prev"),
    )
    op.create_index("ix_ledger_entries_kind", "ledger_entries", ["log_id", "kind", "seq"])
    op.create_table(
        "ledger_dedup",
        sa.Column("log_id", sa.String(128), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("log_id", "key", name="pk_ledger_dedup"),
    )
    op.create_table(
        "ledger_cursors",
        sa.Column("log_id", sa.String(128), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("log_id", "key", name="pk_ledger_cursors"),
    )
    meta = op.create_table(
        "ledger_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])


def downgrade() -> None:
    for name in ("ledger_meta", "ledger_cursors", "ledger_dedup", "ledger_entries"):
        op.drop_table(name)
