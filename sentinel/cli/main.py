"""``sentinel`` — the command-line entry point (click).

Every command accepts ``--config FILE`` (default ``./sentinel.toml``, then
``/etc/sentinel/sentinel.toml``); commands that are given every input explicitly (for example
``egress check --pcap … --geoip … --policy …``) do not need a configuration file at all.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from sentinel import __version__
from sentinel.cli.audit import audit
from sentinel.cli.common import CliState
from sentinel.cli.demo import demo_cmd
from sentinel.cli.egress import egress
from sentinel.cli.ledger import ledger
from sentinel.cli.ops import init_cmd, report_cmd, run_cmd
from sentinel.cli.rules import rules


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sentinel")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Configuration file (default: ./sentinel.toml, then /etc/sentinel/sentinel.toml).",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """Sentinel: prove that an AI model registry's data stays inside its jurisdiction.

    Egress verdicts from packet captures and GeoIP, a normalized audit trail from the
    registry's logs and notifications, a hash-chained ledger, Prometheus metrics and
    compliance reports.

    \b
    Exit codes: 0 ok; 1 findings (violations, invalid ledger); 2 error (bad input or config).
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(config_path=config_path)


cli.add_command(egress)
cli.add_command(audit)
cli.add_command(ledger)
cli.add_command(init_cmd)
cli.add_command(run_cmd)
cli.add_command(report_cmd)
cli.add_command(demo_cmd)
cli.add_command(rules)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sentinel")
