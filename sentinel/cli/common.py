"""Helpers every command shares: the settings loader and error-to-exit-code mapping."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sentinel.errors import SentinelError

if TYPE_CHECKING:  # imported when settings are first needed: not every command reads them
    from sentinel.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

#: exit codes shared by every command (documented in README "Exit codes")
EXIT_OK = 0
EXIT_FINDINGS = 1  # violations found / ledger invalid
EXIT_ERROR = 2  # bad input, bad configuration, cannot run
EXIT_INCOMPLETE = 3  # ran, nothing found, but an input gave nothing (or not all) to judge


@dataclass
class CliState:
    """Per-invocation state: the ``--config`` option and the lazily loaded settings."""

    config_path: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        """Load (once) and return the validated settings; raises ``ConfigError``."""
        if self._settings is None:
            from sentinel.config import find_config, load_settings

            self._settings = load_settings(find_config(self.config_path))
        return self._settings


pass_state = click.make_pass_decorator(CliState, ensure=True)


def fail(message: str, code: int = EXIT_ERROR) -> None:
    """Print ``sentinel: error: message`` on stderr and exit with ``code``."""
    click.echo(f"sentinel: error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Turn ``SentinelError`` into one line on stderr and its exit code (2 unless it says)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SentinelError as exc:
            fail(exc.diagnostics(), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        return None

    return wrapper  # type: ignore[return-value]
