"""One error hierarchy for Sentinel.

Every error carries a human diagnostic (``diagnostics()``); only ``sentinel.cli`` prints
them and chooses the exit code. Library code raises, it never prints or exits.
"""

from __future__ import annotations


class SentinelError(Exception):
    """Base class for every error Sentinel raises on purpose."""

    #: process exit code the CLI uses for this kind of error
    exit_code: int = 2

    def diagnostics(self) -> str:
        """A one-paragraph, human-readable explanation of what went wrong."""
        return str(self)


class ConfigError(SentinelError):
    """A configuration or policy file is missing, unreadable or invalid.

    ``path`` is the file, ``key`` the dotted key at fault (``None`` for whole-file problems).
    """

    def __init__(self, path: str, problem: str, key: str | None = None) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class InputError(SentinelError):
    """An input file (capture, log, database) cannot be read at all."""


class CaptureError(InputError):
    """A packet capture is not a readable pcap/pcapng file (bad magic, truncated header...)."""


class GeoIPError(InputError):
    """A GeoIP database cannot be opened or is corrupt."""


class LedgerError(SentinelError):
    """The ledger store cannot be opened or written."""
