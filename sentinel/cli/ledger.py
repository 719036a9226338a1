"""`sentinel ledger` commands: verify, checkpoint, prove, export and summarize the ledger.

The ledger is the one named by the configuration (``[ledger] url`` and ``log_id``); the
external checkpoint log and trusted keys come from ``[ledger] checkpoint_dir``,
``signing_key`` (its ``.pub.pem`` and ``.history`` files) and ``origin``. The read-only
commands also take them as options, which override the configuration, so an auditor works
on a copy without the operator's configuration: ``verify`` all of them (``--ledger``,
``--log-id``, ``--checkpoint-dir``, ``--public-key``, ``--key-history``, ``--origin``,
``--tsa-ca-file``, ``--tsa-cert``), ``prove``, ``consistency``, ``export`` and ``stats`` the
database (``--ledger``, ``--log-id``), printing ``checkpoint`` the checkpoint log
(``--log-id``, ``--checkpoint-dir``) and the TSA trust. Each command has only the options it
reads (one definition each, ``_READ_OPTIONS``). They open the database read-only (never
created, migrated or written); ``checkpoint --sign`` and ``rotate-key`` write and need the
configuration.

Exit codes of ``verify``: 0 valid or valid-unpinned (the status line / JSON tells them
apart), 1 invalid, 2 error, 4 unverifiable. RFC 3161 time-stamps of checkpoints (``[ledger]
tsa_url``, ``tsa_ca_file``) are reported beside the status; they do not change it.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import click

from sentinel import ledgerscan
from sentinel.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    CliState,
    F,
    handle_errors,
    pass_state,
)
from sentinel.config import Settings
from sentinel.errors import ConfigError, LedgerError, SentinelError
from sentinel.ledger import Ledger, VerifyStatus, merkle, tsa
from sentinel.ledger.checkpoint import (
    Anchor,
    CheckpointLog,
    LoggedCheckpoint,
    anchor_from_settings,
    default_origin,
    load_verifiers,
    make_checkpoint,
    rotate_key,
    trusted_verifiers,
)
from sentinel.ledger.urls import database_url, display_url
from sentinel.timefmt import WHEN_FORMATS, format_ts, parse_when

#: ``sentinel ledger verify``: a checkpoint is signed by no trusted key (or for another
#: origin), or keys are missing
EXIT_UNVERIFIABLE = 4
_VERIFY_EXIT = {
    VerifyStatus.VALID: EXIT_OK,
    VerifyStatus.VALID_UNPINNED: EXIT_OK,
    VerifyStatus.INVALID: EXIT_FINDINGS,
    VerifyStatus.UNVERIFIABLE: EXIT_UNVERIFIABLE,
}


def _open(state: CliState) -> tuple[Ledger, str]:
    settings = state.settings()
    url = settings.ledger_url
    shown = display_url(url)
    anchor = anchor_from_settings(settings)
    return Ledger.open(url, log_id=settings.ledger.log_id, anchor=anchor), shown


def _report_lines(report: tsa.TimestampReport) -> list[str]:
    if report.unchecked is not None:
        return [f"timestamps: unchecked: {report.unchecked}"]
    head = (
        f"timestamps: {report.status}: {report.valid} of {report.checkpoints} checkpoints "
        f"time-stamped and verified, {report.missing} missing, {report.invalid} invalid"
    )
    if report.unmatched:
        head += f", {report.unmatched} tokens matching no checkpoint"
    if report.latest is not None:
        head += f"; latest by {report.latest.tsa} at {format_ts(report.latest.gen_time)}"
    extra = report.missing + report.invalid + bool(report.unmatched) - len(report.problems)
    more = [f"... and {extra} more"] if extra > 0 else []
    return [head, *report.problems, *more]


def _outcome_line(outcome: tsa.StampOutcome) -> str:
    token = outcome.token
    if token is not None:
        return (
            f"timestamp: {outcome.result}: genTime {format_ts(token.gen_time)} by "
            f"{token.tsa} ({outcome.path})"
        )
    if outcome.result == "missing":
        return f"timestamp: missing ({outcome.path})"
    retry = " (the checkpoint is signed; retried at the next one)" if outcome.requested else ""
    return f"timestamp: {outcome.result}: {outcome.problem}{retry}"


def _ts_option(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected {WHEN_FORMATS}, got {value!r}") from exc


def _json_errors(func: F) -> F:
    """With ``--json`` (keyword ``as_json``), an error also prints ``{"error": "<message>"}``
    on stdout, one line, before ``handle_errors`` / click print it on stderr and exit (2, or
    the error's own code): a script reading stdout gets JSON whatever happens. Errors in
    parsing the command line itself (click, before the command runs) print only on stderr."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SentinelError as exc:
            if kwargs.get("as_json"):
                click.echo(json.dumps({"error": exc.diagnostics()}))
            raise
        except click.ClickException as exc:
            if kwargs.get("as_json"):
                click.echo(json.dumps({"error": exc.format_message()}))
            raise

    return cast(F, wrapper)


@click.group()
def ledger() -> None:
    """The tamper-evident ledger: verify, checkpoint, prove, export, show statistics."""


@dataclass(frozen=True)
class _ReadOptions:
    """The auditor options of a read-only command (``None`` / empty: not given)."""

    ledger: str | None = None
    log_id: str | None = None
    checkpoint_dir: Path | None = None
    public_keys: tuple[Path, ...] = ()
    histories: tuple[Path, ...] = ()
    origin: str | None = None
    tsa_ca_file: Path | None = None
    tsa_cert: Path | None = None

    def given(self) -> list[str]:
        """The options given, as ``--name`` (for commands that must refuse them)."""
        return [
            "--" + name.replace("_", "-")
            for name, value in vars(self).items()
            if value is not None and value != ()
        ]


#: every auditor option, once: (keyword in ``_ReadOptions``, click decorator)
_READ_OPTIONS: dict[str, Callable[[F], F]] = {
    "ledger": click.option(
        "--ledger",
        "ledger",
        metavar="URL_OR_PATH",
        help="The database: a SQLAlchemy URL (sqlite:///…, postgresql://…) or a SQLite file "
        "path (taken as it is: ?, %, spaces are part of the name). Default: [ledger] url.",
    ),
    "log_id": click.option(
        "--log-id",
        "log_id",
        metavar="ID",
        help="Log id. Default: [ledger] log_id. One with no record in a database holding "
        "other logs is an error (exit 2) naming the logs there.",
    ),
    "checkpoint_dir": click.option(
        "--checkpoint-dir",
        "checkpoint_dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="Directory of the external checkpoint log (<log_id>.checkpoints.jsonl). Given, "
        "it must hold a checkpoint of the log (else exit 2); the configured one may hold none "
        "yet (valid-unpinned). Default: [ledger] checkpoint_dir.",
    ),
    "public_keys": click.option(
        "--public-key",
        "public_keys",
        multiple=True,
        metavar="PEM",
        type=click.Path(path_type=Path, dir_okay=False),
        help="A trusted Ed25519 public key (PEM, e.g. keys/ledger-ed25519.pub.pem); "
        "repeatable. With --key-history, replaces the keys of [ledger] signing_key.",
    ),
    "histories": click.option(
        "--key-history",
        "histories",
        multiple=True,
        metavar="FILE",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Retired keys, one signed-note verifier key a line (keys/ledger-ed25519.history, "
        "kept by rotate-key); repeatable.",
    ),
    "origin": click.option(
        "--origin",
        "origin",
        help="Checkpoint origin and key name. Default: [ledger] origin, else sentinel/<log_id>. "
        "One other than the signed notes' makes verify unverifiable (exit 4) naming both: a "
        "wrong option, not tampering.",
    ),
    "tsa_ca_file": click.option(
        "--tsa-ca-file",
        "tsa_ca_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="CA certificates (PEM) of the RFC 3161 TSA. Default: [ledger] tsa_ca_file.",
    ),
    "tsa_cert": click.option(
        "--tsa-cert",
        "tsa_cert",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Pinned TSA certificate (PEM); needs --tsa-ca-file (exit 2 without). Given, "
        "both files must be readable PEM certificates (exit 2 otherwise).",
    ),
}
_DATABASE = ("ledger", "log_id")
_ANCHOR = ("checkpoint_dir", "public_keys", "histories", "origin")
_TSA = ("tsa_ca_file", "tsa_cert")


def _read_options(*names: str) -> Callable[[F], F]:
    """Add the auditor options ``names`` (keys of ``_READ_OPTIONS``) to a command and pass
    them to it as one ``_ReadOptions`` keyword argument, ``read``.

    Each read-only command takes only the options it uses (``prove`` reads no checkpoint
    log, so it has no ``--public-key`` that would look like a check it does not make); the
    option definitions exist once, here.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names}
            return func(*args, read=_ReadOptions(**given), **kwargs)

        out: Callable[..., Any] = wrapper
        for name in reversed(names):
            out = _READ_OPTIONS[name](out)
        return cast(F, out)

    return decorate


@dataclass(frozen=True)
class _ReadSource:
    """What a read-only command reads: the database URL (``None``: not needed), the log id,
    the checkpoint log and trusted keys (``anchor``; ``None``: not needed), the TSA trust
    (called when a token is checked) and the settings (``None``: no configuration file)."""

    url: str | None
    log_id: str
    anchor: Anchor | None
    log: CheckpointLog | None
    tsa_trust: Callable[[], tsa.TsaTrust | None]
    tsa_configured: bool
    settings: Settings | None
    log_given: bool = False
    log_id_source: str = "--log-id"

    @property
    def shown(self) -> str:
        """The URL with any password hidden (a SQLite path as it is, not percent-encoded)."""
        return display_url(self.url or "")

    def open(self) -> Ledger:
        """The ledger, opened read-only (never created, migrated or written).

        Raises ``LedgerError`` when the log has no record but the database holds other
        logs' records (a wrong log id is not an empty, valid log), naming the log ids there.
        """
        assert self.url is not None
        led = Ledger.open(self.url, log_id=self.log_id, anchor=self.anchor, read_only=True)
        try:
            if not led.has_records():
                present = led.log_ids()
                if present:
                    raise LedgerError(
                        f"ledger: {self.shown}: no record of log {self.log_id!r} "
                        f"({self.log_id_source}); the database holds the logs "
                        + ", ".join(map(repr, present))
                    )
        except BaseException:
            led.close()
            raise
        return led

    def check_log(self) -> None:
        """Refuse (``ConfigError``) a ``--checkpoint-dir`` given that holds no checkpoint of
        the log; the configured one may (no checkpoint signed yet after `init`)."""
        if self.log is not None and self.log_given:
            _check_given_log(self.log)


def _optional_settings(state: CliState) -> Settings | None:
    """The settings, or ``None`` when no ``--config`` was given and no default file exists."""
    if state.config_path is None:
        from sentinel.config import SEARCH_PATH

        if not any(p.is_file() for p in SEARCH_PATH):
            return None
    return state.settings()


def _check_given_log(log: CheckpointLog) -> None:
    """Refuse a ``--checkpoint-dir`` given explicitly that holds no checkpoint of the log.

    An auditor names the directory to pin the database to it: one that does not exist, is
    not a directory or holds no checkpoint of ``log_id`` is a wrong option (``ConfigError``,
    exit 2, naming the checkpoint logs it does hold), never "unpinned" — which would pass a
    tail-truncated copy.
    """
    directory, log_id = log.directory, log.log_id
    where = f"--checkpoint-dir {directory}"
    if not directory.exists():
        raise ConfigError(where, "no such directory")
    if not directory.is_dir():
        raise ConfigError(where, "not a directory")
    if log.latest() is None:
        held = sorted(p.name for p in directory.glob("*.checkpoints.jsonl"))
        what = "it holds " + ", ".join(held) if held else "it holds no checkpoint log"
        raise ConfigError(
            where,
            f"no checkpoint in {log.path.name} (the log of {log_id!r}: missing or empty; "
            f"{what}): an auditor's copy must be pinned to its checkpoints",
        )


def _read_source(
    state: CliState,
    read: _ReadOptions,
    *,
    database: bool = True,
    checkpoints: bool = False,
    keys: bool = False,
) -> _ReadSource:
    """The options over the configuration: each option given replaces its setting.

    ``database``, ``checkpoints``, ``keys``: what the command reads. Without a configuration
    file the options for each must be given; raises ``ConfigError`` (exit 2) naming every
    missing one.
    """
    settings = _optional_settings(state)
    if settings is None:
        missing = []
        if database and read.ledger is None:
            missing.append("--ledger URL_OR_PATH (the database)")
        if checkpoints and read.checkpoint_dir is None:
            missing.append("--checkpoint-dir DIR (the external checkpoint log)")
        if keys and not read.public_keys and not read.histories:
            missing.append("--public-key PEM or --key-history FILE (the trusted keys)")
        if missing:
            from sentinel.config import SEARCH_PATH

            where = " or ".join(str(p) for p in SEARCH_PATH)
            raise ConfigError(
                where,
                "no configuration file found (pass --config FILE or run `sentinel init DIR`), "
                "and missing " + ", ".join(missing),
            )
    url: str | None = None
    if read.ledger is not None:
        url = database_url(read.ledger)
    elif database:
        assert settings is not None
        url = settings.ledger_url
    log_id = read.log_id or (settings.ledger.log_id if settings is not None else "sentinel")
    if read.origin:
        origin = read.origin
    elif settings is not None and settings.ledger.origin:
        origin = settings.ledger.origin
    else:
        origin = default_origin(log_id)
    log: CheckpointLog | None = None
    if checkpoints:
        directory = read.checkpoint_dir
        if directory is None:
            assert settings is not None
            directory = settings.resolve(settings.ledger.checkpoint_dir)
        log = CheckpointLog(directory, log_id)
    anchor: Anchor | None = None
    if keys and log is not None:
        if read.public_keys or read.histories:
            anchor = Anchor(log, load_verifiers(read.public_keys, read.histories, origin), origin)
        else:
            assert settings is not None
            verifiers, problems = trusted_verifiers(
                settings.resolve(settings.ledger.signing_key), origin
            )
            anchor = Anchor(log, verifiers, origin, tuple(problems))

    given_trust: tsa.TsaTrust | None = None
    if read.tsa_cert is not None and read.tsa_ca_file is None:
        raise ConfigError(
            f"--tsa-cert {read.tsa_cert}",
            "needs --tsa-ca-file (the CA the pinned TSA certificate chains to)",
        )
    if read.tsa_ca_file is not None:  # given: a bad file is an error (exit 2), not "unchecked"
        given_trust = tsa.TsaTrust.from_files(read.tsa_ca_file, read.tsa_cert, options=True)

    def trust() -> tsa.TsaTrust | None:
        if given_trust is not None:
            return given_trust
        return tsa.trust_from_settings(settings) if settings is not None else None

    configured = read.tsa_ca_file is not None or (
        settings is not None
        and bool(settings.ledger.tsa_url or settings.ledger.tsa_ca_file is not None)
    )
    return _ReadSource(
        url,
        log_id,
        anchor,
        log,
        trust,
        configured,
        settings,
        log_given=read.checkpoint_dir is not None,
        log_id_source=(
            "--log-id"
            if read.log_id
            else "[ledger] log_id"
            if settings is not None
            else "the default; give --log-id"
        ),
    )


class _Progress:
    """``verify: DONE / TOTAL records (P%), R records/s`` on stderr: rewritten in place on a
    terminal, one line per report otherwise."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * done / total if total else 100.0
        text = f"verify: {done} / {total} records ({pct:.0f}%), {rate:,.0f} records/s"
        if self.tty:
            sys.stderr.write("\r" + text + ("\n" if done >= total else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


@ledger.command("verify")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print the result as one JSON object (an error: {"error": "..."}).',
)
@_read_options(*_DATABASE, *_ANCHOR, *_TSA)
@click.option(
    "--progress",
    "show_progress",
    is_flag=True,
    help="Print progress on stderr (always when stderr is a terminal).",
)
@pass_state
@handle_errors
@_json_errors
def verify(
    state: CliState,
    as_json: bool,
    show_progress: bool,
    read: _ReadOptions,
) -> None:
    """Recompute every hash and the Merkle tree; check them against the signed checkpoints.

    Checks sequence numbers, leaf and chain hashes, every stored Merkle node, and every
    checkpoint in the external checkpoint log (signature under a trusted key, root at its
    size). Statuses: valid; valid-unpinned (records after the last checkpoint);
    unverifiable (a checkpoint by an unknown key, or no key, or signed for another origin
    than --origin / [ledger] origin); invalid (with the first bad
    sequence number; truncation and rollback show as a database behind, or differing from,
    the external checkpoint log).

    The database is opened read-only and never migrated or created: a SQLite copy on
    read-only media verifies, a database of another schema version is an error. Its bytes
    never change, but beside a writable copy of a WAL-mode database SQLite leaves its -wal
    and -shm side files. Copy a live SQLite ledger with `sqlite3 ledger.db ".backup
    copy.db"` (the file alone, without its -wal, lacks the newest records: "invalid ... tail
    truncated").

    Without a configuration file (an auditor with a copy of the database, the checkpoint
    log and the public keys) give --ledger, --checkpoint-dir and --public-key and/or
    --key-history; with one, each option given replaces its setting.

    With a TSA CA (--tsa-ca-file or [ledger] tsa_ca_file), the RFC 3161 time-stamp token of
    every checkpoint is checked too and reported on the following lines ("timestamp:
    missing/invalid for checkpoint ..."; JSON: "timestamps"); time-stamps do not change the
    status or exit code.

    Progress (records done / total, rate) goes to stderr when it is a terminal or with
    --progress, about every 5 % (every 8,192 records on a smaller log); never to stdout.

    On SQLite the ranges are checked by the compiled accelerator when it is installed; it
    only accepts clean ranges and hands anything else to the pure-Python reference, which
    names the problem (JSON: "verifier" is c: every range accepted by it; c+python: it
    declined some or all ranges and the reference checked those; python: the reference
    alone). SENTINEL_VERIFIER=python in the environment runs the reference alone, to
    cross-check; SENTINEL_VERIFIER=auto (or unset) is the default; any other value is an
    error (exit 2).

    \b
    Exit codes: 0 valid or valid-unpinned; 1 invalid; 2 error (no configuration and
    missing options, database unreachable or of another schema version, a log id with no
    record in a database holding other logs, a --checkpoint-dir given that holds no
    checkpoint of the log, SENTINEL_VERIFIER other than auto or python); 4 unverifiable.
    """
    try:
        ledgerscan.verifier_setting()
    except ValueError as exc:
        raise SentinelError(str(exc)) from exc
    src = _read_source(state, read, checkpoints=True, keys=True)
    shown = src.shown
    progress = _Progress(sys.stderr.isatty()) if show_progress or sys.stderr.isatty() else None
    with src.open() as led:
        src.check_log()
        result = led.verify(progress=progress)
    assert src.log is not None
    report = tsa.check_timestamps(src.log, src.tsa_trust)
    if as_json:
        stamps = {"timestamps": report.to_json() if report is not None else None}
        click.echo(json.dumps({"log_id": led.log_id, "url": shown, **result.to_json(), **stamps}))
        raise SystemExit(_VERIFY_EXIT[result.status])
    elif result.status == VerifyStatus.INVALID:
        where = (
            f"first bad sequence number {result.first_bad_seq}"
            if result.first_bad_seq is not None
            else "checkpoint log"
        )
        click.echo(
            f"{result.status}: ledger {led.log_id!r} at {shown}: {where}: {result.problem} "
            f"({result.records_checked} of {result.size} records verified before it)"
        )
        if led.backend == "sqlite" and "tail truncated" in (result.problem or ""):
            click.echo(_SQLITE_COPY_HINT)
    else:
        line = (
            f"{result.status}: ledger {led.log_id!r} at {shown}: {result.size} records, "
            f"head {result.head_hash}"
        )
        if result.checkpoint_size is not None:
            line += f", last checkpoint at {result.checkpoint_size}"
        if result.problem:
            line += f" ({result.problem})"
        click.echo(line)
    for text in _report_lines(report) if report is not None else ():
        click.echo(text)
    raise SystemExit(_VERIFY_EXIT[result.status])


#: after "tail truncated" on SQLite: an auditor's copy of the bare file may be the cause
_SQLITE_COPY_HINT = (
    "hint: if this is a copy of a live SQLite ledger, a copy of the file alone lacks the "
    'records still in its -wal file: copy with `sqlite3 ledger.db ".backup COPY.db"` '
    '(README "Verifying a copy") before reading this as tampering'
)


@ledger.command("checkpoint")
@click.option(
    "--sign", is_flag=True, help="Sign a new checkpoint now (after the consistency check)."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print one JSON object (an error: {"error": "..."}).',
)
@_read_options("log_id", "checkpoint_dir", *_TSA)
@pass_state
@handle_errors
@_json_errors
def checkpoint(state: CliState, sign: bool, as_json: bool, read: _ReadOptions) -> None:
    """Print the latest signed checkpoint (C2SP tlog-checkpoint signed note).

    It is read from the external checkpoint log. With --sign, first check that the ledger
    extends that checkpoint (RFC 9162 consistency proof) and sign a new one with
    [ledger] signing_key; refuses, with exit code 1, if the ledger does not extend it.

    Standard output is the note, byte for byte (what was signed and time-stamped). With a
    TSA configured (--tsa-ca-file, or [ledger] tsa_url or tsa_ca_file), one "timestamp:"
    line on standard error gives the RFC 3161 token's genTime, TSA name and file, or why
    there is none (JSON: "timestamp"). With --sign the TSA is asked for a token (a TSA
    failure does not fail the command).

    Printing reads only the checkpoint log (and the token): without a configuration file
    (an auditor with a copy of the checkpoint directory) give --checkpoint-dir; with one,
    each option given replaces its setting. --sign writes, with the configuration's key
    and database: it takes none of these options.

    \b
    Exit codes: 0 printed; 1 refused (ledger truncated, rolled back or rewritten);
    2 error (no checkpoint yet, key or configuration problem, --sign with an auditor
    option).
    """
    outcome: tsa.StampOutcome | None = None
    if sign:
        given = read.given()
        if given:
            raise click.UsageError(
                "--sign makes a checkpoint with the configuration's [ledger] signing_key and "
                "database, and writes: it takes no " + ", ".join(given)
            )
        settings = state.settings()
        led, _shown = _open(state)
        with led:
            signed = make_checkpoint(led, settings)
        info = {"line": None, **signed.to_json()}
        outcome = signed.timestamp
    else:
        src = _read_source(state, read, database=False, checkpoints=True)
        src.check_log()
        assert src.log is not None
        last = src.log.latest()
        if last is None:
            raise LedgerError(
                f"no checkpoint in {src.log.path} yet (sentinel ledger checkpoint --sign)"
            )
        info = {
            "line": last.line,
            "origin": last.origin,
            "size": last.size,
            "root": last.root.hex(),
            "vkey": last.vkey,
            "note": last.note,
            "created_at": last.created_at,
        }
        if src.tsa_configured:
            outcome = _stored_outcome(src.tsa_trust, src.log, last)
    if as_json:
        stamp = {"timestamp": outcome.to_json() if outcome is not None else None}
        click.echo(json.dumps({**info, **stamp}))
    else:
        click.echo(str(info["note"]), nl=False)
        if outcome is not None:
            click.echo(_outcome_line(outcome), err=True)


def _stored_outcome(
    trust_of: Callable[[], tsa.TsaTrust | None], log: CheckpointLog, last: LoggedCheckpoint
) -> tsa.StampOutcome:
    path = tsa.token_path(log, last.size, last.note)
    try:
        trust = trust_of()
    except SentinelError as exc:
        return tsa.StampOutcome("error", path, problem=exc.diagnostics())
    if trust is None:
        return tsa.StampOutcome("error", path, problem="[ledger] tsa_ca_file is not set")
    return tsa.stored_timestamp(log, last.size, last.note, trust, created_at=last.created_at)


@ledger.command("rotate-key")
@pass_state
@handle_errors
@_json_errors
def rotate_key_command(state: CliState) -> None:
    """Replace the checkpoint signing key; the old public key stays trusted.

    Signs a last checkpoint with the old key, appends the old verifier key to
    <signing_key>.history (read by verify), writes a new key pair in place of
    [ledger] signing_key and signs a checkpoint with it. Restart the daemon afterwards.

    \b
    Exit codes: 0 rotated; 1 refused (the ledger does not extend the last checkpoint);
    2 error.
    """
    settings = state.settings()
    led, _shown = _open(state)
    with led:
        old, new = rotate_key(led, settings)
    click.echo(f"retired {old.vkey} (last checkpoint at size {old.size})")
    click.echo(f"signing with {new.vkey} (checkpoint at size {new.size})")


@ledger.command("prove")
@click.argument("seq", type=click.IntRange(min=0))
@click.option("--size", type=click.IntRange(min=1), default=None, help="Tree size (default: all).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print one JSON object (an error: {"error": "..."}).',
)
@_read_options(*_DATABASE)
@pass_state
@handle_errors
@_json_errors
def prove(state: CliState, seq: int, size: int | None, as_json: bool, read: _ReadOptions) -> None:
    """RFC 9162 inclusion proof of record SEQ, verifiable offline.

    Prints the record's leaf hash, the audit path (hex, leaf side first) and the root of
    the tree of --size records; with --json also the record's canonical bytes (as text, key
    "record"; `ledger export` prints any record's bytes). Check it with any RFC 9162
    verifier: leaf = SHA-256(0x00 ‖ record), node = SHA-256(0x01 ‖ left ‖ right).

    Opened read-only (never created, migrated or written). Without a configuration file
    (an auditor with a copy of the database) give --ledger; with one, each option given
    replaces its setting.

    \b
    Exit codes: 0 printed; 2 error (SEQ or --size out of range, no configuration
    and no --ledger, database unreachable or of another schema version).
    """
    with _read_source(state, read).open() as led:
        try:
            proof = led.inclusion_proof(seq, size)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
        entry = next(led.iter_entries(seq, seq + 1))
    merkle.verify_inclusion(proof.seq, proof.size, proof.leaf_hash, list(proof.path), proof.root)
    info = {"log_id": led.log_id, **proof.to_json(), "record": entry.body.decode()}
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"record {proof.seq} in tree of size {proof.size}")
    click.echo(f"leaf_hash {proof.leaf_hash.hex()}")
    for i, node in enumerate(proof.path):
        click.echo(f"path[{i}] {node.hex()}")
    click.echo(f"root {proof.root.hex()}")


@ledger.command("consistency")
@click.argument("old_size", type=click.IntRange(min=1))
@click.argument("new_size", type=click.IntRange(min=1), required=False)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print one JSON object (an error: {"error": "..."}).',
)
@_read_options(*_DATABASE)
@pass_state
@handle_errors
@_json_errors
def consistency(
    state: CliState, old_size: int, new_size: int | None, as_json: bool, read: _ReadOptions
) -> None:
    """RFC 9162 consistency proof that the tree of NEW_SIZE records extends OLD_SIZE.

    NEW_SIZE defaults to the whole ledger. Prints both roots and the proof (hex).

    Opened read-only (never created, migrated or written). Without a configuration file
    (an auditor with a copy of the database) give --ledger; with one, each option given
    replaces its setting.

    \b
    Exit codes: 0 printed; 2 error (sizes out of range, no configuration and no --ledger,
    database unreachable or of another schema version).
    """
    with _read_source(state, read).open() as led:
        try:
            proof = led.consistency_proof(old_size, new_size)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    if proof.old != proof.new:
        merkle.verify_consistency(
            proof.old, proof.new, proof.old_root, proof.new_root, list(proof.path)
        )
    if as_json:
        click.echo(json.dumps({"log_id": led.log_id, **proof.to_json()}))
        return
    click.echo(f"old size {proof.old} root {proof.old_root.hex()}")
    click.echo(f"new size {proof.new} root {proof.new_root.hex()}")
    for i, node in enumerate(proof.path):
        click.echo(f"path[{i}] {node.hex()}")


@ledger.command("export")
@click.option(
    "--from",
    "since",
    metavar="TIME",
    callback=_ts_option,
    help="First event time included: RFC 3339 with a zone, or YYYY-MM-DD (midnight UTC).",
)
@click.option(
    "--to",
    "until",
    metavar="TIME",
    callback=_ts_option,
    help="First event time excluded: RFC 3339 with a zone, or YYYY-MM-DD (midnight UTC).",
)
@click.option("--kind", default=None, help="Only records of this kind (e.g. audit_event).")
@click.option(
    "--by",
    type=click.Choice(["event", "recorded"]),
    default="event",
    show_default=True,
    help="Window on the event's own time (data.ts, else recorded_at) or on recorded_at.",
)
@_read_options(*_DATABASE)
@pass_state
@handle_errors
@_json_errors
def export(
    state: CliState,
    since: datetime | None,
    until: datetime | None,
    kind: str | None,
    by: str,
    read: _ReadOptions,
) -> None:
    """Print the canonical bytes (RFC 8785) of each record in the window, one per line.

    The lines are exactly the bytes that were hashed (leaf = SHA-256(0x00 ‖ line)).

    Opened read-only (never created, migrated or written). Without a configuration file
    (an auditor with a copy of the database) give --ledger; with one, each option given
    replaces its setting.

    Exit codes: 0 printed (also when the window is empty: a line on stderr says so);
    2 error.
    """
    out = sys.stdout.buffer
    n = 0
    with _read_source(state, read).open() as led:
        for n, entry in enumerate(led.query_entries(kind, since, until, by=by), 1):  # noqa: B007
            out.write(entry.body + b"\n")
    out.flush()
    if n == 0:  # say so: an empty output must not look like a typo accepted in silence
        what = f"of kind {kind!r} " if kind is not None else ""
        click.echo(
            f"sentinel: no record {what}in the window (`sentinel ledger stats` lists the kinds)",
            err=True,
        )


@ledger.command("stats")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print one JSON object (an error: {"error": "..."}).',
)
@_read_options(*_DATABASE)
@pass_state
@handle_errors
@_json_errors
def stats(state: CliState, as_json: bool, read: _ReadOptions) -> None:
    """Size, head hash and number of records per kind (not verified: run `verify`).

    Opened read-only (never created, migrated or written). Without a configuration file
    (an auditor with a copy of the database) give --ledger; with one, each option given
    replaces its setting.
    """
    src = _read_source(state, read)
    shown = src.shown
    with src.open() as led:
        head = led.head()
        kinds = led.count_by_kind()
    info = {
        "log_id": led.log_id,
        "url": shown,
        "size": head.seq + 1,
        "head_seq": head.seq,
        "head_hash": head.chain_hash.hex(),
        "kinds": kinds,
    }
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"ledger {led.log_id!r} at {shown}")
    click.echo(f"size {info['size']}, head {info['head_hash']}")
    for name, count in kinds.items():
        click.echo(f"  {name:<24} {count}")
