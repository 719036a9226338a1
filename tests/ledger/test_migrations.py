"""Alembic: a version-1 database (the first-run schema, before the Merkle tree) upgrades on
open, gets its tree built once, and verifies; a fresh database lands on the head revision."""

from __future__ import annotations

import sqlalchemy as sa

from sentinel.ledger import Ledger, canonical_bytes, chain_hash, leaf_hash, merkle
from sentinel.ledger.canonical import record_body
from sentinel.ledger.hashing import GENESIS
from sentinel.ledger.schema import HEAD, VERSION_TABLE
from tests.ledger.helpers import audit_record, raw

# The version-1 schema exactly as the first-run ledger created it (metadata.create_all).
V1 = sa.MetaData()
sa.Table(
    "ledger_entries",
    V1,
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
    sa.Index("ix_ledger_entries_kind", "log_id", "kind", "seq"),
)
sa.Table(
    "ledger_dedup",
    V1,
    sa.Column("log_id", sa.String(128), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("log_id", "key", name="pk_ledger_dedup"),
)
sa.Table(
    "ledger_cursors",
    V1,
    sa.Column("log_id", sa.String(128), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("log_id", "key", name="pk_ledger_cursors"),
)
sa.Table(
    "ledger_meta",
    V1,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def _make_v1(url: str, logs: dict[str, int]) -> dict[str, list[bytes]]:
    """A v1 database holding ``logs`` (log id → records), written as v1 ``append`` did."""
    leaves: dict[str, list[bytes]] = {}
    with raw(url) as conn:
        V1.create_all(conn)
        conn.execute(sa.text("INSERT INTO ledger_meta VALUES ('schema_version', '1')"))
        for log_id, n in logs.items():
            prev = GENESIS
            rows = []
            for seq in range(n):
                rec = audit_record(seq)
                ts = f"2026-03-01T12:00:{seq % 60:02d}.000000Z"
                body = record_body(
                    log_json=canonical_bytes(log_id),
                    seq=seq,
                    kind_json=canonical_bytes(rec["kind"]),
                    recorded_at_json=canonical_bytes(ts),
                    data_canonical=canonical_bytes(rec["data"]),
                )
                leaf = leaf_hash(body)
                chained = chain_hash(prev, leaf)
                rows.append(
                    {
                        "log_id": log_id,
                        "seq": seq,
                        "recorded_at": ts,
                        "kind": rec["kind"],
                        "body": body,
                        "leaf_hash": leaf,
                        "prev_hash": prev,
                        "chain_hash": chained,
                    }
                )
                prev = chained
            conn.execute(V1.tables["ledger_entries"].insert(), rows)
            conn.execute(
                V1.tables["ledger_dedup"].insert(),
                [{"log_id": log_id, "key": f"key-{seq}", "seq": seq} for seq in range(n)],
            )
            conn.execute(
                V1.tables["ledger_cursors"].insert(),
                [{"log_id": log_id, "key": "src", "value": "42", "updated_at": "t"}],
            )
            leaves[log_id] = [r["leaf_hash"] for r in rows]
    return leaves


def test_v1_database_upgrades_and_verifies(ledger_url: str) -> None:
    leaves = _make_v1(ledger_url, {"sentinel": 77, "other": 5})
    with Ledger.open(ledger_url) as led:
        result = led.verify()
        assert (result.status, result.size) == ("valid", 77), result
        assert led.root() == merkle.root(77, merkle.MemoryTree(leaves["sentinel"]))
        assert led.get_cursor("src") == "42"
        led.append([audit_record(77)])
        assert led.verify().status == "valid"
        proof = led.inclusion_proof(3)
        merkle.verify_inclusion(3, 78, proof.leaf_hash, list(proof.path), proof.root)
    with Ledger.open(ledger_url, log_id="other") as other:
        assert other.root() == merkle.root(5, merkle.MemoryTree(leaves["other"]))
        assert other.verify().status == "valid"
    with raw(ledger_url) as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD
        version = conn.execute(
            sa.text("SELECT value FROM ledger_meta WHERE key = 'schema_version'")
        ).scalar()
        assert version == "2"
        nodes = conn.execute(
            sa.text("SELECT count(*) FROM ledger_tree WHERE log_id = 'sentinel'")
        ).scalar()
        assert nodes == 78 - bin(78).count("1")  # a tree of n leaves has n - popcount(n) nodes


def test_fresh_database_is_at_head(ledger_url: str) -> None:
    Ledger.open(ledger_url).close()
    Ledger.open(ledger_url).close()  # the second open takes the fast path
    with raw(ledger_url) as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD
        names = set(sa.inspect(conn).get_table_names())
    assert {"ledger_entries", "ledger_tree", "ledger_checkpoints", VERSION_TABLE} <= names


def test_upgrade_keeps_dedup_keys_and_sqlite_drops_rowids(ledger_url: str) -> None:
    """0003 rebuilds ``ledger_dedup`` and ``ledger_tree`` WITHOUT ROWID on SQLite: every key
    and node is still there (a redelivery is still skipped, proofs still verify)."""
    _make_v1(ledger_url, {"sentinel": 40, "other": 3})
    with Ledger.open(ledger_url) as led:
        again = led.append([audit_record(5), audit_record(99)], dedup_keys=["key-5", "key-new"])
        assert (again.appended, again.duplicates) == (1, 1)
        assert led.verify().status == "valid"
        proof = led.inclusion_proof(17)
        merkle.verify_inclusion(17, 41, proof.leaf_hash, list(proof.path), proof.root)
    with Ledger.open(ledger_url, log_id="other") as other:
        assert other.append([audit_record(1)], dedup_keys=["key-2"]).duplicates == 1
    with raw(ledger_url) as conn:
        keys = conn.execute(sa.text("SELECT count(*) FROM ledger_dedup")).scalar()
        assert keys == 40 + 3 + 1
        if conn.dialect.name == "sqlite":
            for table in ("ledger_dedup", "ledger_tree"):
                sql = conn.execute(
                    sa.text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}
                ).scalar()
                assert str(sql).rstrip().endswith("WITHOUT ROWID"), sql


def test_read_only_open_reads_a_revision_0002_ledger(ledger_url: str) -> None:
    """0003 changed only SQLite's storage: ``ledger verify`` (read-only, never migrating)
    still reads a ledger a writer has not migrated yet."""
    from alembic import command

    from sentinel.ledger import schema

    with Ledger.open(ledger_url) as led:
        led.append([audit_record(i) for i in range(9)], dedup_keys=[f"k{i}" for i in range(9)])
        root = led.root()
    with raw(ledger_url) as conn:
        command.downgrade(schema._config(conn), "0002")
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == "0002"
    with Ledger.open(ledger_url, read_only=True) as ro:
        result = ro.verify()
        assert (result.status, result.size) == ("valid", 9), result
        assert ro.root() == root
    with Ledger.open(ledger_url) as led:  # a writer migrates it again; the keys are kept
        assert led.append([audit_record(3)], dedup_keys=["k3"]).duplicates == 1
    with raw(ledger_url) as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD
