"""Dropping at-least-once redeliveries by ``AuditEvent.dedup_key``, in bounded memory.

distribution retries a notification until the endpoint answers 2xx, so one event can arrive
several times (same ``id``). ``Deduplicator`` remembers the most recent ``capacity`` keys in
insertion/recency order (an LRU set on ``collections.OrderedDict``); a repeat older than that
window is no longer recognised here — the ledger's own dedup keys are the durable guard.
Memory is O(capacity) keys (about 100 bytes each: 100 000 keys ≈ 10 MB).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

from sentinel.records import AuditEvent, Unparsed

DEFAULT_CAPACITY = 100_000


def dedup_key_of(item: AuditEvent | Unparsed) -> str:
    """The dedup key of any record (``AuditEvent.dedup_key`` / ``Unparsed.dedup_key``)."""
    return item.dedup_key


class Deduplicator:
    """An LRU set of recently seen dedup keys (``capacity`` ≥ 1 keys)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()
        #: how many repeats were dropped so far
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._seen)

    def is_new(self, key: str) -> bool:
        """Record ``key``; True the first time it is seen within the window."""
        if key in self._seen:
            self._seen.move_to_end(key)
            self.dropped += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def filter(self, items: Iterable[AuditEvent | Unparsed]) -> Iterator[AuditEvent | Unparsed]:
        """Yield each record whose dedup key was not seen yet (streaming, order kept)."""
        for item in items:
            if self.is_new(dedup_key_of(item)):
                yield item


def dedupe(
    items: Iterable[AuditEvent | Unparsed], capacity: int = DEFAULT_CAPACITY
) -> Iterator[AuditEvent | Unparsed]:
    """Convenience: ``Deduplicator(capacity).filter(items)``."""
    return Deduplicator(capacity).filter(items)
