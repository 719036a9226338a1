"""``sentinel demo``: run the daemon's main job on the embedded inputs."""

from __future__ import annotations

import os
from pathlib import Path

import click

from sentinel.cli.common import handle_errors
from sentinel.demo.run import GEOIP_ATTRIBUTION, run_demo

DEFAULT_GEOIP = Path(os.environ.get("SENTINEL_DEMO_GEOIP", ".cache/dbip-city-lite-2023-04.mmdb"))


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo"),
    show_default=True,
    help="Working directory for the demo (re-created on every run).",
)
@click.option(
    "--geoip",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_GEOIP,
    show_default=True,
    help="MaxMind-format database (env SENTINEL_DEMO_GEOIP; `make demo` fetches DB-IP City Lite).",
)
@handle_errors
def demo_cmd(directory: Path, geoip: Path) -> None:
    """Run Sentinel on embedded inputs: a registry host's capture, the registry's logs and
    notifications → verdicts and audit events in the ledger → metrics → HTML report."""
    result = run_demo(directory, geoip, progress=lambda m: click.echo(f"· {m}"))
    click.echo("")
    for c in result.criteria:
        click.echo(f"  [{c['status']:>15}] {c['title']}\n                    {c['summary']}")
    click.echo("")
    click.echo(
        f"report    {result.report_html}  (open it in a browser; JSON: {result.report_json.name})"
    )
    click.echo(
        f"metrics   {result.metrics}  (what http://127.0.0.1:9464/metrics serves "
        "under `sentinel run`)"
    )
    click.echo(
        f"ledger    {result.ledger_url}  ({result.ledger_records} records, "
        f"verification: {result.verification['status']})"
    )
    click.echo(
        f"config    {result.directory / 'sentinel.toml'}  (try: sentinel --config "
        f"{result.directory / 'sentinel.toml'} ledger verify)"
    )
    click.echo(f"\n{GEOIP_ATTRIBUTION}")
