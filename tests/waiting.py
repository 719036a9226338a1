"""Polling for a condition in tests that drive real threads, sockets and processes.

The sleep inside is the poll interval of a loop that waits for ``predicate`` to hold; it never
stands in for an assertion: a condition not reached by ``timeout`` seconds fails the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_until(
    predicate: Callable[[], object],
    what: str = "condition",
    timeout: float = 20.0,
    interval: float = 0.05,
) -> None:
    """Return once ``predicate()`` is truthy; ``pytest.fail`` naming ``what`` after ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
