"""How audit records become ledger records (the one place that decides their shape).

A ledger record is a mapping ``{"kind": "audit_event", "data": AuditEvent.to_json()}`` or
``{"kind": "unparsed", "data": Unparsed.to_json()}``: JSON-ready, no floats, RFC 8785-safe.
"""

from __future__ import annotations

from typing import Any

from sentinel.audit.dedup import dedup_key_of
from sentinel.records import AuditEvent, Unparsed

KIND_EVENT = "audit_event"
KIND_UNPARSED = "unparsed"


def to_ledger_record(item: AuditEvent | Unparsed) -> dict[str, Any]:
    """``{"kind": …, "data": …}`` for ``Ledger.append``."""
    if isinstance(item, AuditEvent):
        return {"kind": KIND_EVENT, "data": item.to_json()}
    return {"kind": KIND_UNPARSED, "data": item.to_json()}


def to_ledger_batch(
    items: list[AuditEvent | Unparsed],
) -> tuple[list[dict[str, Any]], list[str | None]]:
    """Records and their dedup keys, aligned, ready for ``Ledger.append(records, dedup_keys=…)``."""
    return [to_ledger_record(i) for i in items], [dedup_key_of(i) for i in items]
