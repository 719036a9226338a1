"""Issue 3 item 6 at full scale: ≥ 4 processes × ≥ 500 appends into one ledger, both backends.

Each worker process (``multiprocessing`` spawn, so no state is shared with the parent) makes
``APPENDS`` ``Ledger.append`` calls: every fifth call carries a batch of ``BIG_BATCH`` records,
the others one record. Every record carries its worker id and a per-worker counter; some
records use a dedup key shared by every worker (``shared:<k>``), so the workers race to store
the same key. Afterwards: the chain verifies (no fork), the size is exactly what was written,
each worker's private records are all present exactly once, and each shared key is stored
exactly once.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter
from typing import Any

from sentinel.ledger import Ledger

PROCS = 4
APPENDS = 500
BIG_BATCH = 25
#: every SHARED_EVERY-th record of a worker carries a key all workers use
SHARED_EVERY = 7


def _plan() -> list[int]:
    """Batch sizes of one worker's append calls: 1, 1, 1, 1, 25, 1, ..."""
    return [BIG_BATCH if i % 5 == 4 else 1 for i in range(APPENDS)]


RECORDS_PER_WORKER = sum(_plan())
SHARED_KEYS = -(-RECORDS_PER_WORKER // SHARED_EVERY)


def _record(worker: int, n: int) -> tuple[dict[str, Any], str]:
    shared = n % SHARED_EVERY == 0
    key = f"shared:{n // SHARED_EVERY}" if shared else f"w{worker}:{n}"
    data = {
        "ts": f"2026-03-01T10:{n // 60 % 60:02d}:{n % 60:02d}.000000Z",
        "source": "registry",
        "source_kind": "distribution",
        "action": "pull",
        "outcome": "success",
        "actor": f"worker-{worker}",
        "artifact": "models/llama-eu",
        "worker": worker,
        "n": n,
        "dedup": key,
        "event_id": key,
    }
    return {"kind": "audit_event", "data": data}, key


def _worker(url: str, worker: int, start: Any, out: Any) -> None:
    appended = duplicates = 0
    with Ledger.open(url) as led:
        start.wait(60)
        n = 0
        for size in _plan():
            batch = [_record(worker, n + j) for j in range(size)]
            n += size
            result = led.append(
                [r for r, _ in batch],
                dedup_keys=[k for _, k in batch],
                cursors={f"w{worker}": str(n)},
            )
            appended += result.appended
            duplicates += result.duplicates
    out.put((worker, appended, duplicates))


def test_four_processes_500_appends_mixed_batches_colliding_keys(ledger_url: str) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(ledger_url, w, start, out)) for w in range(PROCS)]
    for p in procs:
        p.start()
    start.set()
    reports = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * PROCS

    private_per_worker = sum(1 for n in range(RECORDS_PER_WORKER) if n % SHARED_EVERY)
    expected_size = PROCS * private_per_worker + SHARED_KEYS
    # what the workers were told matches what is stored
    assert sum(a for _, a, _ in reports) == expected_size
    assert sum(d for _, _, d in reports) == (PROCS - 1) * SHARED_KEYS

    with Ledger.open(ledger_url) as led:
        result = led.verify()
        assert result.ok, result
        assert result.size == result.records_checked == expected_size
        per_worker: dict[int, Counter[int]] = {w: Counter() for w in range(PROCS)}
        shared: Counter[str] = Counter()
        seqs = []
        for entry in led.iter_entries():
            seqs.append(entry.seq)
            data = entry.record()["data"]
            if data["dedup"].startswith("shared:"):
                shared[data["dedup"]] += 1
                # the stored copy is one whole record of the worker that won the race
                assert data["dedup"] == f"shared:{data['n'] // SHARED_EVERY}"
            else:
                per_worker[data["worker"]][data["n"]] += 1
        assert seqs == list(range(expected_size))
        for w in range(PROCS):
            want = {n: 1 for n in range(RECORDS_PER_WORKER) if n % SHARED_EVERY}
            assert dict(per_worker[w]) == want, f"worker {w} lost or repeated records"
        assert dict(shared) == {f"shared:{k}": 1 for k in range(SHARED_KEYS)}
        assert [led.get_cursor(f"w{w}") for w in range(PROCS)] == [str(RECORDS_PER_WORKER)] * PROCS
