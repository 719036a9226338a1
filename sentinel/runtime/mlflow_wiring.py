"""``[audit.files.mlflow_rest]`` → a ``ReconstructingParser`` around the ``mlflow-access`` parser.

The secret (basic-auth password or bearer token) is read here, once, from its file or
environment variable, and handed only to ``MlflowRestClient`` (an ``Authorization`` header);
it is never logged and never part of an error message.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

from sentinel.audit.mlflow_rest import (
    MlflowReconstructor,
    MlflowRestClient,
    ReconstructingParser,
    RestOptions,
)
from sentinel.audit.parsers.interface import Parser
from sentinel.config import MlflowRest
from sentinel.errors import ConfigError

#: largest secret file read, bytes
MAX_SECRET_BYTES = 4096


def _secret(
    file: Path | None, env: str | None, resolve: Callable[[Path], Path], fail: Callable[[str], None]
) -> str | None:
    if file is not None:
        path = resolve(file)
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
            return None
        if len(data) > MAX_SECRET_BYTES:
            fail(f"{path} is over {MAX_SECRET_BYTES} bytes: not a secret file")
        text = data.decode("utf-8", errors="strict").strip()
        if not text:
            fail(f"{path} is empty")
        return text
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            fail(f"environment variable {env} is not set")
        return value
    return None


def authorization_header(
    section: MlflowRest, resolve: Callable[[Path], Path], fail: Callable[[str], None]
) -> str | None:
    """The ``Authorization`` header value the section asks for (``Basic``/``Bearer``), or
    ``None`` for no authentication. ``fail(problem)`` must raise."""
    if section.username is not None:
        password = _secret(section.password_file, section.password_env, resolve, fail) or ""
        pair = f"{section.username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    token = _secret(section.token_file, section.token_env, resolve, fail)
    return f"Bearer {token}" if token else None


def reconstructing_parser(
    inner: Parser,
    section: MlflowRest,
    resolve: Callable[[Path], Path],
    *,
    config_path: str,
    key: str,
    on_result: Callable[[str], None] | None = None,
) -> ReconstructingParser:
    """``inner`` wrapped with a reconstructor built from ``section`` (``on_result`` as
    ``MlflowReconstructor``'s). Raises ``ConfigError`` (naming ``key``) when a secret cannot
    be read."""

    def fail(problem: str) -> None:
        raise ConfigError(config_path, problem, key=key)

    try:
        header = authorization_header(section, resolve, fail)
    except UnicodeDecodeError:
        raise ConfigError(config_path, "the secret file is not UTF-8 text", key=key) from None
    options = RestOptions(
        timeout=section.timeout,
        window=section.match_window,
        cache_size=section.cache_size,
        cache_ttl=section.cache_ttl,
        retry_after=section.retry_after,
    )
    client = MlflowRestClient(
        section.url,
        authorization=header,
        timeout=options.timeout,
        max_response_bytes=options.max_response_bytes,
    )
    return ReconstructingParser(inner, MlflowReconstructor(client, options, on_result=on_result))
