"""Country codes in a policy must be assigned ISO 3166-1 alpha-2 codes (iso3166 package)."""

from __future__ import annotations

import pytest

from sentinel.errors import ConfigError
from sentinel.policy.egress import EgressPolicy


@pytest.mark.parametrize(
    ("code", "hint"),
    [("UK", "GB"), ("XX", "pseudo-code"), ("EL", "GR"), ("QQ", "assigned"), ("gb", "upper")],
)
def test_unassigned_codes_are_rejected_with_a_hint(code: str, hint: str) -> None:
    raw = f"jurisdiction: {{name: t, allow_countries: [{code}]}}\nlocal_networks: []\n"
    with pytest.raises(ConfigError) as info:
        EgressPolicy.from_yaml(raw.encode(), path="p.yaml")
    message = str(info.value)
    assert "jurisdiction.allow_countries" in message and hint in message


def test_assigned_codes_and_groups_load() -> None:
    raw = b"jurisdiction: {name: t, allow_countries: [EEA, CH, GB, XK]}\nlocal_networks: []\n"
    policy = EgressPolicy.from_yaml(raw)
    assert {"CH", "GB", "DE", "NO"} <= policy.allowed_countries
