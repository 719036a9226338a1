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
