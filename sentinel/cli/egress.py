"""`sentinel egress` commands."""

from __future__ import annotations

import click


@click.group()
def egress() -> None:
    """(being written)"""
