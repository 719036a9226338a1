"""Every listed command resolves to a click command, and every one documents its options."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from sentinel.cli.main import COMMANDS, cli


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_resolves_and_has_help(name: str) -> None:
    ctx = click.Context(cli)
    command = cli.get_command(ctx, name)
    assert isinstance(command, click.Command)
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    commands = [command]
    if isinstance(command, click.Group):
        commands += [command.get_command(ctx, sub) for sub in command.list_commands(ctx)]
    for cmd in commands:
        assert cmd is not None
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {cmd.name}: option {param.opts} has no help text"


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["nonsense"])
    assert result.exit_code == 2
