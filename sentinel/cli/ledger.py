"""`sentinel ledger` commands."""

from __future__ import annotations

import click


@click.group()
def ledger() -> None:
    """(being written)"""
