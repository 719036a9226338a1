"""Shared helpers for ledger tests: realistic records and raw SQL access for tampering."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


class FixedClock:
    """A settable clock (aware UTC) for ``Ledger.open(clock=...)``."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def audit_record(i: int, *, ts: str | None = None, action: str = "pull") -> dict[str, Any]:
    """An audit event shaped like ``AuditEvent.to_json()`` (DESIGN.md field names)."""
    return {
        "kind": "audit_event",
        "data": {
            "ts": ts or f"2026-03-01T10:{i // 60 % 60:02d}:{i % 60:02d}.000000Z",
            "source": "registry",
            "source_kind": "distribution",
            "action": action,
            "outcome": "success",
            "actor": f"user{i % 7}",
            "actor_verified": True,
            "artifact": "models/llama-eu",
            "reference": "v1",
            "digest": f"sha256:{i:064x}",
            "client_ip": "10.20.0.5",
            "client_ip_source": "socket",
            "client_country": None,
            "user_agent": "skopeo/1.9.3",
            "request_id": f"req-{i}",
            "event_id": f"evt-{i}",
            "http_method": "GET",
            "http_status": 200,
            "raw_sha256": f"{i:064x}",
            "src_pos": f"app.log:{i * 512}",
            "ts_zone_assumed": None,
        },
    }


@contextmanager
def raw(url: str) -> Iterator[sa.Connection]:
    """A plain SQLAlchemy transaction on the ledger database, bypassing ``Ledger``."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def row(url: str, seq: int, log_id: str = "sentinel") -> dict[str, Any]:
    with raw(url) as conn:
        found = (
            conn.execute(
                sa.text("SELECT * FROM ledger_entries WHERE log_id = :l AND seq = :s"),
                {"l": log_id, "s": seq},
            )
            .mappings()
            .one()
        )
        return dict(found)


def update(url: str, seq: int, **values: Any) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in values)
    with raw(url) as conn:
        res = conn.execute(
            sa.text(f"UPDATE ledger_entries SET {sets} WHERE log_id = 'sentinel' AND seq = :seq"),
            {**values, "seq": seq},
        )
        assert res.rowcount == 1


def rewrite_from(url: str, seq: int, log_id: str = "sentinel") -> None:
    """A thorough attacker: change record ``seq`` (pull → push), then recompute every later
    leaf/chain hash and rebuild the whole Merkle tree, so the database is self-consistent."""
    from sentinel.ledger import chain_hash, leaf_hash

    with raw(url) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT seq, body, prev_hash FROM ledger_entries WHERE log_id = :l ORDER BY seq"
            ),
            {"l": log_id},
        ).all()
        leaves = []
        prev = None
        for s, body, prev_hash in rows:
            body = bytes(body)
            if s == seq:
                body = body.replace(b'"action":"pull"', b'"action":"push"')
                assert body != bytes(rows[seq][1])
            leaf = leaf_hash(body)
            prev = bytes(prev_hash) if prev is None else prev
            chained = chain_hash(prev, leaf)
            if s >= seq:
                conn.execute(
                    sa.text(
                        "UPDATE ledger_entries SET body = :b, leaf_hash = :lh, prev_hash = :p, "
                        "chain_hash = :c WHERE log_id = :l AND seq = :s"
                    ),
                    {"b": body, "lh": leaf, "p": prev, "c": chained, "l": log_id, "s": s},
                )
            prev = chained
            leaves.append(leaf)
        rebuild_tree(conn, leaves, log_id)


def rebuild_tree(conn: sa.Connection, leaves: list[bytes], log_id: str = "sentinel") -> None:
    """Replace the stored Merkle nodes of ``log_id`` by those of ``leaves``."""
    from sentinel.ledger import merkle

    conn.execute(sa.text("DELETE FROM ledger_tree WHERE log_id = :l"), {"l": log_id})
    tree = merkle.MemoryTree(leaves)
    nodes = [
        {"l": log_id, "lv": lv, "ix": ix, "h": tree(lv, ix)}
        for n in range(len(leaves))
        for lv, ix in merkle.completed_nodes(n)
    ]
    if nodes:
        conn.execute(
            sa.text("INSERT INTO ledger_tree (log_id, level, idx, hash) VALUES (:l, :lv, :ix, :h)"),
            nodes,
        )
