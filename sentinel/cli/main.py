"""``sentinel`` — the command-line entry point (click).

``--config FILE`` goes before the command (``sentinel --config FILE COMMAND …``; default
``./sentinel.toml``, then ``/etc/sentinel/sentinel.toml``); commands that are given every input
explicitly (for example ``egress check --pcap … --geoip … --policy …``) do not need a
configuration file at all. Subcommands are imported only when used (click's "lazily loading
subcommands" pattern), so ``sentinel --version`` or ``sentinel egress …`` do not pay for the
ledger's database drivers or the demo.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import click

from sentinel import __version__
from sentinel.cli.common import CliState

#: command name → "module:attribute", in the order ``--help`` lists them
COMMANDS = {
    "init": ("sentinel.cli.ops:init_cmd", "Write a commented sentinel.toml, policy, keys."),
    "run": ("sentinel.cli.ops:run_cmd", "Run the daemon (sources → ledger, metrics)."),
    "egress": ("sentinel.cli.egress:egress", "Egress verification of packet captures."),
    "audit": ("sentinel.cli.audit:audit", "Registry logs and notifications as audit events."),
    "rules": ("sentinel.cli.rules:rules", "Validate and dry-run audit rules."),
    "ledger": ("sentinel.cli.ledger:ledger", "Verify, prove, export the tamper-evident ledger."),
    "report": ("sentinel.cli.ops:report_cmd", "Render the compliance report for a period."),
    "demo": ("sentinel.cli.demo:demo_cmd", "Run Sentinel's main job on embedded inputs."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (see the click documentation,
    "Advanced Groups and Context: Lazily Loading Subcommands")."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target[0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands with their one-line summaries without importing them."""
        rows = [(name, summary) for name, (_target, summary) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="sentinel")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Configuration file (default: ./sentinel.toml, then /etc/sentinel/sentinel.toml). "
    "Give it before the command.",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """Sentinel: prove that an AI model registry's data stays inside its jurisdiction.

    Egress verdicts from packet captures and GeoIP, a normalized audit trail from the
    registry's logs and notifications, a hash-chained ledger, Prometheus metrics and
    compliance reports. `sentinel COMMAND --help` documents each command.

    \b
    Exit codes: 0 ok; 1 findings (violations, invalid ledger, a failed report criterion,
    unparsed input); 2 error (bad input or configuration). `ledger verify` adds its own.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(config_path=config_path)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sentinel")
