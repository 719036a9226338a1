"""C2SP signed-note and tlog-checkpoint vectors (golang.org/x/mod sumdb/note, derived set)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sentinel.ledger import note
from sentinel.ledger.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint

OUTCOMES: dict[str, type[Exception] | None] = {
    "ok": None,
    "invalid_signature": note.InvalidSignatureError,
    "no_known_signature": note.UnknownKeyError,
    "malformed": note.MalformedNoteError,
}


def _load(corpus: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((corpus / "merkle" / name).read_text())
    return data


def _note_bytes(case: dict[str, Any]) -> bytes:
    if "note_hex" in case:
        return bytes.fromhex(case["note_hex"])
    text: str = case["note"]
    return text.encode()


def _check(case: dict[str, Any], verifiers: list[note.Verifier]) -> note.Note | None:
    want = OUTCOMES[case["want"]]
    if want is None:
        return note.open_note(_note_bytes(case), verifiers)
    with pytest.raises(want):
        note.open_note(_note_bytes(case), verifiers)
    return None


def test_signed_note_vectors(corpus: Path) -> None:
    data = _load(corpus, "signed_note_vectors.json")
    seen = set()
    for case in data["notes"]:
        verifiers = [note.Verifier.from_vkey(v) for v in case["vkeys"]]
        opened = _check(case, verifiers)
        seen.add(case["want"])
        if opened is not None and "verified_names" in case:
            assert sorted(s.name for s in opened.verified) == sorted(case["verified_names"])
    assert seen == set(OUTCOMES)
    assert len(data["notes"]) == 14


def test_vkeys(corpus: Path) -> None:
    keys = _load(corpus, "signed_note_vectors.json")["keys"]
    for vkey in keys["valid_vkeys"]:
        assert note.Verifier.from_vkey(vkey).vkey == vkey
    for bad in keys["invalid_vkeys"]:
        with pytest.raises(note.MalformedNoteError):
            note.Verifier.from_vkey(bad["vkey"])
    for ecdsa in keys["ecdsa_vkeys_type_0x02"]:  # only Ed25519 is supported: a clear error
        with pytest.raises(note.MalformedNoteError, match="unsupported signature type 0x02"):
            note.Verifier.from_vkey(ecdsa["vkey"])


def test_sign_reproduces_go_output(corpus: Path) -> None:
    signer_case = _load(corpus, "signed_note_vectors.json")["keys"]["signer"]
    signer = note.Signer.from_skey(signer_case["skey"])
    assert note.sign_note(signer_case["text"], [signer]) == signer_case["want_signed_note"]
    with pytest.raises(note.MalformedNoteError):
        note.sign_note("no final newline", [signer])
    with pytest.raises(note.MalformedNoteError):
        note.sign_note("bell \x07\n", [signer])


def test_checkpoint_vectors(corpus: Path) -> None:
    data = _load(corpus, "checkpoint_vectors_derived.json")
    log_vkey = note.Verifier.from_vkey(data["log_vkey"])
    signer = note.Signer.from_skey(data["log_skey_TEST_ONLY"])
    assert signer.vkey == data["log_vkey"]
    ok = 0
    for case in data["cases"]:
        verifiers = [note.Verifier.from_vkey(v) for v in case["vkeys"]]
        opened = _check(case, verifiers)
        if opened is None:
            continue
        ok += 1
        cp = parse_checkpoint(opened.text)
        assert cp.origin == data["log_origin"]
        if "tree_size" in case:
            assert cp.size == case["tree_size"]
            assert cp.root.hex() == case["root_hex"]
            # Ed25519 is deterministic: Sentinel's signer produces the same note
            if not cp.extensions:
                assert note.sign_note(cp.text(), [signer]) == case["note"]
        assert open_checkpoint(case["note"], [log_vkey]) == cp
    assert ok >= 6


@pytest.mark.parametrize(
    "text",
    [
        "origin\n8\n",  # no root
        "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",  # empty origin
        "o\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",  # leading zero
        "o\n-1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        "o\n8\nXcnaeacGWamtVZy3Ad7Zoqudgjq=\n",  # short root
        "o\n8\n!!!!\n",
        "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n",  # empty extension
        "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",  # no final newline
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(note.MalformedNoteError):
        parse_checkpoint(text)


def test_checkpoint_round_trip() -> None:
    cp = Checkpoint("sentinel/x", 12345, bytes(range(32)), ("ext one",))
    assert parse_checkpoint(cp.text()) == cp
