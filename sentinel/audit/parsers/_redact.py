"""Re-export of ``sentinel.redact`` (the one redaction module; kept for the parsers' imports)."""

from __future__ import annotations

from sentinel.redact import (
    REDACTED,
    SECRET_NAMES,
    is_secret_name,
    redact_bytes,
    redact_json,
    redact_text,
    redact_value,
)

__all__ = [
    "REDACTED",
    "SECRET_NAMES",
    "is_secret_name",
    "redact_bytes",
    "redact_json",
    "redact_text",
    "redact_value",
]
