"""`sentinel ledger` commands: verify, export and summarize the tamper-evident ledger.

The ledger is the one named by the configuration (``[ledger] url`` and ``log_id``).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click
import sqlalchemy as sa

from sentinel.cli.common import EXIT_FINDINGS, EXIT_OK, CliState, handle_errors, pass_state
from sentinel.ledger import Ledger
from sentinel.timefmt import parse_ts


def _open(state: CliState) -> tuple[Ledger, str]:
    settings = state.settings()
    url = settings.ledger_url
    shown = sa.make_url(url).render_as_string(hide_password=True) if "://" in url else url
    return Ledger.open(url, log_id=settings.ledger.log_id), shown


def _ts_option(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise click.BadParameter(f"not an RFC 3339 timestamp with zone: {value!r}") from exc


@click.group()
def ledger() -> None:
    """The tamper-evident ledger: verify it, export records, show statistics."""


@ledger.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@pass_state
@handle_errors
def verify(state: CliState, as_json: bool) -> None:
    """Recompute every leaf and chain hash and check sequence numbers and links.

    \b
    Exit codes: 0 valid; 1 invalid (the first bad sequence number is printed);
    2 error (no configuration, database unreachable).
    """
    led, shown = _open(state)
    with led:
        result = led.verify()
    if as_json:
        click.echo(json.dumps({"log_id": led.log_id, "url": shown, **result.to_json()}))
    elif result.ok:
        click.echo(
            f"{result.status}: ledger {led.log_id!r} at {shown}: {result.size} records, "
            f"head {result.head_hash}"
        )
    else:
        click.echo(
            f"{result.status}: ledger {led.log_id!r} at {shown}: first bad sequence number "
            f"{result.first_bad_seq}: {result.problem} ({result.records_checked} of "
            f"{result.size} records verified before it)"
        )
    raise SystemExit(EXIT_OK if result.ok else EXIT_FINDINGS)


@ledger.command("export")
@click.option("--from", "since", callback=_ts_option, help="First event time included (RFC 3339).")
@click.option("--to", "until", callback=_ts_option, help="First event time excluded (RFC 3339).")
@click.option("--kind", default=None, help="Only records of this kind (e.g. audit_event).")
@click.option(
    "--by",
    type=click.Choice(["event", "recorded"]),
    default="event",
    show_default=True,
    help="Window on the event's own time (data.ts, else recorded_at) or on recorded_at.",
)
@pass_state
@handle_errors
def export(
    state: CliState, since: datetime | None, until: datetime | None, kind: str | None, by: str
) -> None:
    """Print the canonical bytes (RFC 8785) of each record in the window, one per line.

    The lines are exactly the bytes that were hashed (leaf = SHA-256(0x00 ‖ line)).
    """
    led, _shown = _open(state)
    out = sys.stdout.buffer
    with led:
        for entry in led.query_entries(kind, since, until, by=by):
            out.write(entry.body + b"\n")
    out.flush()


@ledger.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_state
@handle_errors
def stats(state: CliState, as_json: bool) -> None:
    """Size, head hash and number of records per kind (not verified: run `verify`)."""
    led, shown = _open(state)
    with led:
        head = led.head()
        kinds = led.count_by_kind()
    info = {
        "log_id": led.log_id,
        "url": shown,
        "size": head.seq + 1,
        "head_seq": head.seq,
        "head_hash": head.chain_hash.hex(),
        "kinds": kinds,
    }
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"ledger {led.log_id!r} at {shown}")
    click.echo(f"size {info['size']}, head {info['head_hash']}")
    for name, count in kinds.items():
        click.echo(f"  {name:<24} {count}")
