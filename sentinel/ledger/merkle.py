"""RFC 9162 §2.1 Merkle tree hashes and proofs (pure functions, no I/O).

* ``hash_children(l, r) = SHA-256(0x01 ‖ l ‖ r)`` (interior node); leaves are
  ``hashing.leaf_hash`` = SHA-256(0x00 ‖ data); the empty tree's root is SHA-256("").
* A tree of ``n`` leaves is addressed by *perfect subtrees*: node ``(level, index)`` covers
  leaves ``[index·2^level, (index+1)·2^level)``; level 0 nodes are the leaf hashes.
* Generators (``root``, ``inclusion_path``, ``consistency_path``) take a ``NodeGetter``
  ``get(level, index) -> bytes`` that returns one perfect-subtree hash, so a store can answer
  them with O(log n) node reads. ``needed_*`` list the nodes a generator will ask for, so a
  store can fetch them in one query. ``MemoryTree`` answers from a list of leaf hashes.
* Verifiers follow RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) and raise
  ``ProofError``. Policy (transparency-dev/merkle, matched by its testdata probes): a
  consistency proof from size 0 is rejected; ``old == new`` needs an empty proof and equal
  roots.

Hashes are raw 32-byte digests; sizes and indexes are leaf counts / 0-based leaf positions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from sentinel.errors import SentinelError

HASH_SIZE = 32
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: ``get(level, index)``: the hash of the perfect subtree ``(level, index)``
NodeGetter = Callable[[int, int], bytes]


class ProofError(SentinelError):
    """A Merkle proof does not verify, or its inputs are out of range."""

    exit_code = 1


def hash_children(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 ‖ left ‖ right)``: 32 bytes (RFC 9162 §2.1.1)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(start: int, size: int, get: NodeGetter) -> bytes:
    """MTH of leaves ``[start, start+size)``, where ``start`` is aligned as RFC 9162 splits."""
    if size <= 0:
        raise ValueError("empty range")
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return get(level, start >> level)
    k = _split(size)
    return hash_children(_range_hash(start, k, get), _range_hash(start + k, size - k, get))


def root(size: int, get: NodeGetter) -> bytes:
    """MTH of the first ``size`` leaves (RFC 9162 §2.1.1); ``EMPTY_ROOT`` for 0."""
    if size < 0:
        raise ValueError("negative tree size")
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, get)


def inclusion_path(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), leaf-side first.

    Raises ``ValueError`` unless ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    out: list[bytes] = []
    start, n, m = 0, size, index
    while n > 1:
        k = _split(n)
        if m < k:
            out.append(_range_hash(start + k, n - k, get))
            n = k
        else:
            out.append(_range_hash(start, k, get))
            start, n, m = start + k, n - k, m - k
    out.reverse()
    return out


def consistency_path(old: int, new: int, get: NodeGetter) -> list[bytes]:
    """PROOF(old, D[0:new]) (RFC 9162 §2.1.4.1); empty when ``old == new``.

    Raises ``ValueError`` unless ``0 < old <= new``.
    """
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    out: list[bytes] = []
    start, n, m, complete = 0, new, old, True
    while m != n:
        k = _split(n)
        if m <= k:
            out.append(_range_hash(start + k, n - k, get))
            n = k
        else:
            out.append(_range_hash(start, k, get))
            start, n, m, complete = start + k, n - k, m - k, False
    if not complete:
        out.append(_range_hash(start, n, get))
    out.reverse()
    return out


def _needed(call: Callable[[NodeGetter], object]) -> list[tuple[int, int]]:
    seen: dict[tuple[int, int], None] = {}

    def record(level: int, index: int) -> bytes:
        seen[(level, index)] = None
        return bytes(HASH_SIZE)

    call(record)
    return list(seen)


def needed_for_root(size: int) -> list[tuple[int, int]]:
    """The ``(level, index)`` nodes ``root(size, …)`` reads (at most log2(size)+1)."""
    return _needed(lambda g: root(size, g))


def needed_for_inclusion(index: int, size: int) -> list[tuple[int, int]]:
    """The nodes ``inclusion_path(index, size, …)`` reads."""
    return _needed(lambda g: inclusion_path(index, size, g))


def needed_for_consistency(old: int, new: int) -> list[tuple[int, int]]:
    """The nodes ``consistency_path(old, new, …)`` reads."""
    return _needed(lambda g: consistency_path(old, new, g))


def completed_nodes(n: int) -> list[tuple[int, int]]:
    """Nodes of level ≥ 1 that become complete when leaf ``n`` (0-based) is appended."""
    out = []
    level, count = 1, n + 1
    while count % (1 << level) == 0:
        out.append((level, (count >> level) - 1))
        level += 1
    return out


def frontier(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees that make up a tree of ``size`` leaves, left to right."""
    out = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


class MemoryTree:
    """Perfect-subtree hashes over an in-memory list of leaf hashes (for tests and tools)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self._levels: list[list[bytes]] = [list(leaves)]
        while len(self._levels[-1]) > 1:
            below = self._levels[-1]
            self._levels.append(
                [hash_children(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    def __call__(self, level: int, index: int) -> bytes:
        try:
            return self._levels[level][index]
        except IndexError:
            raise ValueError(f"node ({level}, {index}) is not complete") from None


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 §2.1.3.2). Raises ``ProofError``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]")
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Check that ``leaf`` is at ``index`` in the tree of ``size`` with ``expected_root``.

    RFC 9162 §2.1.3.2. Returns ``None``; raises ``ProofError`` on any mismatch.
    """
    _check_hash(expected_root, "root")
    if root_from_inclusion(index, size, leaf, proof) != expected_root:
        raise ProofError(f"inclusion proof of leaf {index} does not lead to the tree-{size} root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new`` leaves extends the tree of ``old`` leaves.

    RFC 9162 §2.1.4.2. Returns ``None``; raises ``ProofError`` on any mismatch, for
    ``old == 0`` (nothing to prove; rejected as transparency-dev/merkle does) and ``old > new``.
    """
    if old < 1 or old > new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    if old == new:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"roots differ at the same size {old}")
        return
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    if not proof:
        raise ProofError("empty consistency proof")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError(f"consistency proof does not reproduce the tree-{old} root")
    if sr != new_root:
        raise ProofError(f"consistency proof does not reproduce the tree-{new} root")
