"""Signed checkpoints: made from `sentinel init` keys, kept outside the database, refused when
the ledger no longer extends the last one; key rotation with a key history. Both backends."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sentinel.config import Settings, load_settings
from sentinel.errors import ConfigError
from sentinel.ledger import Ledger, merkle
from sentinel.ledger.checkpoint import (
    CheckpointError,
    CheckpointLog,
    ConsistencyError,
    anchor_from_settings,
    key_history_path,
    load_signer,
    make_checkpoint,
    open_checkpoint,
)
from sentinel.ledger.note import Signer
from sentinel.runtime.setup import init_directory
from tests.ledger.helpers import audit_record, raw, rewrite_from


@pytest.fixture
def settings(tmp_path: Path, ledger_url: str) -> Settings:
    """A `sentinel init` directory; SQLite in its state/, PostgreSQL on the real server."""
    init_directory(tmp_path / "site")
    config = tmp_path / "site" / "sentinel.toml"
    if ledger_url.startswith("postgresql"):
        old = 'url = "sqlite:///state/ledger.db"'
        config.write_text(config.read_text().replace(old, f'url = "{ledger_url}"'))
    return load_settings(config)


def _open(settings: Settings) -> Ledger:
    return Ledger.open(settings.ledger_url, anchor=anchor_from_settings(settings))


def test_checkpoint_is_signed_stored_and_logged_outside(settings: Settings) -> None:
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(11)])
        cp = make_checkpoint(led, settings)
        assert (cp.size, cp.root) == (11, led.root())
        assert cp.checkpoint.origin == "sentinel/sentinel"
        signer = load_signer(settings)
        assert open_checkpoint(cp.note, [signer.verifier]) == cp.checkpoint
        assert led.latest_checkpoint() == cp
        # the external copy: one JSON line in checkpoints/, outside state/
        log = CheckpointLog(settings.resolve("checkpoints"), "sentinel")
        lines = log.path.read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["note"] == cp.note
        # nothing new: the same checkpoint, nothing appended
        assert make_checkpoint(led, settings) == cp
        assert len(log.path.read_text().splitlines()) == 1
        led.append([audit_record(i) for i in range(11, 20)])
        cp2 = make_checkpoint(led, settings)
        assert cp2.size == 20 and len(log.path.read_text().splitlines()) == 2
        proof = led.consistency_proof(11, 20)
        merkle.verify_consistency(11, 20, cp.root, cp2.root, list(proof.path))
        result = led.verify()
        assert (result.status, result.checkpoint_size, result.checkpoints_checked) == (
            "valid",
            20,
            2,
        )


def test_refuses_to_sign_a_rewritten_ledger(settings: Settings) -> None:
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(6)])
        make_checkpoint(led, settings)
    # an attacker rewrites record 2 and recomputes every hash and tree node after it
    rewrite_from(settings.ledger_url, 2)
    with _open(settings) as led:
        led.append([audit_record(9)])
        with pytest.raises(ConsistencyError, match="does not extend the last external checkpoint"):
            make_checkpoint(led, settings)
        result = led.verify()
        assert (result.status, result.first_bad_seq) == ("invalid", 0), result
    log = CheckpointLog(settings.resolve("checkpoints"), "sentinel")
    assert len(log.path.read_text().splitlines()) == 1  # nothing signed


def test_refuses_to_sign_a_truncated_ledger(settings: Settings) -> None:
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(6)])
        make_checkpoint(led, settings)
    with raw(settings.ledger_url) as conn:
        conn.exec_driver_sql("DELETE FROM ledger_entries WHERE seq >= 4")
    with _open(settings) as led, pytest.raises(ConsistencyError, match="truncated"):
        make_checkpoint(led, settings)


def test_checkpoint_dir_must_be_outside_the_database_dir(tmp_path: Path) -> None:
    init_directory(tmp_path)
    config = tmp_path / "sentinel.toml"
    config.write_text(
        config.read_text().replace('checkpoint_dir = "checkpoints"', 'checkpoint_dir = "state"')
    )
    settings = load_settings(config)
    with _open(settings) as led, pytest.raises(ConfigError, match="checkpoint_dir"):
        make_checkpoint(led, settings)


def test_key_rotation_keeps_old_checkpoints_verifiable(settings: Settings) -> None:
    key_path = settings.resolve(settings.ledger.signing_key)
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(5)])
        old = make_checkpoint(led, settings)
    # rotate: retire the old vkey into the history, install a new key pair
    key_history_path(key_path).write_text(f"# retired keys\n{old.vkey}\n")
    _install_key(key_path, Ed25519PrivateKey.generate())
    with _open(settings) as led:
        new = make_checkpoint(led, settings)  # same size, new key: signed again
        assert new.vkey != old.vkey and new.size == old.size
        assert led.verify().status == "valid"
    # without the history the old checkpoint is unverifiable, not invalid
    key_history_path(key_path).unlink()
    with _open(settings) as led:
        result = led.verify()
        assert result.status == "unverifiable", result
        assert result.problem is not None and "no trusted key" in result.problem
    # a key swapped in without retiring the previous one: refuse to sign over an unknown key
    _install_key(key_path, Ed25519PrivateKey.generate())
    with _open(settings) as led, pytest.raises(CheckpointError, match="unknown key"):
        make_checkpoint(led, settings)


def test_forged_checkpoint_signature_is_invalid(settings: Settings) -> None:
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(5)])
        make_checkpoint(led, settings)
    log = CheckpointLog(settings.resolve("checkpoints"), "sentinel")
    line = json.loads(log.path.read_text())
    # same key name and ID, wrong signature: a forgery, not an unknown key
    forger = Signer("sentinel/sentinel", Ed25519PrivateKey.generate())
    sig_line = line["note"].split("\n\n", 1)[1]
    forged_sig = forger.sign(b"x")
    _name, b64 = sig_line[2:].rstrip("\n").split(" ")
    raw_sig = base64.b64decode(b64)[:4] + forged_sig
    line["note"] = line["note"].replace(b64, base64.b64encode(raw_sig).decode())
    log.path.write_text(json.dumps(line) + "\n")
    with _open(settings) as led:
        result = led.verify()
    assert result.status == "invalid" and result.first_bad_seq is None, result
    assert result.problem is not None and "forged or altered" in result.problem


def test_missing_keys_make_checkpoints_unverifiable(settings: Settings) -> None:
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(3)])
        make_checkpoint(led, settings)
    key_path = settings.resolve(settings.ledger.signing_key)
    key_path.unlink()
    key_path.with_name("ledger-ed25519.pub.pem").unlink()
    with _open(settings) as led:
        result = led.verify()
    assert result.status == "unverifiable", result


def test_torn_last_line_is_ignored(settings: Settings) -> None:
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(3)])
        make_checkpoint(led, settings)
        log = CheckpointLog(settings.resolve("checkpoints"), "sentinel")
        with log.path.open("a") as fh:
            fh.write('{"v":1,"log":"sentinel","size":9')  # crash mid-write
        assert led.verify().status == "valid"
        led.append([audit_record(3)])
        assert make_checkpoint(led, settings).size == 4


def _install_key(path: Path, key: Ed25519PrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_name("ledger-ed25519.pub.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
