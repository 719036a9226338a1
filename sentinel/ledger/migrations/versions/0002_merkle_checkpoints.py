"""Schema version 2: stored Merkle subtree hashes and signed checkpoints.

``ledger_tree (log_id, level, idx) → hash`` holds every complete perfect subtree of level ≥ 1
(level 0 is ``ledger_entries.leaf_hash``); existing logs are backfilled here, once, streaming
their leaf hashes in seq order (constant memory). ``ledger_checkpoints`` keeps the signed
checkpoints (a copy: the external checkpoint log is the anchor).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

_BATCH = 5000


def upgrade() -> None:
    tree = op.create_table(
        "ledger_tree",
        sa.Column("log_id", sa.String(128), nullable=False),
        sa.Column("level", sa.SmallInteger, nullable=False, autoincrement=False),
        sa.Column("idx", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("log_id", "level", "idx", name="pk_ledger_tree"),
    )
    op.create_table(
        "ledger_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("log_id", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("vkey", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    op.create_index("ix_ledger_checkpoints_log", "ledger_checkpoints", ["log_id", "size"])
    conn = op.get_bind()
    entries = sa.table(
        "ledger_entries", sa.column("log_id"), sa.column("seq"), sa.column("leaf_hash")
    )
    logs = conn.execute(sa.select(entries.c.log_id).distinct()).scalars().all()
    for log_id in logs:
        _backfill(conn, tree, entries, str(log_id))
    op.execute("UPDATE ledger_meta SET value = '2' WHERE key = 'schema_version'")


def _backfill(conn: sa.Connection, tree: sa.Table, entries: Any, log_id: str) -> None:
    stack: list[tuple[int, bytes]] = []  # (level, hash), the frontier
    expected = 0
    while True:
        rows = conn.execute(
            sa.select(entries.c.seq, entries.c.leaf_hash)
            .where(entries.c.log_id == log_id, entries.c.seq >= expected)
            .order_by(entries.c.seq)
            .limit(_BATCH)
        ).all()
        nodes: list[dict[str, Any]] = []
        for seq, leaf in rows:
            if seq != expected:  # a gap: verify reports it; no node spans it
                rows = []
                break
            stack.append((0, bytes(leaf)))
            count = expected + 1
            while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
                level, right = stack.pop()
                _, left = stack.pop()
                node = hashlib.sha256(b"\x01" + left + right).digest()
                stack.append((level + 1, node))
                nodes.append(
                    {
                        "log_id": log_id,
                        "level": level + 1,
                        "idx": (count >> (level + 1)) - 1,
                        "hash": node,
                    }
                )
            expected += 1
        if nodes:
            conn.execute(tree.insert(), nodes)
        if len(rows) < _BATCH:
            return


def downgrade() -> None:
    op.drop_index("ix_ledger_checkpoints_log", "ledger_checkpoints")
    op.drop_table("ledger_checkpoints")
    op.drop_table("ledger_tree")
    op.execute("UPDATE ledger_meta SET value = '1' WHERE key = 'schema_version'")
