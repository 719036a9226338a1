"""RFC 3161 time-stamps of signed checkpoints from a configured time-stamping authority (TSA).

When ``[ledger] tsa_url`` is set, every signed checkpoint note (its exact UTF-8 bytes: text,
blank line, signature lines) is sent to the TSA as a ``TimeStampReq`` (RFC 3161 §2.4.1: the
``tsa_hash`` digest of the note, a random 64-bit nonce, ``certReq`` true), POSTed as
``application/timestamp-query`` (RFC 3161 §3.4). The ``TimeStampResp`` is accepted only when its
status is *granted*, its signature chains to ``tsa_ca_file`` (and is by ``tsa_cert`` when that
is pinned) through a certificate whose extended key usage is critical and holds
``timeStamping`` (RFC 3161 §2.3), its ``messageImprint`` and nonce equal the request's, and
its ``genTime`` is within ``MAX_CLOCK_SKEW`` seconds of the local clock. Parsing and the CMS
signature check are ``rfc3161-client`` (Trail of Bits, on ``cryptography``/OpenSSL).

An accepted response is stored, as received (DER), beside the external checkpoint log::

    <checkpoint_dir>/<log file stem>.timestamps/<size>-<first 32 hex of SHA-256(note)>.tsr

so an auditor can check one offline with ``openssl ts -verify -data <note> -in <file>.tsr
-CAfile <TSA CA>`` (README, "The ledger"). The name binds the file to one checkpoint note; the
token's imprint binds it cryptographically.

A TSA that is down or answers wrongly never stops a checkpoint: ``stamp_checkpoint`` returns a
``StampOutcome`` (logged; the daemon counts it in ``sentinel_ledger_timestamps_total``) and the
next checkpoint run retries a checkpoint that has no token yet. ``check_timestamps`` re-checks
every stored token against the checkpoint log for ``sentinel ledger verify``.

Known limit: ``rfc3161-client`` parses DER strictly; a TSA that puts several certificates in
the token's ``SET OF`` unsorted (``openssl ts`` with ``certs =`` in its section) is rejected as
unparseable; configure such a TSA to embed only its own certificate.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimeStampRequest,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from sentinel import __version__
from sentinel.errors import ConfigError, SentinelError
from sentinel.timefmt import format_ts, parse_ts, utcnow

if TYPE_CHECKING:
    from sentinel.config import Settings
    from sentinel.ledger.checkpoint import CheckpointLog, SignedCheckpoint

_log = logging.getLogger(__name__)

#: largest TimeStampResp accepted from the TSA or read from disk, bytes
MAX_RESPONSE_BYTES = 256 * 1024
#: largest PEM file read for ``tsa_ca_file`` / ``tsa_cert``, bytes
MAX_PEM_BYTES = 1024 * 1024
#: seconds a token's genTime may differ from the local clock (and precede the checkpoint)
MAX_CLOCK_SKEW = 300.0
#: problems listed by ``check_timestamps`` (the counts are always exact)
MAX_PROBLEMS = 20

_HASHES = {"sha256": HashAlgorithm.SHA256, "sha512": HashAlgorithm.SHA512}
_HASH_NAMES = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}

#: what one time-stamp request came to (the ``result`` label of the metric)
StampResult = Literal["ok", "unreachable", "rejected", "invalid", "error"]


class TimestampError(SentinelError):
    """A time-stamp could not be obtained or does not verify. ``result`` names the kind."""

    exit_code = 1
    result: StampResult = "error"


class TsaUnreachableError(TimestampError):
    """No usable HTTP answer: connection refused, timeout, HTTP status other than 200."""

    result: StampResult = "unreachable"


class TsaRejectedError(TimestampError):
    """The TSA answered with a status other than *granted* (RFC 3161 §2.4.2 PKIStatus)."""

    result: StampResult = "rejected"


class InvalidTimestampError(TimestampError):
    """The response is unparseable or fails a check (imprint, nonce, signature, genTime...)."""

    result: StampResult = "invalid"


@dataclass(frozen=True)
class TsaTrust:
    """What a token must chain to: ``anchors`` (``tsa_ca_file``) and an optional pinned
    TSA certificate (``tsa_cert``)."""

    anchors: tuple[x509.Certificate, ...]
    pinned: x509.Certificate | None = None

    @classmethod
    def from_files(
        cls, ca_file: Path, cert_file: Path | None = None, *, options: bool = False
    ) -> TsaTrust:
        """Load PEM certificates. Raises ``ConfigError`` (missing, unreadable, no certificate)
        naming the setting (``ledger.tsa_ca_file``, ``ledger.tsa_cert``), or with ``options``
        the command-line option (``--tsa-ca-file``, ``--tsa-cert``) the file came from."""
        anchors = tuple(_load_pems(ca_file, "tsa_ca_file", options))
        pinned = None
        if cert_file is not None:
            certs = _load_pems(cert_file, "tsa_cert", options)
            if len(certs) != 1:
                raise _pem_error(cert_file, "tsa_cert", options, "expected exactly one certificate")
            pinned = certs[0]
        return cls(anchors, pinned)


def _pem_error(path: Path, key: str, option: bool, problem: str) -> ConfigError:
    if option:
        return ConfigError(f"--{key.replace('_', '-')} {path}", problem)
    return ConfigError(str(path), problem, key=f"ledger.{key}")


def _load_pems(path: Path, key: str, option: bool = False) -> list[x509.Certificate]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise _pem_error(path, key, option, f"cannot read ({exc.strerror})") from exc
    if len(data) > MAX_PEM_BYTES:
        raise _pem_error(path, key, option, f"larger than {MAX_PEM_BYTES} bytes")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise _pem_error(path, key, option, "no PEM certificate in it") from exc
    return certs


@dataclass(frozen=True)
class TsaClient:
    """A configured TSA: ``url``, ``trust``, ``timeout`` (seconds), ``hash`` (digest name)."""

    url: str
    trust: TsaTrust
    timeout: float = 10.0
    hash: Literal["sha256", "sha512"] = "sha256"


def trust_from_settings(settings: Settings) -> TsaTrust | None:
    """``[ledger] tsa_ca_file`` / ``tsa_cert`` loaded, or ``None`` when no CA file is set.

    Raises ``ConfigError``.
    """
    ledger = settings.ledger
    if ledger.tsa_ca_file is None:
        return None
    cert = settings.resolve(ledger.tsa_cert) if ledger.tsa_cert is not None else None
    return TsaTrust.from_files(settings.resolve(ledger.tsa_ca_file), cert)


def client_from_settings(settings: Settings) -> TsaClient | None:
    """The configured TSA, or ``None`` when ``[ledger] tsa_url`` is empty. Raises
    ``ConfigError`` (certificate files)."""
    ledger = settings.ledger
    if not ledger.tsa_url:
        return None
    trust = trust_from_settings(settings)
    if trust is None:  # the config validator already demands it
        raise ConfigError(str(settings.path), "tsa_url needs tsa_ca_file", key="ledger.tsa_ca_file")
    return TsaClient(ledger.tsa_url, trust, ledger.tsa_timeout, ledger.tsa_hash)


@dataclass(frozen=True)
class TimestampToken:
    """A verified token: ``gen_time`` (aware UTC), ``tsa`` (the TSA's name: TSTInfo ``tsa``
    field, else the signing certificate's subject, RFC 4514), ``serial``, ``policy`` (OID),
    ``hash_algorithm`` (``sha256``...) and where it is stored."""

    gen_time: datetime
    tsa: str
    serial: int
    policy: str
    hash_algorithm: str
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "gen_time": format_ts(self.gen_time),
            "tsa": self.tsa,
            "serial": f"{self.serial:x}",
            "policy": self.policy,
            "hash_algorithm": self.hash_algorithm,
            "path": str(self.path) if self.path is not None else None,
        }


def _tsa_name(resp: TimeStampResponse) -> str:
    name = resp.tst_info.name
    if name is not None:
        value = name.value
        return value.rfc4514_string() if isinstance(value, x509.Name) else str(value)
    infos = resp.signed_data.signer_infos
    for der in resp.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if any(cert.issuer == si.issuer and cert.serial_number == si.serial_number for si in infos):
            return cert.subject.rfc4514_string()
    return "unknown"


def _short(exc: Exception) -> str:
    """One line from an error; OpenSSL's ``ErrorStack([...])`` dump becomes its reasons."""
    text = str(exc)
    head, sep, stack = text.partition("ErrorStack")
    if sep:
        found = re.findall(r'(?:reason|data): "([^"]+)"', stack)
        details = "; ".join(dict.fromkeys(found))
        text = head.rstrip(" :([") + (f" ({details})" if details else "")
    return text[:400] or type(exc).__name__


def verify_response(
    response: bytes,
    message: bytes,
    trust: TsaTrust,
    *,
    request: TimeStampRequest | None = None,
    now: datetime | None = None,
    not_before: datetime | None = None,
    max_skew: float = MAX_CLOCK_SKEW,
) -> TimestampToken:
    """Check a DER ``TimeStampResp`` over ``message`` (the bytes that were time-stamped).

    Always: status granted, CMS signature valid and chaining (at genTime) to ``trust``
    anchors through a certificate with the critical ``timeStamping`` EKU, the pinned TSA
    certificate if any, imprint = digest of ``message``. With ``request``: the same nonce
    and imprint (algorithm and digest) as the request. With ``now``: |genTime − now| ≤
    ``max_skew`` seconds. With ``not_before``: genTime ≥ ``not_before`` − ``max_skew``.
    Returns the token's facts (``path`` unset). Raises ``TsaRejectedError`` (status) or
    ``InvalidTimestampError``.
    """
    if len(response) > MAX_RESPONSE_BYTES:
        raise InvalidTimestampError(f"response larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        resp = decode_timestamp_response(response)
    except ValueError as exc:
        raise InvalidTimestampError(f"not a TimeStampResp: {_short(exc)}") from exc
    if resp.status != PKIStatus.GRANTED:  # grantedWithMods: our request asks for nothing to modify
        try:
            status: str = PKIStatus(resp.status).name.lower()
        except ValueError:
            status = str(resp.status)
        text = "; ".join(resp.status_string)
        raise TsaRejectedError(f"TSA status {status}" + (f": {text}" if text else ""))
    builder = VerifierBuilder.from_request(request) if request is not None else VerifierBuilder()
    for anchor in trust.anchors:
        builder = builder.add_root_certificate(anchor)
    if trust.pinned is not None:
        builder = builder.tsa_certificate(trust.pinned)
    try:
        info = resp.tst_info
        builder.build().verify_message(resp, message)
        imprint = info.message_imprint
        algorithm = _HASH_NAMES.get(imprint.hash_algorithm.dotted_string)
        gen_time = info.gen_time
        token = TimestampToken(
            gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC),
            _tsa_name(resp),
            info.serial_number,
            info.policy.dotted_string,
            algorithm or imprint.hash_algorithm.dotted_string,
        )
    except (VerificationError, ValueError) as exc:
        raise InvalidTimestampError(_short(exc)) from exc
    if request is not None:
        asked = request.message_imprint
        if (asked.hash_algorithm, asked.message) != (imprint.hash_algorithm, imprint.message):
            raise InvalidTimestampError("messageImprint differs from the request's")
    skew = timedelta(seconds=max_skew)
    if now is not None and abs(token.gen_time - now) > skew:
        raise InvalidTimestampError(
            f"genTime {format_ts(token.gen_time)} is more than {max_skew:g} s from the local "
            f"clock ({format_ts(now)})"
        )
    if not_before is not None and token.gen_time < not_before - skew:
        raise InvalidTimestampError(
            f"genTime {format_ts(token.gen_time)} precedes the checkpoint ({format_ts(not_before)})"
        )
    return token


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an HTTPError: the TSA URL is configured, not discovered


def _post(url: str, body: bytes, timeout: float) -> bytes:
    request = urllib.request.Request(  # noqa: S310 - scheme checked by the config (http/https)
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/timestamp-query",
            "Accept": "application/timestamp-reply",
            "User-Agent": f"sentinel/{__version__}",
        },
    )
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout) as answer:
            data: bytes = answer.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise TsaUnreachableError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise TsaUnreachableError(f"{url}: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, bad HTTP
        raise TsaUnreachableError(f"{url}: {exc or type(exc).__name__}") from exc
    if len(data) > MAX_RESPONSE_BYTES:
        raise InvalidTimestampError(f"{url}: response larger than {MAX_RESPONSE_BYTES} bytes")
    return data


def request_timestamp(
    message: bytes, client: TsaClient, *, now: datetime | None = None
) -> tuple[bytes, TimestampToken]:
    """Ask ``client``'s TSA to time-stamp ``message``; verify the answer (``verify_response``
    with the request and ``now``, default the current UTC time).

    Returns the DER ``TimeStampResp`` as received and its facts. Raises
    ``TsaUnreachableError``, ``TsaRejectedError``, ``InvalidTimestampError``.
    """
    request = TimestampRequestBuilder(
        data=message, hash_algorithm=_HASHES[client.hash], nonce=True, cert_req=True
    ).build()
    response = _post(client.url, request.as_bytes(), client.timeout)
    token = verify_response(response, message, client.trust, request=request, now=now or utcnow())
    return response, token


def timestamps_dir(log: CheckpointLog) -> Path:
    """``<checkpoint_dir>/<stem>.timestamps`` for ``<stem>.checkpoints.jsonl``."""
    return log.path.with_name(log.path.name.removesuffix(".checkpoints.jsonl") + ".timestamps")


def token_path(log: CheckpointLog, size: int, note: str) -> Path:
    """Where the token of the checkpoint note ``note`` (of tree size ``size``) is stored."""
    digest = hashlib.sha256(note.encode()).hexdigest()[:32]
    return timestamps_dir(log) / f"{size}-{digest}.tsr"


def read_token(path: Path) -> bytes:
    """A stored token's bytes (at most ``MAX_RESPONSE_BYTES``). Raises ``OSError``,
    ``InvalidTimestampError`` (too large)."""
    with path.open("rb") as handle:
        data = handle.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise InvalidTimestampError(f"{path}: larger than {MAX_RESPONSE_BYTES} bytes")
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass(frozen=True)
class StampOutcome:
    """What ``stamp_checkpoint`` did for one checkpoint.

    ``result``: ``ok`` (a new token, verified and stored), ``stored`` (a token was already
    there and verifies), ``missing`` (none stored; ``stored_timestamp`` only), else the
    failure kind (``unreachable``, ``rejected``, ``invalid``, ``error``) with ``problem``.
    ``requested`` is true when the TSA was asked. ``path`` is where the token is (or would
    be) stored.
    """

    result: StampResult | Literal["stored", "missing"]
    path: Path
    token: TimestampToken | None = None
    problem: str | None = None
    requested: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "path": str(self.path),
            "problem": self.problem,
            **({"token": self.token.to_json()} if self.token is not None else {}),
        }


def stamp_checkpoint(
    signed: SignedCheckpoint,
    log: CheckpointLog,
    client: TsaClient | Callable[[], TsaClient],
    *,
    clock: Callable[[], datetime] = utcnow,
) -> StampOutcome:
    """Time-stamp ``signed``'s note unless a token is already stored for it; never raises.

    ``client`` may be a callable (it is called inside, so a ``ConfigError`` loading the
    certificates becomes an ``error`` outcome, not a lost checkpoint). A failure is logged
    as a warning. See ``StampOutcome``.
    """
    path = token_path(log, signed.size, signed.note)
    message = signed.note.encode()
    try:
        tsa = client() if callable(client) else client
    except SentinelError as exc:
        _log.error("checkpoint at size %d not time-stamped: %s", signed.size, exc.diagnostics())
        return StampOutcome("error", path, problem=exc.diagnostics())
    stored = stored_timestamp(log, signed.size, signed.note, tsa.trust)
    if stored.result != "missing":
        return stored
    try:
        response, token = request_timestamp(message, tsa, now=clock())
        _write_atomic(path, response)
    except TimestampError as exc:
        _log.warning("checkpoint at size %d not time-stamped: %s", signed.size, exc)
        return StampOutcome(exc.result, path, problem=str(exc), requested=True)
    except OSError as exc:
        problem = f"cannot store the token {path}: {exc.strerror or exc}"
        _log.error("checkpoint at size %d not time-stamped: %s", signed.size, problem)
        return StampOutcome("error", path, problem=problem, requested=True)
    _log.info(
        "checkpoint at size %d time-stamped by %s at %s",
        signed.size,
        token.tsa,
        format_ts(token.gen_time),
    )
    return StampOutcome("ok", path, replace_path(token, path), requested=True)


def stored_timestamp(
    log: CheckpointLog, size: int, note: str, trust: TsaTrust, *, created_at: str | None = None
) -> StampOutcome:
    """The stored token of one checkpoint, verified (without nonce) against ``trust``; never
    raises. ``result``: ``stored``, ``missing``, ``invalid`` or ``error`` (unreadable)."""
    path = token_path(log, size, note)
    try:
        not_before = parse_ts(created_at) if created_at else None
    except ValueError:
        not_before = None
    try:
        data = read_token(path)
        token = verify_response(data, note.encode(), trust, not_before=not_before)
    except FileNotFoundError:
        return StampOutcome("missing", path)
    except TimestampError as exc:
        return StampOutcome(exc.result, path, problem=f"stored token: {exc}")
    except OSError as exc:
        return StampOutcome("error", path, problem=f"stored token: {exc.strerror}")
    return StampOutcome("stored", path, replace_path(token, path))


def replace_path(token: TimestampToken, path: Path) -> TimestampToken:
    return TimestampToken(
        token.gen_time, token.tsa, token.serial, token.policy, token.hash_algorithm, path
    )


@dataclass
class TimestampReport:
    """``check_timestamps``' findings. ``status``: ``valid`` (every checkpoint has a token
    that verifies), ``incomplete`` (some have none), ``invalid`` (a token fails, a token
    matches no checkpoint in the log, or the log is unreadable), ``unchecked`` (tokens exist
    but no ``tsa_ca_file`` is configured, or it is unreadable). Counts are exact; ``problems``
    lists the first ``MAX_PROBLEMS``; ``latest`` is the last checkpoint's token when it
    verifies."""

    checkpoints: int = 0
    valid: int = 0
    missing: int = 0
    invalid: int = 0
    unmatched: int = 0
    problems: list[str] = field(default_factory=list)
    latest: TimestampToken | None = None
    unchecked: str | None = None
    #: the checkpoint log could not be read to its end
    log_error: str | None = None

    @property
    def status(self) -> str:
        if self.unchecked is not None:
            return "unchecked"
        if self.invalid or self.unmatched or self.log_error:
            return "invalid"
        if self.missing:
            return "incomplete"
        return "valid"

    def _problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checkpoints": self.checkpoints,
            "valid": self.valid,
            "missing": self.missing,
            "invalid": self.invalid,
            "unmatched_tokens": self.unmatched,
            "problems": list(self.problems),
            "latest": self.latest.to_json() if self.latest is not None else None,
            "unchecked": self.unchecked,
            "log_error": self.log_error,
        }


def _count_tokens(directory: Path) -> int:
    try:
        with os.scandir(directory) as entries:
            return sum(1 for e in entries if e.name.endswith(".tsr") and e.is_file())
    except FileNotFoundError:
        return 0


def check_timestamps(
    log: CheckpointLog,
    trust: TsaTrust | Callable[[], TsaTrust | None] | None,
    *,
    now: datetime | None = None,
) -> TimestampReport | None:
    """Check the stored token of every checkpoint in ``log`` (streamed, constant memory).

    Each token must verify (``verify_response`` over the note, without nonce) with genTime
    no earlier than the checkpoint's ``created_at`` − ``MAX_CLOCK_SKEW`` and no later than
    ``now`` (default: the current time) + ``MAX_CLOCK_SKEW``. Returns ``None`` when there is
    nothing to say (no trust configured and no token stored). ``trust`` may be a callable
    (a ``ConfigError`` from it makes the report ``unchecked``). Raises nothing: an
    unreadable checkpoint log ends the walk with a problem (``Ledger.verify`` reports it).
    """
    from sentinel.ledger.checkpoint import CheckpointError

    directory = timestamps_dir(log)
    stored = _count_tokens(directory)
    report = TimestampReport()
    try:
        anchors = trust() if callable(trust) else trust
    except SentinelError as exc:
        report.unchecked = exc.diagnostics()
        return report
    if anchors is None:
        if not stored:
            return None
        report.unchecked = f"{stored} tokens stored but [ledger] tsa_ca_file is not set"
        return report
    future = (now or utcnow()) + timedelta(seconds=MAX_CLOCK_SKEW)
    matched = 0
    try:
        for line in log:
            report.checkpoints += 1
            where = f"checkpoint at size {line.size} (line {line.line})"
            found = stored_timestamp(log, line.size, line.note, anchors, created_at=line.created_at)
            if found.result == "missing":
                report.missing += 1
                report.latest = None
                report._problem(f"timestamp: missing for {where}")
                continue
            matched += 1
            problem = found.problem
            if found.token is not None and found.token.gen_time > future:
                problem = f"genTime {format_ts(found.token.gen_time)} is in the future"
            if found.token is None or problem is not None:
                report.invalid += 1
                report.latest = None
                report._problem(f"timestamp: invalid for {where}: {problem}")
                continue
            report.valid += 1
            report.latest = found.token
    except CheckpointError as exc:
        report.log_error = str(exc)
        report._problem(f"timestamp: checkpoint log unreadable: {exc}")
    report.unmatched = max(0, stored - matched)
    if report.unmatched:
        report._problem(
            f"timestamp: {report.unmatched} token(s) in {directory} match no checkpoint in "
            f"{log.path} (checkpoint lines removed?)"
        )
    return report
