"""RFC 3161 time-stamps of checkpoints against a real TSA (`openssl ts -reply` over HTTP on
127.0.0.1, certificates made with `openssl`), on both ledger backends.

A TSA that is down, refuses, or answers wrongly (stale nonce, damaged signature, another TSA's
certificate, garbage) never stops a checkpoint: it is signed and logged, the failure is in the
outcome and the metric, and `sentinel ledger verify` reports the checkpoint's token as
missing or invalid. The stored tokens are what an auditor checks with `openssl ts -verify`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli.main import cli
from sentinel.config import Settings, load_settings
from sentinel.errors import ConfigError
from sentinel.ledger import Ledger
from sentinel.ledger.checkpoint import (
    CheckpointLog,
    anchor_from_settings,
    load_signer,
    make_checkpoint,
)
from sentinel.ledger.tsa import (
    check_timestamps,
    client_from_settings,
    stamp_checkpoint,
    timestamps_dir,
    token_path,
    trust_from_settings,
)
from sentinel.metrics import Metrics
from sentinel.runtime.service import Service
from sentinel.runtime.setup import init_directory
from sentinel.timefmt import utcnow
from tests.ledger.helpers import audit_record
from tests.ledger.tsa_server import TSA_SUBJECT, OpenSSLTsa, TsaPKI, openssl, openssl_verify


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPKI:
    return TsaPKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tsa(pki: TsaPKI) -> Iterator[OpenSSLTsa]:
    with OpenSSLTsa(pki) as server:
        yield server


def _site(tmp_path: Path, ledger_url: str, **ledger_keys: str) -> Settings:
    """A `sentinel init` directory with extra ``[ledger]`` keys (TOML strings)."""
    init_directory(tmp_path / "site")
    config = tmp_path / "site" / "sentinel.toml"
    text = config.read_text()
    if ledger_url.startswith("postgresql"):
        text = text.replace('url = "sqlite:///state/ledger.db"', f'url = "{ledger_url}"')
    for key, value in ledger_keys.items():  # replace the key's line, or add it to [ledger]
        line = f'{key} = "{value}"'
        text, found = re.subn(rf"^{key} = .*$", line, text, count=1, flags=re.M)
        if not found:
            text = text.replace('origin = ""\n', f'origin = ""\n{line}\n', 1)
    config.write_text(text)
    return load_settings(config)


def _settings(tmp_path: Path, ledger_url: str, pki: TsaPKI, url: str, **extra: str) -> Settings:
    return _site(tmp_path, ledger_url, tsa_url=url, tsa_ca_file=str(pki.ca), **extra)


def _log(settings: Settings) -> CheckpointLog:
    return anchor_from_settings(settings).log


def _open(settings: Settings) -> Ledger:
    return Ledger.open(settings.ledger_url, anchor=anchor_from_settings(settings))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["--config", str(settings.path), "ledger", *args])
    return res.exit_code, res.stdout, res.stderr


def test_checkpoint_gets_a_verified_timestamp_openssl_accepts(
    tmp_path: Path,
    ledger_url: str,
    pki: TsaPKI,
    tsa: OpenSSLTsa,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(tmp_path, ledger_url, pki, tsa.url, tsa_cert=str(pki.tsa_cert))
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(7)])
        before = utcnow()
        cp = make_checkpoint(led, settings)
        stamp = cp.timestamp
        assert stamp is not None and stamp.result == "ok" and stamp.requested, stamp
        assert stamp.token is not None
        assert stamp.token.tsa == TSA_SUBJECT
        assert stamp.token.hash_algorithm == "sha256"
        assert before - timedelta(seconds=5) <= stamp.token.gen_time <= utcnow()
        assert stamp.path == token_path(_log(settings), 7, cp.note)
        assert stamp.path.parent == settings.resolve("checkpoints") / "sentinel.timestamps"
        assert tsa.requests == 1

        # the auditor's offline check (README): the note of line 1 of the checkpoint log, the
        # token named by its size and hash, the TSA's CA
        line = _log(settings).path.read_text().splitlines()[0]
        note = json.loads(line)["note"].encode()  # `jq -j .note`
        assert note == cp.note.encode()
        assert stamp.path.name == f"7-{hashlib.sha256(note).hexdigest()[:32]}.tsr"
        done = openssl_verify(note, stamp.path, pki.ca, tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Verification: OK" in done.stdout
        shown = subprocess.run(
            [openssl(), "ts", "-reply", "-in", str(stamp.path), "-text"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "Status: Granted." in shown and "TSA: DirName:/O=Sentinel Test/CN=Sentinel" in shown
        # ... and not for other bytes
        other = openssl_verify(cp.note.encode() + b"x", stamp.path, pki.ca, tmp_path)
        assert other.returncode != 0

        # nothing new to sign: the same checkpoint, its token already stored, no request
        again = make_checkpoint(led, settings)
        assert again == cp and again.timestamp is not None
        assert again.timestamp.result == "stored" and tsa.requests == 1
        led.append([audit_record(i) for i in range(7, 9)])
        cp2 = make_checkpoint(led, settings)
        assert cp2.timestamp is not None and cp2.timestamp.result == "ok" and tsa.requests == 2
        assert led.verify().status == "valid"

    report = check_timestamps(_log(settings), trust_from_settings(settings))
    assert report is not None
    assert (report.status, report.checkpoints, report.valid, report.missing) == ("valid", 2, 2, 0)
    assert report.latest is not None and report.latest.path == cp2.timestamp.path

    code, out, _err = _cli(settings, "verify")
    assert code == 0, out
    assert out.splitlines()[0].startswith("valid: ledger 'sentinel'")
    assert "timestamps: valid: 2 of 2 checkpoints time-stamped and verified" in out
    assert f"latest by {TSA_SUBJECT}" in out
    code, out, _err = _cli(settings, "verify", "--json")
    assert json.loads(out)["timestamps"]["valid"] == 2
    code, out, err = _cli(settings, "checkpoint")
    assert code == 0 and out == cp2.note  # stdout stays the exact note bytes
    assert err.startswith("timestamp: stored: genTime ") and TSA_SUBJECT in err
    code, out, _err = _cli(settings, "checkpoint", "--json")
    shown = json.loads(out)["timestamp"]
    assert shown["result"] == "stored" and shown["token"]["tsa"] == TSA_SUBJECT

    # an auditor with copies of the checkpoint directory and the TSA's CA, no configuration
    box = tmp_path / "auditor"
    shutil.copytree(settings.resolve("checkpoints"), box / "checkpoints")
    monkeypatch.chdir(box)
    args = ["ledger", "checkpoint", "--checkpoint-dir", "checkpoints", "--tsa-ca-file", str(pki.ca)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0 and res.stdout == cp2.note, res.output
    copy = box / "checkpoints" / cp2.timestamp.path.relative_to(settings.resolve("checkpoints"))
    assert res.stderr == err.replace(str(cp2.timestamp.path), str(copy.relative_to(box)))
    res = CliRunner().invoke(cli, [*args[:4], "--tsa-ca-file", str(pki.other_ca)])
    assert res.exit_code == 0 and res.stderr.startswith("timestamp: invalid"), res.output
    # --tsa-cert pins within --tsa-ca-file's trust: alone it is an error, not ignored
    verify = ["ledger", "verify", "--ledger", settings.ledger_url, "--checkpoint-dir"]
    verify += ["checkpoints", "--key-history", os.devnull]
    for cmd in (args[:4], verify):
        res = CliRunner().invoke(cli, [*cmd, "--tsa-cert", str(pki.ca)])
        assert res.exit_code == 2 and "needs --tsa-ca-file" in res.stderr, res.output
        # a bad file given is an error named by its option (not the [ledger] key), not unchecked
        (box / "bad.pem").write_text("not a certificate\n")
        for opt in (
            ["--tsa-ca-file", "bad.pem"],
            ["--tsa-ca-file", str(pki.ca), "--tsa-cert", "bad.pem"],
        ):
            res = CliRunner().invoke(cli, [*cmd, *opt])
            assert res.exit_code == 2, res.output
            bad = f"{opt[-2]} bad.pem: no PEM certificate in it"
            assert bad in res.stderr and "ledger.tsa" not in res.stderr, res.output


def test_tsa_down_keeps_the_checkpoint_and_retries(
    tmp_path: Path, ledger_url: str, pki: TsaPKI, tsa: OpenSSLTsa
) -> None:
    port = _closed_port()
    down = _settings(tmp_path, ledger_url, pki, f"http://127.0.0.1:{port}/tsa")
    with _open(down) as led:
        led.append([audit_record(i) for i in range(5)])
        cp = make_checkpoint(led, down)
        assert cp.timestamp is not None and cp.timestamp.result == "unreachable"
        assert "127.0.0.1" in (cp.timestamp.problem or "")
        assert not cp.timestamp.path.exists()
        # signed and pinned all the same
        assert _log(down).latest() is not None and _log(down).latest().size == 5  # type: ignore[union-attr]
        assert led.verify().status == "valid"
    code, out, _err = _cli(down, "verify")
    assert code == 0
    assert "timestamps: incomplete: 0 of 1 checkpoints time-stamped and verified, 1 missing" in out
    assert "timestamp: missing for checkpoint at size 5 (line 1)" in out
    code, _out, err = _cli(down, "checkpoint")
    assert code == 0 and err.startswith("timestamp: missing")

    # the TSA is back: the next run stamps the checkpoint it missed (nothing new to sign)
    config = down.path.read_text().replace(f"127.0.0.1:{port}/tsa", tsa.url.split("//", 1)[1])
    down.path.write_text(config)
    up = load_settings(down.path)
    with _open(up) as led:
        again = make_checkpoint(led, up)
    assert again == cp and again.timestamp is not None and again.timestamp.result == "ok"
    report = check_timestamps(_log(up), trust_from_settings(up))
    assert report is not None and report.status == "valid"


def test_tsa_that_never_answers_times_out(tmp_path: Path, pki: TsaPKI) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/tsa"
        settings = _settings(tmp_path, "sqlite", pki, url, tsa_timeout="0.5")
        with _open(settings) as led:
            led.append([audit_record(0)])
            cp = make_checkpoint(led, settings)
    assert cp.size == 1 and cp.timestamp is not None
    assert cp.timestamp.result == "unreachable" and "timed out" in (cp.timestamp.problem or "")


def test_service_counts_timestamp_results(tmp_path: Path, pki: TsaPKI, tsa: OpenSSLTsa) -> None:
    settings = _settings(tmp_path, "sqlite", pki, tsa.url)
    service = Service(settings, metrics=Metrics())
    service.ledger = _open(settings)
    try:
        service.ledger.append([audit_record(i) for i in range(3)])
        service.sign_checkpoint()
        tsa.mode = "tamper"
        service.ledger.append([audit_record(3)])
        service.sign_checkpoint()  # never raises: the checkpoint is kept, the failure counted
        service.sign_checkpoint()  # retried: still wrong
        tsa.mode = "ok"
        service.sign_checkpoint()  # retried: stamped
        service.sign_checkpoint()  # already stamped: not counted
    finally:
        service.ledger.close()
    counter = service.metrics.ledger_timestamps
    assert counter.labels("ok")._value.get() == 2
    assert counter.labels("invalid")._value.get() == 2
    assert tsa.requests == 4
    assert b'sentinel_ledger_timestamps_total{result="invalid"} 2.0' in (
        service.metrics.exposition()
    )


@pytest.mark.parametrize(
    ("mode", "result", "problem"),
    [
        ("tamper", "invalid", "signature"),
        ("garbage", "invalid", "not a TimeStampResp"),
        ("http500", "unreachable", "HTTP 500"),
    ],
)
def test_tsa_answering_wrongly(
    tmp_path: Path,
    ledger_url: str,
    pki: TsaPKI,
    tsa: OpenSSLTsa,
    mode: str,
    result: str,
    problem: str,
) -> None:
    tsa.mode = mode
    settings = _settings(tmp_path, ledger_url, pki, tsa.url)
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(4)])
        cp = make_checkpoint(led, settings)
        assert led.verify().status == "valid"  # the checkpoint is signed and pinned
    stamp = cp.timestamp
    assert stamp is not None and (stamp.result, stamp.requested) == (result, True)
    assert problem in (stamp.problem or ""), stamp.problem
    assert not stamp.path.exists()  # nothing wrong is ever stored
    assert tsa.requests == 1


def test_replayed_response_fails_the_nonce(
    tmp_path: Path, ledger_url: str, pki: TsaPKI, tsa: OpenSSLTsa
) -> None:
    settings = _settings(tmp_path, ledger_url, pki, tsa.url)
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(4)])
        cp = make_checkpoint(led, settings)
        assert cp.timestamp is not None and cp.timestamp.result == "ok"
        # a TSA (or someone in between) replays that genuine response to a new request for
        # the same checkpoint: signature and imprint are right, the nonce is not
        cp.timestamp.path.unlink()
        tsa.mode = "replay"
        again = make_checkpoint(led, settings)
    assert again.timestamp is not None and again.timestamp.result == "invalid"
    assert "Nonce mismatch" in (again.timestamp.problem or "")
    assert not again.timestamp.path.exists()


def test_wrong_tsa_certificate_or_ca(tmp_path: Path, pki: TsaPKI, tsa: OpenSSLTsa) -> None:
    # pinned to the second TSA, answered by the first (same CA)
    pinned = _settings(tmp_path / "a", "sqlite", pki, tsa.url, tsa_cert=str(pki.tsa2_cert))
    with _open(pinned) as led:
        led.append([audit_record(0)])
        cp = make_checkpoint(led, pinned)
    assert cp.timestamp is not None and cp.timestamp.result == "invalid"
    assert "does not match" in (cp.timestamp.problem or "")
    # a TSA certificate from a CA that is not the configured one
    other = _site(tmp_path / "b", "sqlite", tsa_url=tsa.url, tsa_ca_file=str(pki.other_ca))
    with _open(other) as led:
        led.append([audit_record(0)])
        cp = make_checkpoint(led, other)
    assert cp.timestamp is not None and cp.timestamp.result == "invalid"
    assert "unable to get local issuer certificate" in (cp.timestamp.problem or "")


def test_tsa_refusing_the_hash_is_rejected(tmp_path: Path, pki: TsaPKI) -> None:
    with OpenSSLTsa(pki, section="sha512only") as only512:
        settings = _settings(tmp_path / "a", "sqlite", pki, only512.url)
        with _open(settings) as led:
            led.append([audit_record(0)])
            cp = make_checkpoint(led, settings)
        assert cp.timestamp is not None and cp.timestamp.result == "rejected"
        assert "digest algorithm is not supported" in (cp.timestamp.problem or "")
        # configured for the digest it takes
        ok = _settings(tmp_path / "b", "sqlite", pki, only512.url, tsa_hash="sha512")
        with _open(ok) as led:
            led.append([audit_record(0)])
            cp = make_checkpoint(led, ok)
        assert cp.timestamp is not None and cp.timestamp.result == "ok"
        assert cp.timestamp.token is not None
        assert cp.timestamp.token.hash_algorithm == "sha512"
        done = openssl_verify(cp.note.encode(), cp.timestamp.path, pki.ca, tmp_path)
        assert done.returncode == 0, done.stderr


def test_gen_time_far_from_the_local_clock_is_invalid(
    tmp_path: Path, pki: TsaPKI, tsa: OpenSSLTsa
) -> None:
    settings = _settings(tmp_path, "sqlite", pki, tsa.url)
    with _open(settings) as led:
        led.append([audit_record(0)])
        # signed without the TSA, then stamped with a clock an hour ahead of the TSA's
        signed = led.checkpoint(load_signer(settings), anchor=anchor_from_settings(settings))
    client = client_from_settings(settings)
    assert client is not None
    ahead = stamp_checkpoint(
        signed, _log(settings), client, clock=lambda: utcnow() + timedelta(hours=1)
    )
    assert ahead.result == "invalid" and "from the local clock" in (ahead.problem or "")
    assert not ahead.path.exists()
    assert stamp_checkpoint(signed, _log(settings), client).result == "ok"


def test_tampered_or_stray_token_is_reported_by_verify(
    tmp_path: Path, ledger_url: str, pki: TsaPKI, tsa: OpenSSLTsa
) -> None:
    settings = _settings(tmp_path, ledger_url, pki, tsa.url)
    with _open(settings) as led:
        led.append([audit_record(i) for i in range(3)])
        first = make_checkpoint(led, settings)
        led.append([audit_record(3)])
        second = make_checkpoint(led, settings)
    assert first.timestamp is not None and second.timestamp is not None
    token = first.timestamp.path
    damaged = bytearray(token.read_bytes())
    damaged[-3] ^= 0x01
    token.write_bytes(bytes(damaged))
    assert openssl_verify(first.note.encode(), token, pki.ca, tmp_path).returncode != 0

    code, out, _err = _cli(settings, "verify")
    assert code == 0  # the ledger itself is intact; the token is reported beside it
    assert out.splitlines()[0].startswith("valid: ")
    assert "timestamps: invalid: 1 of 2 checkpoints time-stamped and verified" in out
    assert "timestamp: invalid for checkpoint at size 3 (line 1): stored token:" in out

    # a token that matches no checkpoint line (e.g. the line was removed from the log)
    (timestamps_dir(_log(settings)) / "99-0123456789abcdef0123456789abcdef.tsr").write_bytes(
        second.timestamp.path.read_bytes()
    )
    report = check_timestamps(_log(settings), trust_from_settings(settings))
    assert report is not None
    assert (report.status, report.valid, report.invalid, report.unmatched) == ("invalid", 1, 1, 1)
    assert any("match no checkpoint" in p for p in report.problems)


def test_tokens_without_a_configured_ca_are_unchecked(
    tmp_path: Path, pki: TsaPKI, tsa: OpenSSLTsa
) -> None:
    settings = _settings(tmp_path, "sqlite", pki, tsa.url)
    with _open(settings) as led:
        led.append([audit_record(0)])
        make_checkpoint(led, settings)
    bare = _site(tmp_path / "other", "sqlite", checkpoint_dir=str(settings.resolve("checkpoints")))
    report = check_timestamps(_log(bare), trust_from_settings(bare))
    assert report is not None and report.status == "unchecked"
    assert "tsa_ca_file is not set" in (report.unchecked or "")
    # no TSA and no token: nothing to say, and verify prints no timestamp line
    empty = _site(tmp_path / "empty", "sqlite")
    assert check_timestamps(_log(empty), trust_from_settings(empty)) is None
    _code, out, _err = _cli(empty, "verify")
    assert "timestamp" not in out


def test_tsa_configuration_is_validated(tmp_path: Path, pki: TsaPKI) -> None:
    with pytest.raises(ConfigError, match="tsa_url needs tsa_ca_file"):
        _site(tmp_path / "a", "sqlite", tsa_url="http://127.0.0.1:1/tsa")
    with pytest.raises(ConfigError, match="http:// or https://"):
        _site(tmp_path / "b", "sqlite", tsa_url="file:///etc/passwd", tsa_ca_file=str(pki.ca))
    with pytest.raises(ConfigError, match="sha256"):
        _site(tmp_path / "c", "sqlite", tsa_hash="md5")
    # an unreadable CA file does not stop the checkpoint: the outcome says why
    missing = _site(
        tmp_path / "d", "sqlite", tsa_url="http://127.0.0.1:1/tsa", tsa_ca_file="nope.pem"
    )
    with _open(missing) as led:
        led.append([audit_record(0)])
        cp = make_checkpoint(led, missing)
    assert cp.size == 1 and cp.timestamp is not None and cp.timestamp.result == "error"
    assert "nope.pem" in (cp.timestamp.problem or "")
