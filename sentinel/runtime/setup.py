"""``sentinel init``: lay out a working directory (configuration, keys, policy, state)."""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sentinel.config import DEFAULT_CONFIG_TOML
from sentinel.errors import ConfigError
from sentinel.resources import rules_dir


@dataclass(frozen=True)
class InitResult:
    """What ``init_directory`` wrote (absolute paths)."""

    config: Path
    policy: Path
    signing_key: Path
    public_key: Path
    webhook_token: Path
    state_dir: Path


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def config_for_state_dir(state_dir: Path) -> str:
    """The default configuration with state, SQLite ledger and checkpoints under ``state_dir``
    (absolute paths): ``STATE/state/…`` and ``STATE/checkpoints`` (outside the database's
    directory, as checkpoints must be). For a system install: configuration in
    ``/etc/sentinel``, writable state in ``/var/lib/sentinel`` (systemd ``StateDirectory``)."""
    base = state_dir.absolute()
    return (
        DEFAULT_CONFIG_TOML.replace('state_dir = "state"', f'state_dir = "{base / "state"}"')
        .replace(
            'url = "sqlite:///state/ledger.db"', f'url = "sqlite:///{base / "state" / "ledger.db"}"'
        )
        .replace('checkpoint_dir = "checkpoints"', f'checkpoint_dir = "{base / "checkpoints"}"')
    )


def init_directory(
    directory: Path, *, config_text: str | None = None, state_dir: Path | None = None
) -> InitResult:
    """Write ``sentinel.toml``, ``policy.yaml``, an Ed25519 key pair, a webhook token, ``state/``.

    With ``state_dir`` the state (ledger, cursors, reports) and checkpoints go there instead of
    next to the configuration (see ``config_for_state_dir``). Refuses (``ConfigError``) to
    overwrite an existing ``sentinel.toml`` or key. The private key is PKCS#8 PEM, mode 0600;
    the directories ``keys/`` (0700) and the state directory are created.
    """
    if state_dir is not None and config_text is None:
        config_text = config_for_state_dir(state_dir)
    directory = directory.absolute()
    config = directory / "sentinel.toml"
    keys = directory / "keys"
    key = keys / "ledger-ed25519.pem"
    if config.exists():
        raise ConfigError(str(config), "already exists; refusing to overwrite it")
    if key.exists():
        raise ConfigError(str(key), "already exists; refusing to overwrite a signing key")
    directory.mkdir(parents=True, exist_ok=True)
    keys.mkdir(mode=0o700, exist_ok=True)
    state = (state_dir.absolute() if state_dir is not None else directory) / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "reports").mkdir(exist_ok=True)

    private = Ed25519PrivateKey.generate()
    _write_private(
        key,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    public = keys / "ledger-ed25519.pub.pem"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    token = keys / "webhook.token"
    if not token.exists():
        _write_private(token, (secrets.token_urlsafe(32) + "\n").encode())

    policy = directory / "policy.yaml"
    if not policy.exists():
        shutil.copyfile(rules_dir() / "egress-policy.yaml", policy)

    config.write_text(config_text or DEFAULT_CONFIG_TOML, encoding="utf-8")
    return InitResult(config, policy, key, public, token, state)
