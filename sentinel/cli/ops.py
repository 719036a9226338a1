"""``sentinel init``, ``sentinel run`` and ``sentinel report``."""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta
from pathlib import Path

import click
import sqlalchemy as sa

from sentinel.cli.common import EXIT_FINDINGS, CliState, fail, handle_errors, pass_state
from sentinel.config import load_settings
from sentinel.errors import SentinelError
from sentinel.ledger import Ledger
from sentinel.ledger.checkpoint import anchor_from_settings
from sentinel.policy.egress import EgressPolicy
from sentinel.report.build import build_report
from sentinel.report.render import write_report
from sentinel.runtime.service import Service
from sentinel.runtime.setup import init_directory
from sentinel.timefmt import WHEN_FORMATS, parse_when, utcnow


@click.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="D",
    help="Keep the state under D instead of next to the configuration: the ledger, "
    "cursors and reports in D/state/ (D/state/ledger.db) and the checkpoints in "
    "D/checkpoints/ (outside the database's directory). E.g. /var/lib/sentinel for a "
    "systemd install.",
)
@handle_errors
def init_cmd(directory: Path, state_dir: Path | None) -> None:
    """Create DIRECTORY with a commented sentinel.toml, an egress policy, an Ed25519
    signing key (mode 0600), a webhook token, the state directory and an empty SQLite
    ledger in it (the reading commands, e.g. `ledger verify`, open it read-only and never
    create it)."""
    result = init_directory(directory, state_dir=state_dir)
    url = load_settings(result.config).ledger_url
    Ledger.open(url).close()
    click.echo(f"wrote {result.config}")
    click.echo(f"wrote {sa.make_url(url).database} (empty ledger)")
    click.echo(f"wrote {result.policy} (edit the jurisdiction and local networks)")
    click.echo(f"wrote {result.signing_key} (Ed25519, mode 0600) and {result.public_key.name}")
    click.echo(f"wrote {result.webhook_token} (bearer token for registry notifications)")
    click.echo(f"next: sentinel --config {result.config} run")


@click.command("run")
@pass_state
@handle_errors
def run_cmd(state: CliState) -> None:
    """Run the daemon: configured sources → verdicts and audit events → ledger, metrics.

    Stops cleanly on SIGTERM or Ctrl-C (flushes open flows, closes the ledger)."""
    settings = state.settings()
    logging.getLogger().setLevel(settings.sentinel.log_level.upper())
    # APScheduler logs every job run at INFO; keep its chatter for -vv debugging only
    logging.getLogger("apscheduler").setLevel(
        logging.DEBUG if settings.sentinel.log_level == "debug" else logging.WARNING
    )
    Service(settings).run_forever()


def _parse_when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError:
        fail(f"{option}: expected {WHEN_FORMATS}, got {value!r}")
    return None


@click.command("report")
@click.option(
    "--from",
    "start_s",
    metavar="TIME",
    help="Period start, RFC 3339 or YYYY-MM-DD, UTC (default: 24 h before --to).",
)
@click.option(
    "--to",
    "end_s",
    metavar="TIME",
    help="Period end (exclusive), RFC 3339 or YYYY-MM-DD, UTC (default: now).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Output file: .html (default) or .json.",
)
@click.option(
    "--template-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Directory with an operator's report.html.j2 overriding the shipped one.",
)
@click.option("--no-verify", is_flag=True, help="Skip ledger verification (faster).")
@pass_state
@handle_errors
def report_cmd(
    state: CliState,
    start_s: str | None,
    end_s: str | None,
    output: Path,
    template_dir: Path | None,
    no_verify: bool,
) -> None:
    """Render the compliance report for a period from the ledger.

    Five criteria — data residency, access control, vulnerability scanning, replication,
    audit logging — each with a status and the evidence behind it.

    \b
    Exit codes: 0 the report was written and no criterion failed;
    1 it was written and a criterion failed (e.g. egress violations, an invalid ledger);
    2 error (bad arguments, configuration, unreadable ledger)."""
    if output.suffix.lower() not in {".html", ".htm", ".json"}:
        fail(f"-o {output}: the name must end in .html, .htm or .json")
    if template_dir is not None and not (template_dir / "report.html.j2").is_file():
        fail(f"--template-dir {template_dir}: no report.html.j2 in it")
    settings = state.settings()
    end = _parse_when(end_s, "--to") or utcnow()
    start = _parse_when(start_s, "--from") or end - timedelta(days=1)
    if start >= end:
        fail("--from must be before --to")
    jurisdiction = None
    try:
        jurisdiction = EgressPolicy.load(settings.resolve(settings.policy.egress)).name
    except SentinelError as exc:
        click.echo(f"sentinel: warning: {exc.diagnostics()}", err=True)
    with Ledger.open(
        settings.ledger_url, log_id=settings.ledger.log_id, anchor=anchor_from_settings(settings)
    ) as ledger:
        verification = None if no_verify else ledger.verify().to_json()
        data = build_report(
            ledger.query(),
            start=start,
            end=end,
            verification=verification,
            jurisdiction=jurisdiction,
        )
    write_report(data, output, template_dir=template_dir)
    for c in data["criteria"]:
        click.echo(f"  [{c['status']:>15}] {c['title']}: {c['summary']}")
    click.echo(f"report written to {output}")
    if any(c["status"] == "fail" for c in data["criteria"]):
        sys.exit(EXIT_FINDINGS)
