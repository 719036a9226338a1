"""Country groups a policy may name instead of listing ISO 3166-1 alpha-2 codes.

Sources (as of 2025): EU members — https://european-union.europa.eu/principles-countries-history/eu-countries_en
(27 states since the United Kingdom left on 2020-01-31); EEA — the EU members plus Iceland,
Liechtenstein and Norway, https://www.efta.int/eea/eea-agreement. Greece is ``GR`` (ISO 3166-1),
not the EU's own abbreviation ``EL``.
"""

from __future__ import annotations

EU: frozenset[str] = frozenset(
    {
        "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
        "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
    }
)  # fmt: skip

EEA: frozenset[str] = EU | {"IS", "LI", "NO"}

#: group name → member ISO 3166-1 alpha-2 codes
GROUPS: dict[str, frozenset[str]] = {"EU": EU, "EEA": EEA}


def expand(codes: list[str] | tuple[str, ...]) -> frozenset[str]:
    """Codes and group names (``EU``, ``EEA``) → the set of ISO 3166-1 alpha-2 codes."""
    out: set[str] = set()
    for code in codes:
        out |= GROUPS.get(code, {code})
    return frozenset(out)
