"""`sentinel audit` commands."""

from __future__ import annotations

import click


@click.group()
def audit() -> None:
    """(being written)"""
