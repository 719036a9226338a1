"""C2SP signed notes with Ed25519 (https://c2sp.org/signed-note, golang.org/x/mod/sumdb/note).

A signed note is UTF-8 text ending in a newline, a blank line, then one line per signature::

    <text ending in \\n>
    \\n
    — <key name> <base64(key ID (4 bytes, big-endian) ‖ signature)>\\n

* Ed25519 (signature type ``0x01``): key ID = ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]``;
  the signature (RFC 8032, 64 bytes) is over the text bytes.
* Verifier key (vkey): ``<name>+<key ID, 8 lowercase hex>+<base64(0x01 ‖ 32-byte public key)>``.
* Signer key (skey, Go's format): ``PRIVATE+KEY+<name>+<key ID>+<base64(0x01 ‖ 32-byte seed)>``.

``open_note`` follows ``sumdb/note.Open``: a signature by an unknown key is ignored (kept in
``unverified``), a signature by a known key must verify, at least one known key must have
signed, at most 100 signature lines. Errors: ``MalformedNoteError``, ``InvalidSignatureError``,
``UnknownKeyError`` (no known key signed: the material to check it is missing), all
``NoteError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sentinel.errors import SentinelError

ALG_ED25519 = 0x01
#: most signature lines accepted in one note (sumdb/note's limit)
MAX_SIGNATURES = 100
#: largest note accepted, bytes
MAX_NOTE_BYTES = 1 << 20
_SIG_PREFIX = "\u2014 "  # em dash, space
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


class NoteError(SentinelError):
    """A signed note or key cannot be used."""

    exit_code = 1


class MalformedNoteError(NoteError):
    """The note or key text does not follow the signed-note format."""


class InvalidSignatureError(NoteError):
    """A signature by a known key does not verify: the note was altered or forged."""


class UnknownKeyError(NoteError):
    """No signature in the note is by a known key (unverifiable, not proven false)."""


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c in name for c in " +\n") and not _CONTROL.search(name)


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte Ed25519 key ID: ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedNoteError(f"{what}: not standard base64") from exc


def _split_key(text: str, what: str) -> tuple[str, bytes, bytes]:
    parts = text.split("+", 2)  # the base64 key may itself contain "+"
    if len(parts) != 3:
        raise MalformedNoteError(f"{what}: expected name+keyid+base64")
    name, hash_hex, b64 = parts
    if not _valid_name(name):
        raise MalformedNoteError(f"{what}: bad key name {name!r}")
    if not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
        raise MalformedNoteError(f"{what}: key ID must be 8 lowercase hex digits")
    raw = _b64decode(b64, what)
    if not raw:
        raise MalformedNoteError(f"{what}: empty key")
    if raw[0] != ALG_ED25519:
        raise MalformedNoteError(
            f"{what}: unsupported signature type 0x{raw[0]:02x} (Ed25519 only)"
        )
    if len(raw) != 33:
        raise MalformedNoteError(f"{what}: Ed25519 key must be 32 bytes")
    return name, bytes.fromhex(hash_hex), raw[1:]


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 verifier key: ``name``, 4-byte ``key_id``, 32-byte ``public`` key."""

    name: str
    key_id: bytes
    public: bytes

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``name+keyid+base64(0x01 ‖ key)``. Raises ``MalformedNoteError``."""
        name, kid, public = _split_key(vkey.strip(), "verifier key")
        if key_id(name, public) != kid:
            raise MalformedNoteError(f"verifier key {name}: key ID does not match the key")
        return cls(name, kid, public)

    @classmethod
    def from_public_key(cls, name: str, key: Ed25519PublicKey) -> Verifier:
        if not _valid_name(name):
            raise MalformedNoteError(f"bad key name {name!r}")
        public = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(name, key_id(name, public), public)

    @property
    def vkey(self) -> str:
        """``name+keyid+base64(0x01 ‖ key)``."""
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{b64}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer:
    """An Ed25519 signing key with a key name (the checkpoint origin, usually)."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        self.verifier = Verifier.from_public_key(name, key.public_key())
        self._key = key

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse Go's ``PRIVATE+KEY+name+keyid+base64(0x01 ‖ seed)``. Raises ``NoteError``."""
        prefix = "PRIVATE+KEY+"
        if not skey.startswith(prefix):
            raise MalformedNoteError("signer key must start with PRIVATE+KEY+")
        name, kid, seed = _split_key(skey[len(prefix) :].strip(), "signer key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(seed))
        if signer.verifier.key_id != kid:
            raise MalformedNoteError(f"signer key {name}: key ID does not match the key")
        return signer

    def sign(self, message: bytes) -> bytes:
        """Raw 64-byte Ed25519 signature (RFC 8032)."""
        return self._key.sign(message)


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    base64: str


@dataclass(frozen=True)
class Note:
    """An opened note: its ``text``, the ``verified`` signatures and the ignored ones."""

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


def _check_text(text: str, what: str) -> None:
    if _CONTROL.search(text):
        raise MalformedNoteError(f"{what} contains a control character")


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """``text`` followed by a blank line and one signature line per signer.

    ``text`` must end with a newline and hold no control character but newline. Raises
    ``MalformedNoteError``.
    """
    if not text.endswith("\n"):
        raise MalformedNoteError("note text must end with a newline")
    _check_text(text, "note text")
    if not signers:
        raise NoteError("no signer")
    lines = []
    for signer in signers:
        sig = signer.verifier.key_id + signer.sign(text.encode())
        lines.append(f"{_SIG_PREFIX}{signer.name} {base64.b64encode(sig).decode()}\n")
    return text + "\n" + "".join(lines)


def open_note(note: bytes | str, verifiers: Iterable[Verifier]) -> Note:
    """Parse ``note`` and check its signatures against ``verifiers`` (see module docstring).

    Raises ``MalformedNoteError``, ``InvalidSignatureError`` or ``UnknownKeyError``.
    """
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise MalformedNoteError(f"note larger than {MAX_NOTE_BYTES} bytes")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError("note is not UTF-8") from exc
    if len(note) > MAX_NOTE_BYTES:
        raise MalformedNoteError(f"note larger than {MAX_NOTE_BYTES} characters")
    _check_text(note, "note")
    if not note.endswith("\n"):
        raise MalformedNoteError("note does not end with a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("note has no signature block")
    text, block = note[: split + 1], note[split + 2 :]
    lines = block.split("\n")[:-1]
    if not lines:
        raise MalformedNoteError("note has no signatures")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"more than {MAX_SIGNATURES} signatures")
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen: set[tuple[str, bytes]] = set()
    seen_unknown: set[str] = set()
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise MalformedNoteError(f"not a signature line: {line[:40]!r}")
        parts = line[len(_SIG_PREFIX) :].split(" ")
        if len(parts) != 2 or not _valid_name(parts[0]):
            raise MalformedNoteError(f"malformed signature line: {line[:40]!r}")
        name, b64 = parts
        raw = _b64decode(b64, f"signature by {name}")
        if len(raw) < 5:
            raise MalformedNoteError(f"signature by {name} is too short")
        kid, sig = raw[:4], raw[4:]
        verifier = known.get((name, kid))
        if verifier is None:
            if line not in seen_unknown:
                seen_unknown.add(line)
                unverified.append(Signature(name, kid, b64))
            continue
        if (name, kid) in seen:
            continue
        seen.add((name, kid))
        if not verifier.verify(text.encode(), sig):
            raise InvalidSignatureError(f"signature by {name}+{kid.hex()} does not verify")
        verified.append(Signature(name, kid, b64))
    if not verified:
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in unverified)
        raise UnknownKeyError(f"no signature by a known key (signed by: {names})")
    return Note(text, tuple(verified), tuple(unverified))
