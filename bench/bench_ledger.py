"""Ledger throughput: append N realistic audit events (batches of 500) and verify them;
verification of large ledgers (1 M and 10 M records) built through the bulk path.

Appends also store the Merkle subtree hashes; after the append phase one signed checkpoint is
made (into a temporary external checkpoint log) and ``verify`` runs anchored to it (chain,
tree and checkpoint root), then inclusion/consistency proofs are timed (O(log n) reads).

``--verify-sizes 1000000,10000000`` then builds a ledger of each size and verifies it
(anchored to one checkpoint of the whole log), printing records/s by wall time, CPU seconds
(this process and its verify workers) and peak RSS (the largest process), once per range
verifier: on SQLite the compiled accelerator (``verifier c``, when built) and the pure-Python
reference (``accelerated=False``); PostgreSQL has the reference only. The large ledgers
are built fast: ``Ledger.append`` in transactions of 10,000 records (``MAX_APPEND_RECORDS``)
without dedup keys, from records made by varying a pool of 4,096 generated ones (fresh
timestamps, ids and hashes per record), so building costs about what ``append`` costs.
``--keep-dir DIR`` keeps the SQLite files there and reuses them on the next run.

Usage: .venv/bin/python bench/bench_ledger.py [-n 100000] [--batch 500] [--pg ADMIN_URL]
    [--verify-sizes 1000000,10000000] [--pg-verify-sizes 1000000] [--workers N]
    [--keep-dir DIR] [--skip-append]

SQLite goes to a temporary directory; PostgreSQL gets a database of its own, created through
ADMIN_URL (default: $SENTINEL_TEST_PG or postgresql+psycopg://postgres@127.0.0.1:5432/test)
and dropped at the end. Each phase runs in a fresh process so "peak RSS" is that phase's own.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import resource
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sentinel.ledger import Ledger, merkle
from sentinel.ledger.checkpoint import Anchor, CheckpointLog
from sentinel.ledger.note import Signer

SIGNER = Signer("sentinel/bench", Ed25519PrivateKey.from_private_bytes(bytes(32)))


def _anchor(directory: str) -> Anchor:
    return Anchor(CheckpointLog(Path(directory), "sentinel"), (SIGNER.verifier,), SIGNER.name)


ACTIONS = ["pull"] * 70 + ["push"] * 20 + ["delete"] * 3 + ["auth_failure"] * 5 + ["tag"] * 2


def make_batch(rng: random.Random, start: int, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + count):
        action = rng.choice(ACTIONS)
        failed = action == "auth_failure"
        out.append(
            {
                "kind": "audit_event",
                "data": {
                    "ts": f"2026-03-{1 + i // 86400 % 28:02d}T{i // 3600 % 24:02d}:"
                    f"{i // 60 % 60:02d}:{i % 60:02d}.{rng.randrange(10**6):06d}Z",
                    "source": "registry-eu-1",
                    "source_kind": "distribution",
                    "action": action,
                    "outcome": "failure" if failed else "success",
                    "actor": None if failed else f"robot$ci-{rng.randrange(40)}",
                    "actor_verified": not failed,
                    "artifact": f"models/team{rng.randrange(12)}/llm-{rng.randrange(300)}",
                    "reference": f"v{rng.randrange(1, 9)}.{rng.randrange(20)}",
                    "digest": "sha256:" + rng.randbytes(32).hex(),
                    "client_ip": f"10.20.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                    "client_ip_source": "socket",
                    "client_country": None,
                    "user_agent": "skopeo/1.9.3 go/go1.19.8",
                    "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "http_method": "GET" if action == "pull" else "PUT",
                    "http_status": 401 if failed else 200,
                    "raw_sha256": rng.randbytes(32).hex(),
                    "src_pos": f"app.log:{i * 612}",
                    "ts_zone_assumed": None,
                },
            }
        )
    return out


def pooled_records(start: int, count: int, pool: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``count`` records from a pool of generated ones, with per-record ts, ids and hashes."""
    out = []
    for i in range(start, start + count):
        data = dict(pool[i & 4095]["data"])
        h = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
        data["ts"] = (
            f"2026-03-{1 + i // 86400 % 28:02d}T{i // 3600 % 24:02d}:"
            f"{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000000:06d}Z"
        )
        data["request_id"] = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        data["event_id"] = f"{h[32:40]}-{h[40:44]}-{h[44:48]}-{h[48:52]}-{h[52:64]}"
        data["raw_sha256"] = h
        data["src_pos"] = f"app.log:{i * 612}"
        out.append({"kind": "audit_event", "data": data})
    return out


def phase_build(url: str, n: int) -> tuple[float, float, int]:
    """Bulk-build a ledger of ``n`` records; (wall s, CPU s, size reached)."""
    pool = make_batch(random.Random(20261129), 0, 4096)
    t0, c0 = time.perf_counter(), time.process_time()
    with Ledger.open(url) as led:
        have = led.size()
        for start in range(have, n, 10_000):
            led.append(pooled_records(start, min(10_000, n - start), pool))
        size = led.size()
    return time.perf_counter() - t0, time.process_time() - c0, size


def phase_big_verify(
    url: str, anchor_dir: str, workers: int | None, accelerated: bool = True
) -> tuple[Any, ...]:
    """Checkpoint the whole log, then verify it: (wall s, CPU s incl. workers, status,
    records checked, peak RSS KiB of this process, peak RSS KiB of the largest worker,
    verifier)."""
    with Ledger.open(url, anchor=_anchor(anchor_dir)) as led:
        led.checkpoint(SIGNER)
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        result = led.verify(workers=workers, accelerated=accelerated)
        wall = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (me.ru_utime + me.ru_stime - before.ru_utime - before.ru_stime) + (
        kids.ru_utime + kids.ru_stime
    )
    return (
        wall,
        cpu,
        str(result.status),
        result.records_checked,
        me.ru_maxrss,
        kids.ru_maxrss,
        result.verifier,
    )


def big_verify(name: str, url: str, n: int, workers: int | None) -> None:
    ctx = get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        wall, cpu, size = pool.submit(phase_build, url, n).result()
    print(
        f"{name:<10} build   {size:>9} records in {wall:7.1f} s wall, {cpu:6.1f} CPU s "
        f"(bulk: append x 10,000 per transaction)",
        flush=True,
    )
    for accelerated in (True, False) if name == "sqlite" else (False,):
        with (
            tempfile.TemporaryDirectory(prefix="sentinel-anchor-") as anchor_dir,
            ProcessPoolExecutor(1, mp_context=ctx) as pool,
        ):
            wall, cpu, status, checked, rss, kid_rss, verifier = pool.submit(
                phase_big_verify, url, anchor_dir, workers, accelerated
            ).result()
        print(
            f"{name:<10} verify  {checked:>9} records in {wall:7.2f} s = {checked / wall:>9.0f} "
            f"records/s wall, {cpu:6.2f} CPU s = {checked / cpu:>9.0f} records/CPU-s -> "
            f"{status}, verifier {verifier} (peak RSS {rss / 1024:.0f} MiB, workers "
            f"{kid_rss / 1024:.0f} MiB each at most)",
            flush=True,
        )


def phase_append(url: str, n: int, batch: int) -> tuple[float, int]:
    rng = random.Random(20261129)
    spent = 0.0
    with Ledger.open(url) as led:
        for start in range(0, n, batch):
            records = make_batch(rng, start, min(batch, n - start))
            keys = [r["data"]["event_id"] for r in records]
            t0 = time.perf_counter()
            led.append(records, dedup_keys=keys, cursors={"app.log": str(start)})
            spent += time.perf_counter() - t0
    return spent, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def phase_checkpoint(url: str, anchor_dir: str) -> tuple[float, float, float]:
    """Seconds for: one signed checkpoint, 100 inclusion proofs, 100 consistency proofs."""
    rng = random.Random(7)
    with Ledger.open(url, anchor=_anchor(anchor_dir)) as led:
        t0 = time.perf_counter()
        led.checkpoint(SIGNER)
        t_cp = time.perf_counter() - t0
        size = led.size()
        t0 = time.perf_counter()
        for _ in range(100):
            seq = rng.randrange(size)
            p = led.inclusion_proof(seq)
            merkle.verify_inclusion(seq, p.size, p.leaf_hash, list(p.path), p.root)
        t_inc = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(100):
            old = rng.randrange(1, size + 1)
            c = led.consistency_proof(old)
            if old != size:
                merkle.verify_consistency(old, size, c.old_root, c.new_root, list(c.path))
        t_con = time.perf_counter() - t0
    return t_cp, t_inc, t_con


def phase_verify(url: str, anchor_dir: str) -> tuple[float, str, int, int]:
    with Ledger.open(url, anchor=_anchor(anchor_dir)) as led:
        t0 = time.perf_counter()
        result = led.verify()
        spent = time.perf_counter() - t0
    return (
        spent,
        str(result.status),
        result.size,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    )


def run(name: str, url: str, n: int, batch: int) -> None:
    ctx = get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        spent, rss = pool.submit(phase_append, url, n, batch).result()
    print(
        f"{name:<10} append  {n:>9} events in {spent:7.2f} s = {n / spent:>9.0f} events/s "
        f"(batches of {batch}, one commit each; peak RSS {rss / 1024:.0f} MiB)"
    )
    with tempfile.TemporaryDirectory(prefix="sentinel-anchor-") as anchor_dir:
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            t_cp, t_inc, t_con = pool.submit(phase_checkpoint, url, anchor_dir).result()
        print(
            f"{name:<10} proofs  checkpoint {t_cp * 1000:.1f} ms; inclusion "
            f"{t_inc * 10:.2f} ms, consistency {t_con * 10:.2f} ms each (generate + verify)"
        )
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            spent, status, size, rss = pool.submit(phase_verify, url, anchor_dir).result()
    print(
        f"{name:<10} verify  {size:>9} records in {spent:7.2f} s = {size / spent:>9.0f} "
        f"records/s -> {status} (peak RSS {rss / 1024:.0f} MiB)"
    )


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "SENTINEL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-append", action="store_true", help="only the large verifies")
    parser.add_argument("--verify-sizes", type=_sizes, default=[], help="e.g. 1000000,10000000")
    parser.add_argument("--pg-verify-sizes", type=_sizes, default=None, help="default: as SQLite")
    parser.add_argument("--workers", type=int, default=None, help="verify workers (default: auto)")
    parser.add_argument("--keep-dir", type=Path, default=None, help="keep/reuse SQLite files")
    args = parser.parse_args()
    pg_sizes = args.verify_sizes if args.pg_verify_sizes is None else args.pg_verify_sizes
    if not args.skip_sqlite:
        if not args.skip_append:
            with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as tmp:
                run("sqlite", f"sqlite:///{tmp}/ledger.db", args.n, args.batch)
                size = sum(f.stat().st_size for f in os.scandir(tmp))
                print(f"{'sqlite':<10} files   {size / 2**20:.1f} MiB")
        for n in args.verify_sizes:
            with contextlib.ExitStack() as stack:
                if args.keep_dir is not None:
                    args.keep_dir.mkdir(parents=True, exist_ok=True)
                    where = str(args.keep_dir)
                else:
                    where = stack.enter_context(tempfile.TemporaryDirectory(prefix="sentinel-b-"))
                big_verify("sqlite", f"sqlite:///{where}/ledger-{n}.db", n, args.workers)
    if args.skip_pg:
        return
    admin = sa.create_engine(args.pg, isolation_level="AUTOCOMMIT")
    jobs: list[tuple[str, int | None]] = [] if args.skip_append else [("append", None)]
    jobs += [("verify", n) for n in pg_sizes]
    try:
        for what, n in jobs:
            name = f"sentinel_bench_{uuid.uuid4().hex[:10]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                url = args.pg.rsplit("/", 1)[0] + f"/{name}"
                if what == "append":
                    run("postgresql", url, args.n, args.batch)
                else:
                    assert n is not None
                    big_verify("postgresql", url, n, args.workers)
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


if __name__ == "__main__":
    main()
