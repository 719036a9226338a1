"""One parser per registry format, behind ``interface.Parser``, and the closed registry.

``PARSERS`` maps each format name (``sentinel.config.AUDIT_FORMATS``, ``sentinel audit parse
--format``) to a stateless parser instance. New formats (issue 4: Harbor, MinIO, MLflow, Zot,
Kubernetes) add one module and one entry here; nothing is looked up by name from user input
beyond this dict.
"""

from __future__ import annotations

from types import MappingProxyType

from sentinel.audit.parsers.distribution_access import DistributionAccessParser
from sentinel.audit.parsers.distribution_json import DistributionJSONParser
from sentinel.audit.parsers.distribution_notifications import DistributionNotificationsParser
from sentinel.audit.parsers.distribution_text import DistributionTextParser
from sentinel.audit.parsers.interface import Parser, ParseResult
from sentinel.errors import ConfigError

PARSERS: MappingProxyType[str, Parser] = MappingProxyType(
    {
        p.name: p
        for p in (
            DistributionJSONParser(),
            DistributionTextParser(),
            DistributionAccessParser(),
            DistributionNotificationsParser(),
        )
    }
)

#: Formats whose unit is a whole payload (an envelope) rather than one log line.
PAYLOAD_FORMATS = frozenset({"distribution-notifications"})


def get_parser(name: str) -> Parser:
    """The parser for format ``name``. Raises ``ConfigError`` for an unknown name."""
    try:
        return PARSERS[name]
    except KeyError:
        known = ", ".join(sorted(PARSERS))
        raise ConfigError("--format", f"unknown audit format {name!r} (known: {known})") from None


__all__ = ["PARSERS", "PAYLOAD_FORMATS", "ParseResult", "Parser", "get_parser"]
