"""Signed checkpoints (C2SP tlog-checkpoint) and the external checkpoint log.

Checkpoint body (https://c2sp.org/tlog-checkpoint), signed as a C2SP signed note (``note``)::

    <origin>\\n
    <tree size, decimal>\\n
    <base64 of the 32-byte RFC 9162 root>\\n
    [<extension line>\\n ...]

Sentinel's origin defaults to ``sentinel/<log_id>`` (``[ledger] origin`` overrides it) and the
signing key's name is the origin.

The *external checkpoint log* is an append-only JSON-lines file
``<checkpoint_dir>/<log_id>.checkpoints.jsonl`` kept outside the database directory, one line
per checkpoint: ``{"v": 1, "log", "origin", "size", "root" (hex), "vkey", "note",
"created_at"}``. Each line is written with ``O_APPEND`` and fsynced; writers take an
``flock`` on ``<file>.lock``. A last line without its newline (a crash mid-write) is ignored.
It is what lets ``verify`` see a truncated or rolled-back database: the signed size and root
live where a database restore does not reach.

With ``[ledger] tsa_url`` set, ``make_checkpoint`` also gets each signed note an RFC 3161
time-stamp, stored beside the log (``sentinel.ledger.tsa``); a TSA failure never stops the
checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sentinel.errors import ConfigError, LedgerError
from sentinel.ledger.note import (
    MalformedNoteError,
    NoteError,
    Signer,
    Verifier,
    open_note,
    sign_note,
)

if TYPE_CHECKING:
    from sentinel.config import Settings
    from sentinel.ledger.store import Ledger
    from sentinel.ledger.tsa import StampOutcome

_log = logging.getLogger(__name__)

#: longest line accepted in the external checkpoint log, bytes
MAX_LINE_BYTES = 64 * 1024
#: largest key file read, bytes
MAX_KEY_FILE_BYTES = 64 * 1024
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,18}")


class CheckpointError(LedgerError):
    """A checkpoint cannot be made, read or written."""


class ConsistencyError(CheckpointError):
    """Refusing to sign: the ledger does not extend the last external checkpoint.

    The database was truncated, rolled back or rewritten since that checkpoint was signed.
    """

    exit_code = 1


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: ``origin``, ``size`` (leaves), 32-byte ``root``, extensions."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text (what is signed), newline-terminated."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "".join(f"{line}\n" for line in (*lines, *self.extensions))


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint note's text. Raises ``MalformedNoteError``."""
    if not text.endswith("\n"):
        raise MalformedNoteError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNoteError("checkpoint needs origin, size and root lines")
    origin, size, root_b64, *ext = lines
    if not origin:
        raise MalformedNoteError("empty checkpoint origin")
    if not _SIZE_RE.fullmatch(size) or int(size) >= 1 << 63:
        raise MalformedNoteError(f"bad checkpoint size {size!r}")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedNoteError("checkpoint root is not base64") from exc
    if len(root) != 32:
        raise MalformedNoteError("checkpoint root is not 32 bytes")
    if any(not line for line in ext):
        raise MalformedNoteError("empty checkpoint extension line")
    return Checkpoint(origin, int(size), root, tuple(ext))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint, its signed note, the signer's vkey and the UTC time it was made.

    ``timestamp`` is what ``make_checkpoint`` got from the configured TSA (``None``: no TSA
    configured); it is not part of the checkpoint's identity (not compared).
    """

    checkpoint: Checkpoint
    note: str
    vkey: str
    created_at: str
    timestamp: StampOutcome | None = field(default=None, compare=False)

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.checkpoint.origin,
            "size": self.size,
            "root": self.root.hex(),
            "vkey": self.vkey,
            "note": self.note,
            "created_at": self.created_at,
        }


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer, created_at: str) -> SignedCheckpoint:
    """Sign ``checkpoint`` as a C2SP signed note with ``signer``."""
    return SignedCheckpoint(
        checkpoint, sign_note(checkpoint.text(), [signer]), signer.vkey, created_at
    )


def open_checkpoint(note: str, verifiers: Sequence[Verifier]) -> Checkpoint:
    """Verify a signed checkpoint note and parse it. Raises the ``note`` errors."""
    return parse_checkpoint(open_note(note, verifiers).text)


def _file_name(log_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", log_id)
    if safe != log_id:
        safe += "-" + hashlib.sha256(log_id.encode()).hexdigest()[:8]
    return f"{safe}.checkpoints.jsonl"


@dataclass(frozen=True)
class LoggedCheckpoint:
    """One line of the external log (signature not yet checked). ``line`` is 1-based."""

    line: int
    origin: str
    size: int
    root: bytes
    vkey: str
    note: str
    created_at: str


class CheckpointLog:
    """The append-only checkpoint file of one ledger in ``directory`` (see module docstring)."""

    def __init__(self, directory: Path, log_id: str) -> None:
        self.directory = Path(directory)
        self.log_id = log_id
        self.path = self.directory / _file_name(log_id)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive writer lock (``flock`` on ``<file>.lock``), across processes."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CheckpointError(f"checkpoint log {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def __iter__(self) -> Iterator[LoggedCheckpoint]:
        """Checkpoints in file order, streamed. Raises ``CheckpointError`` on a bad line."""
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CheckpointError(f"checkpoint log {self.path}: {exc.strerror}") from exc
        with handle:
            number = 0
            while True:
                raw = handle.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                number += 1
                if not raw.endswith(b"\n"):
                    if len(raw) > MAX_LINE_BYTES:
                        raise CheckpointError(f"{self.path}:{number}: line too long")
                    _log.warning("%s:%d: ignoring a torn last line", self.path, number)
                    return
                yield self._parse_line(raw, number)

    def _parse_line(self, raw: bytes, number: int) -> LoggedCheckpoint:
        where = f"{self.path}:{number}"
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict) or obj.get("v") != 1:
                raise ValueError("not a version-1 checkpoint line")
            size, root = obj["size"], bytes.fromhex(obj["root"])
            fields = (obj["origin"], obj["vkey"], obj["note"], obj["created_at"])
            if not isinstance(size, int) or size < 0 or len(root) != 32:
                raise ValueError("bad size or root")
            if not all(isinstance(f, str) for f in fields):
                raise ValueError("bad field type")
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{where}: malformed checkpoint line: {exc}") from exc
        if obj.get("log") != self.log_id:
            raise CheckpointError(f"{where}: checkpoint of log {obj.get('log')!r}")
        return LoggedCheckpoint(number, obj["origin"], size, root, *fields[1:])

    def latest(self) -> LoggedCheckpoint | None:
        """The last complete line, or ``None`` when the log is empty or missing."""
        last = None
        for last in self:  # noqa: B007 - streamed: constant memory
            pass
        return last

    def append(self, signed: SignedCheckpoint) -> None:
        """Append and fsync one line (call under ``locked()``). Raises ``CheckpointError``."""
        line = {
            "v": 1,
            "log": self.log_id,
            "origin": signed.checkpoint.origin,
            "size": signed.size,
            "root": signed.root.hex(),
            "vkey": signed.vkey,
            "note": signed.note,
            "created_at": signed.created_at,
        }
        data = (json.dumps(line, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
        if len(data) > MAX_LINE_BYTES:
            raise CheckpointError("checkpoint line too long")
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                dfd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            raise CheckpointError(f"checkpoint log {self.path}: {exc.strerror}") from exc


@dataclass(frozen=True)
class Anchor:
    """What ``Ledger.verify`` pins the database to: the external log and the trusted keys.

    ``verifiers`` are every public key ever used to sign this log's checkpoints (key history);
    an empty tuple makes any checkpoint unverifiable.
    """

    log: CheckpointLog
    verifiers: tuple[Verifier, ...]
    origin: str
    problems: tuple[str, ...] = field(default=())


def default_origin(log_id: str) -> str:
    """``sentinel/<log_id>``: the checkpoint origin (and key name) unless configured."""
    return f"sentinel/{log_id}"


def _read_small(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ConfigError(str(path), f"larger than {MAX_KEY_FILE_BYTES} bytes")
    return data


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 key from a PKCS#8 PEM file. Raises ``ConfigError``."""
    try:
        key = serialization.load_pem_private_key(_read_small(path), password=None)
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "signing key not found (run `sentinel init`)") from exc
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the signing key: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(path), "not an unencrypted PKCS#8 PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(str(path), "signing key is not Ed25519")
    return key


def public_key_path(signing_key: Path) -> Path:
    """``keys/ledger-ed25519.pem`` → ``keys/ledger-ed25519.pub.pem`` (written by init)."""
    name = signing_key.name.removesuffix(".pem")
    return signing_key.with_name(f"{name}.pub.pem")


def key_history_path(signing_key: Path) -> Path:
    """``keys/ledger-ed25519.pem`` → ``keys/ledger-ed25519.history``: retired vkeys, one a line."""
    name = signing_key.name.removesuffix(".pem")
    return signing_key.with_name(f"{name}.history")


def trusted_verifiers(signing_key: Path, origin: str) -> tuple[tuple[Verifier, ...], list[str]]:
    """The current key (public PEM, else the private key) plus the retired keys in history.

    Returns the verifiers and a list of problems (missing or unreadable files); never raises.
    """
    found: dict[str, Verifier] = {}
    problems: list[str] = []
    pub = public_key_path(signing_key)
    try:
        key: Any = serialization.load_pem_public_key(_read_small(pub))
        if isinstance(key, Ed25519PublicKey):
            v = Verifier.from_public_key(origin, key)
            found[v.vkey] = v
        else:
            problems.append(f"{pub}: not an Ed25519 public key")
    except FileNotFoundError:
        try:
            v = Signer(origin, load_private_key(signing_key)).verifier
            found[v.vkey] = v
        except (ConfigError, NoteError) as exc:
            problems.append(f"no public key {pub} and {exc}")
    except (OSError, ValueError, ConfigError, NoteError) as exc:
        problems.append(f"{pub}: {exc}")
    history = key_history_path(signing_key)
    try:
        text = _read_small(history).decode()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        problems.append(f"{history}: {exc}")
        text = ""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            v = Verifier.from_vkey(line)
        except NoteError as exc:
            problems.append(f"{history}:{number}: {exc}")
            continue
        found[v.vkey] = v
    return tuple(found.values()), problems


def load_verifiers(
    public_keys: Sequence[Path], histories: Sequence[Path], origin: str
) -> tuple[Verifier, ...]:
    """Trusted keys given explicitly (``sentinel ledger verify --public-key/--key-history``).

    ``public_keys``: Ed25519 public keys (SubjectPublicKeyInfo PEM, as ``sentinel init``
    writes ``<signing_key>.pub.pem``), each named ``origin`` (the C2SP signed-note key name).
    ``histories``: files of note verifier keys (``name+hash+base64``), one a line, ``#``
    comments — the ``<signing_key>.history`` file ``rotate-key`` keeps. Unlike
    ``trusted_verifiers`` every file must be readable and well formed: raises ``ConfigError``
    naming the file (and line).
    """
    found: dict[str, Verifier] = {}
    for path in public_keys:
        try:
            key: Any = serialization.load_pem_public_key(_read_small(path))
        except FileNotFoundError as exc:
            raise ConfigError(str(path), "no such public key file") from exc
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror}") from exc
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(path), "not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(str(path), "not an Ed25519 public key")
        v = Verifier.from_public_key(origin, key)
        found[v.vkey] = v
    for path in histories:
        try:
            text = _read_small(path).decode()
        except FileNotFoundError as exc:
            raise ConfigError(str(path), "no such key history file") from exc
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(str(path), "not UTF-8 text") from exc
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            try:
                v = Verifier.from_vkey(line.strip())
            except NoteError as exc:
                raise ConfigError(f"{path}:{number}", f"not a verifier key: {exc}") from exc
            found[v.vkey] = v
    return tuple(found.values())


def check_checkpoint_dir(settings: Settings) -> None:
    """Refuse (``ConfigError``, key ``ledger.checkpoint_dir``) a checkpoint directory equal
    to, or inside, the SQLite database's directory: a restore of that directory would reach
    the checkpoints meant to catch it. ``sentinel run`` checks it at start."""
    _check_dirs(settings, settings.resolve(settings.ledger.checkpoint_dir))


def _check_dirs(settings: Settings, checkpoint_dir: Path) -> None:
    url = settings.ledger_url
    if url.startswith("sqlite:///"):
        db_dir = Path(url.removeprefix("sqlite:///")).resolve().parent
        cp = checkpoint_dir.resolve()
        if cp == db_dir or db_dir in cp.parents:
            raise ConfigError(
                str(settings.path),
                "must not be the database's directory or inside it (a restore would reach it)",
                key="ledger.checkpoint_dir",
            )


def origin_from_settings(settings: Settings) -> str:
    return settings.ledger.origin or default_origin(settings.ledger.log_id)


def anchor_from_settings(settings: Settings) -> Anchor:
    """The ``Anchor`` named by ``[ledger] checkpoint_dir``, ``signing_key`` and ``origin``.

    Never raises: missing key files are listed in ``Anchor.problems`` (and make any
    checkpoint unverifiable).
    """
    directory = settings.resolve(settings.ledger.checkpoint_dir)
    origin = origin_from_settings(settings)
    verifiers, problems = trusted_verifiers(settings.resolve(settings.ledger.signing_key), origin)
    return Anchor(
        CheckpointLog(directory, settings.ledger.log_id), verifiers, origin, tuple(problems)
    )


def load_signer(settings: Settings) -> Signer:
    """The checkpoint signer: ``[ledger] signing_key``, named by the origin.

    Raises ``ConfigError`` (missing, unreadable or non-Ed25519 key).
    """
    key = load_private_key(settings.resolve(settings.ledger.signing_key))
    return Signer(origin_from_settings(settings), key)


def make_checkpoint(ledger: Ledger, settings: Settings) -> SignedCheckpoint:
    """Sign a checkpoint of ``ledger`` now with the configured key, after checking that the
    ledger extends the last checkpoint in the external log (see ``Ledger.checkpoint``).

    Returns the new checkpoint (or the last one, unchanged, when the ledger has not grown and
    the key is the same). Raises ``ConfigError`` (key, directories), ``ConsistencyError``
    (refused: the ledger does not extend the last checkpoint), ``CheckpointError``. A
    checkpoint directory equal to, or inside, the SQLite database's directory is refused
    (``ConfigError``): a restore of the database directory would reach it.

    With ``[ledger] tsa_url`` set, the returned checkpoint's ``timestamp`` tells how its
    RFC 3161 time-stamp went (``tsa.stamp_checkpoint``: requested unless a token is already
    stored, so a checkpoint the TSA missed is retried next time); a TSA failure is never
    raised.
    """
    from sentinel.ledger import tsa

    _check_dirs(settings, settings.resolve(settings.ledger.checkpoint_dir))
    anchor = anchor_from_settings(settings)
    signed = ledger.checkpoint(load_signer(settings), anchor=anchor)
    if not settings.ledger.tsa_url:
        return signed

    def client() -> tsa.TsaClient:
        found = tsa.client_from_settings(settings)
        assert found is not None
        return found

    return replace(signed, timestamp=tsa.stamp_checkpoint(signed, anchor.log, client))


def rotate_key(ledger: Ledger, settings: Settings) -> tuple[SignedCheckpoint, SignedCheckpoint]:
    """Replace the checkpoint signing key, keeping the old public key in the key history.

    Signs a last checkpoint with the old key (after the usual consistency check), appends the
    old vkey to ``<signing_key>.history``, writes a new Ed25519 key (PKCS#8 PEM, mode 0600,
    replaced atomically) and its ``.pub.pem``, and signs a checkpoint with the new key.
    Returns ``(last checkpoint by the old key, first by the new key)``. Raises as
    ``make_checkpoint``.
    """
    old = make_checkpoint(ledger, settings)
    key_path = settings.resolve(settings.ledger.signing_key)
    history = key_history_path(key_path)
    with history.open("a", encoding="ascii") as handle:
        handle.write(f"{old.vkey}\n")
        handle.flush()
        os.fsync(handle.fileno())
    new_key = Ed25519PrivateKey.generate()
    pem = new_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = key_path.with_name(key_path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    public = new_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pub_path = public_key_path(key_path)
    pub_tmp = pub_path.with_name(pub_path.name + ".new")
    pub_tmp.write_bytes(public)
    tmp.replace(key_path)
    pub_tmp.replace(pub_path)
    new = make_checkpoint(ledger, settings)
    return old, new
