"""``Ledger.verify(progress=...)`` reports within what would be one range: ranges are cut to
at most 1/``VERIFY_PROGRESS_STEPS`` of the log (``VERIFY_PROGRESS_MIN`` lowered here so a
small ledger shows it), with the same outcome as without progress."""

from __future__ import annotations

import pytest

from sentinel.ledger import Ledger, store
from tests.ledger.helpers import FixedClock, audit_record, raw


@pytest.mark.parametrize("tamper", [False, True])
def test_progress_reports_within_one_default_range(
    ledger_url: str, tamper: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "VERIFY_PROGRESS_MIN", 8)
    with Ledger.open(ledger_url, clock=FixedClock()) as led:
        led.append([audit_record(i) for i in range(100)])
    if tamper:
        with raw(ledger_url) as conn:
            conn.exec_driver_sql("UPDATE ledger_entries SET kind = 'x' WHERE seq = 50")
    with Ledger.open(ledger_url) as led:
        seen: list[tuple[int, int]] = []
        result = led.verify(batch=8, workers=1, progress=lambda d, t: seen.append((d, t)))
        plain = led.verify(batch=8, workers=1)
    assert result == plain
    if tamper:  # ranges of 8 up to the one holding record 50
        assert (result.status, result.first_bad_seq) == ("invalid", 50)
        assert seen == [(d, 100) for d in range(0, 49, 8)]
    else:  # without the cut: [(0, 100), (100, 100)]
        assert result.ok
        assert seen == [(d, 100) for d in range(0, 97, 8)] + [(100, 100)]
