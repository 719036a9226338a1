"""`sentinel audit parse|ingest` on the real distribution corpus, ingest on both ledger backends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli.main import cli
from sentinel.ledger import Ledger

LIVE = "registry-logs/distribution-live"


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_parse_json_lines_with_design_names(corpus: Path) -> None:
    code, out, err = run(
        "audit",
        "parse",
        "--format",
        "distribution-json",
        "--source",
        "reg-a",
        "--json",
        str(corpus / LIVE / "registry-app-json.log"),
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 63
    assert set(rows[0]) >= {
        "ts",
        "source",
        "action",
        "outcome",
        "actor",
        "actor_verified",
        "client_ip",
        "client_ip_source",
        "raw_sha256",
        "src_pos",
    }
    assert {r["source"] for r in rows} == {"reg-a"}
    assert sum(r["action"] == "auth_failure" for r in rows) == 2


def test_parse_notifications_all_shapes_deduplicated(corpus: Path, tmp_path: Path) -> None:
    received = corpus / LIVE / "notifications-received.jsonl"
    compact = tmp_path / "envelopes.jsonl"  # one compact envelope per line
    compact.write_text(
        "".join(
            json.dumps(json.loads(json.loads(line)["body"])) + "\n"
            for line in received.read_text().splitlines()[:3]
        )
    )
    code, out, err = run(
        "audit",
        "parse",
        "--format",
        "distribution-notifications",
        "--json",
        str(received),
        str(corpus / LIVE / "notification-mount.json"),
        str(compact),
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 27 and len({r["event_id"] for r in rows}) == 27
    assert "4 duplicate(s) dropped" in err
    code, out, _ = run(
        "audit",
        "parse",
        "--format",
        "distribution-notifications",
        str(corpus / LIVE / "notification-pull-forged-xff.json"),
    )
    assert code == 0
    assert "pull" in out and "203.0.113.7(header)" in out and "ci-bot" in out


def test_parse_unparsed_exit_1_and_reported(corpus: Path, tmp_path: Path) -> None:
    log = tmp_path / "mixed.log"
    lines = (corpus / LIVE / "registry-access-combined.log").read_bytes().splitlines()
    log.write_bytes(lines[0] + b"\ngarbage line\n" + lines[1])  # last line unterminated
    code, out, err = run("audit", "parse", "--format", "distribution-access", "--json", str(log))
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert [("unparsed" in r) for r in rows] == [False, True, False]
    assert rows[1]["unparsed"]["raw_kept"] == "garbage line"
    # the summary says where the first one is (file and byte offset), not only how many
    where = f"{log} byte {len(lines[0]) + 1}"
    assert f"1 unparsed input(s): not a combined-log-format line (1, first at {where})" in err
    code, out, err = run("audit", "parse", "--format", "distribution-access", str(log))
    assert code == 1 and len(out.splitlines()) == 2


def test_parse_errors_exit_2(tmp_path: Path) -> None:
    code, _, err = run("audit", "parse", "--format", "distribution-json", str(tmp_path / "nope"))
    assert code == 2 and "cannot open" in err
    code, _, err = run("audit", "parse", "--format", "harbor", str(tmp_path))
    assert code == 2


def test_ingest_appends_once(corpus: Path, tmp_path: Path, ledger_url: str) -> None:
    cfg = tmp_path / "sentinel.toml"
    cfg.write_text(f'[sentinel]\ninstance = "reg-1"\n[ledger]\nurl = "{ledger_url}"\n')
    log = tmp_path / "app.log"
    shutil.copy(corpus / LIVE / "registry-app-json.log", log)
    with log.open("ab") as f:
        f.write(b"{broken\n")
    received = str(corpus / LIVE / "notifications-received.jsonl")
    args = ["--config", str(cfg), "audit", "ingest"]
    code, out, err = run(*args, "--format", "distribution-json", str(log))
    assert code == 1, err  # one unparsed line, still recorded
    assert out.strip() == "appended 64 record(s), 0 duplicate(s) skipped"
    code, out, _ = run(*args, "--format", "distribution-notifications", received)
    assert code == 0 and out.strip() == "appended 27 record(s), 0 duplicate(s) skipped"
    # re-running both is idempotent (dedup keys: event id, or file position + hash)
    code, out, _ = run(*args, "--format", "distribution-notifications", received)
    assert out.strip() == "appended 0 record(s), 27 duplicate(s) skipped"
    code, out, _ = run(*args, "--format", "distribution-json", str(log))
    assert out.strip() == "appended 0 record(s), 64 duplicate(s) skipped"
    with Ledger.open(ledger_url) as led:
        records = list(led.query())
        assert led.verify().ok
    assert len(records) == 91
    kinds = [r["kind"] for r in records]
    assert kinds.count("unparsed") == 1 and kinds.count("audit_event") == 90
    pushes = [
        r["data"]
        for r in records
        if r["kind"] == "audit_event"
        and r["data"]["action"] == "push"
        and r["data"]["actor_verified"]
    ]
    assert len(pushes) == 9 and {p["source"] for p in pushes} == {"reg-1"}


def test_parse_reads_gzip_and_stdin_like_the_plain_file(corpus: Path, tmp_path: Path) -> None:
    import gzip

    plain = corpus / LIVE / "registry-app-json.log"
    packed = tmp_path / "registry-app-json.log.1.gz"  # logrotate `compress`
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    expected = run("audit", "parse", "--format", "distribution-json", str(plain))
    expected_json = run("audit", "parse", "--format", "distribution-json", "--json", str(plain))[1]
    assert expected[0] == 0 and len(expected[1].splitlines()) == 63
    assert run("audit", "parse", "--format", "distribution-json", str(packed))[:2] == expected[:2]
    res = CliRunner().invoke(
        cli, ["audit", "parse", "--format", "distribution-json", "-"], input=plain.read_bytes()
    )
    assert (res.exit_code, res.stdout) == expected[:2]
    damaged = tmp_path / "cut.log.gz"
    damaged.write_bytes(packed.read_bytes()[:3000])  # cut short: lines before it still count
    code, out, err = run("audit", "parse", "--format", "distribution-json", "--json", str(damaged))
    rows = [json.loads(line) for line in out.splitlines()]
    events, kept = rows[:-1], rows[-1]["unparsed"]
    assert code == 1 and 0 < len(events) < 63 and all("unparsed" not in r for r in events)
    plain_rows = [json.loads(line) for line in expected_json.splitlines()[: len(events)]]
    for got, want in zip(events, plain_rows, strict=True):  # same records; another file name
        assert {**got, "src_pos": ""} == {**want, "src_pos": ""}
    assert kept["reason"].startswith("damaged gzip stream") and "damaged gzip" in err
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"\x00" * 40)  # damaged at its very start: an error
    code, _, err = run("audit", "parse", "--format", "distribution-json", str(garbage))
    assert code == 2 and "read error" in err


def test_gzip_bomb_is_cut_at_the_expansion_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip

    from sentinel.audit.files import MAX_GZIP_RATIO
    from sentinel.audit.lines import GzipStream

    # the 64 MiB floor scaled down to 4 MiB, so the test reads 4 MiB of newlines, not 64
    monkeypatch.setattr(GzipStream, "FLOOR", 4 << 20)
    bomb = tmp_path / "bomb.log.gz"
    with gzip.open(bomb, "wb") as fh:  # ~30 KB of gzip holding 32 MiB of newlines
        for _ in range(32):
            fh.write(b"\n" * (1 << 20))
    limit = max(bomb.stat().st_size * MAX_GZIP_RATIO, 4 << 20)  # ~6.5 MB, far below 32 MiB
    code, out, _ = run("audit", "parse", "--format", "distribution-json", "--json", str(bomb))
    assert code == 1
    (kept,) = [json.loads(line)["unparsed"] for line in out.splitlines()]
    assert "expansion limit" in kept["reason"]
    offset = int(kept["src_pos"].rsplit(":", 1)[1])
    assert limit <= offset <= limit + (1 << 20)


def test_ingest_from_stdin_twice_appends_once_and_empty_files_are_reported(
    corpus: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    data = (corpus / LIVE / "registry-app-json.log").read_bytes()
    args = ["audit", "ingest", "--ledger", url, "--format", "distribution-json", "-"]
    first = CliRunner().invoke(cli, args, input=data)
    again = CliRunner().invoke(cli, args, input=data)  # the same bytes: the content identity
    assert first.exit_code == 0 and first.stdout.startswith("appended 63 record(s)")
    assert again.exit_code == 0 and "appended 0 record(s), 63 duplicate(s)" in again.stdout
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    code, out, err = run("audit", "parse", "--format", "distribution-json", str(empty))
    assert code == 0 and out == "" and f"{empty}: no audit records found" in err


def test_a_pipe_path_is_read_like_stdin(corpus: Path) -> None:
    import subprocess
    import sys

    exe = str(Path(sys.executable).with_name("sentinel"))
    data = (corpus / LIVE / "registry-app-json.log").read_bytes()
    done = subprocess.run(  # /dev/stdin is then a pipe, not a regular file
        [exe, "audit", "parse", "--format", "distribution-json", "/dev/stdin"],
        input=data,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 63


def test_wrong_format_gets_a_note(corpus: Path) -> None:
    combined = corpus / LIVE / "registry-access-combined.log"  # a distribution access log
    code, out, err = run("audit", "parse", "--format", "mlflow-access", str(combined))
    assert code == 0 and len(out.splitlines()) == 63
    assert "none of the 63 events is a registry action" in err and "--format" in err
    _, _, err = run("audit", "parse", "--format", "distribution-access", str(combined))
    assert "note" not in err


def test_text_output_escapes_control_characters_and_shows_assumed_zone(
    corpus: Path, tmp_path: Path
) -> None:
    line = next(
        raw
        for raw in (corpus / LIVE / "registry-app-json.log").read_text().splitlines()
        if '"auth.user.name"' in raw
    )
    record = json.loads(line)
    record["auth.user.name"] = "root\r\x1b[2JFAKE\u202eevil\u2028"  # rewrites/disguises
    log = tmp_path / "forged.log"
    log.write_text(json.dumps(record) + "\n")
    code, out, _ = run("audit", "parse", "--format", "distribution-json", str(log))
    assert code == 0 and not any(c in out for c in "\r\x1b\u202e\u2028")
    assert "root\\r\\x1b[2JFAKE\\u202eevil\\u2028" in out
    uvicorn = corpus / "registry-logs/mlflow-live/mlflow-3.17.2-uvicorn-access.log"
    _, out, _ = run(
        "audit", "parse", "--format", "mlflow-access", "--zone", "Europe/Berlin", str(uvicorn)
    )
    assert out and all(row.endswith("(zone assumed: Europe/Berlin)") for row in out.splitlines())
