"""The read-only ledger commands for an auditor: `prove`, `consistency`, `export`, `stats` and
printing `checkpoint` on a copy of the database and checkpoint log, without the operator's
configuration; the output is the operator's, and neither the copy nor the checkpoint log is
changed (SQLite file hashed; PostgreSQL rows hashed). Making a checkpoint still needs the
configuration."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from sentinel.cli.main import cli
from sentinel.ledger import Ledger, merkle
from tests.cli.test_ledger_verify_auditor import _auditor_copy, _site
from tests.ledger.helpers import audit_record


def _tree_digest(path: Path) -> dict[str, str]:
    """SHA-256 of every file under ``path`` (a new file, e.g. a lock or -wal, shows too)."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _rows_digest(url: str) -> str:
    """SHA-256 over every row of every table of a PostgreSQL database, in a fixed order."""
    h = hashlib.sha256()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            for table in sorted(sa.inspect(conn).get_table_names()):
                rows = conn.exec_driver_sql(f'SELECT * FROM "{table}"').all()
                h.update(table.encode() + repr(sorted(map(repr, rows))).encode())
    finally:
        engine.dispose()
    return h.hexdigest()


def _ok(res: Result) -> str:
    assert res.exit_code == 0, (res.output, res.exception)
    return res.stdout


def test_auditor_reads_like_the_operator_and_changes_nothing(
    ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, url = _site(tmp_path, ledger_url)  # 40 records; checkpoints at 30 (two keys), 40
    ledger, opts = _auditor_copy(tmp_path, cfg.parent, url)
    box = tmp_path / "auditor"
    before = (_tree_digest(box), _rows_digest(ledger) if "://" in ledger else None)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)  # no ./sentinel.toml
    runner = CliRunner()
    db = ["--ledger", ledger]
    cps = ["--checkpoint-dir", opts[1]]
    operator = ["--config", str(cfg), "ledger"]

    def both(args: list[str], extra: list[str]) -> str:
        mine = _ok(runner.invoke(cli, ["ledger", *args, *extra]))
        assert mine == _ok(runner.invoke(cli, [*operator, *args])), args
        return mine

    logged = [json.loads(line) for line in (box / "checkpoints").glob("*.jsonl").__next__().open()]
    roots = {cp["size"]: cp["root"] for cp in logged}
    assert sorted(roots) == [30, 40]

    # inclusion of record 17 in the checkpointed trees of 40 and of 30 records
    proof = json.loads(both(["prove", "17", "--json"], db))
    assert (proof["seq"], proof["size"], proof["root"]) == (17, 40, roots[40])
    leaf = bytes.fromhex(proof["leaf_hash"])
    assert leaf == hashlib.sha256(b"\x00" + proof["record"].encode()).digest()
    path = [bytes.fromhex(p) for p in proof["path"]]
    merkle.verify_inclusion(17, 40, leaf, path, bytes.fromhex(roots[40]))
    text = both(["prove", "17", "--size", "30"], db)
    assert text.splitlines()[-1] == f"root {roots[30]}"

    # consistency between the two checkpoint sizes, and from 30 to the whole ledger
    cons = json.loads(both(["consistency", "30", "40", "--json"], db))
    assert (cons["old_root"], cons["new_root"]) == (roots[30], roots[40])
    merkle.verify_consistency(
        30,
        40,
        bytes.fromhex(roots[30]),
        bytes.fromhex(roots[40]),
        [bytes.fromhex(p) for p in cons["path"]],
    )
    assert both(["consistency", "30"], db).splitlines()[1] == f"new size 40 root {roots[40]}"

    # a window of records 5..24 (event times 10:00:05 to 10:00:24), the bytes that were hashed
    window = ["export", "--from", "2026-03-01T10:00:05Z", "--to", "2026-03-01T10:00:25Z"]
    lines = both(window, db).splitlines()
    assert len(lines) == 20
    assert lines[12] == proof["record"]  # record 17
    assert all(json.loads(x)["data"]["request_id"] == f"req-{i}" for i, x in enumerate(lines, 5))

    # the latest checkpoint: the note byte for byte
    note = both(["checkpoint"], cps)
    assert note == logged[-1]["note"] and note.splitlines()[1] == "40"
    assert json.loads(both(["checkpoint", "--json"], cps))["root"] == roots[40]

    # stats: the same but for the URL shown
    mine = json.loads(_ok(runner.invoke(cli, ["ledger", "stats", "--json", *db])))
    theirs = json.loads(_ok(runner.invoke(cli, [*operator, "stats", "--json"])))
    assert ledger in mine.pop("url") and theirs.pop("url")
    assert mine == theirs and mine["size"] == 40

    assert (_tree_digest(box), _rows_digest(ledger) if "://" in ledger else None) == before


def test_without_configuration_each_command_names_what_it_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for args in (["prove", "0"], ["consistency", "1"], ["export"], ["stats"]):
        res = runner.invoke(cli, ["ledger", *args])
        assert res.exit_code == 2, res.output
        line = res.output.strip()
        assert "no configuration file found" in line and "--ledger URL_OR_PATH" in line, line
        assert "--checkpoint-dir" not in line and "--public-key" not in line, line
    res = runner.invoke(cli, ["ledger", "checkpoint"])
    assert res.exit_code == 2
    assert "--checkpoint-dir DIR" in res.output and "--ledger" not in res.output, res.output
    # a copy that is not there is not created
    res = runner.invoke(cli, ["ledger", "prove", "0", "--ledger", "x.db"])
    assert res.exit_code == 2 and "no such database file" in res.output, res.output
    assert not (tmp_path / "x.db").exists()
    # an empty checkpoint directory: no checkpoint yet, nothing created
    (tmp_path / "cp").mkdir()
    res = runner.invoke(cli, ["ledger", "checkpoint", "--checkpoint-dir", "cp"])
    assert res.exit_code == 2 and "no checkpoint in" in res.output, res.output
    assert list((tmp_path / "cp").iterdir()) == []


def test_making_a_checkpoint_still_needs_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, url = _site(tmp_path, "sqlite")
    _ledger, opts = _auditor_copy(tmp_path, cfg.parent, url)
    box = tmp_path / "auditor"
    before = _tree_digest(box)
    runner = CliRunner()
    res = runner.invoke(cli, ["--config", str(cfg), "ledger", "checkpoint", "--sign", *opts[:2]])
    assert res.exit_code == 2 and "--sign" in res.output, res.output
    assert "--checkpoint-dir" in res.output, res.output
    monkeypatch.chdir(box)
    res = runner.invoke(cli, ["ledger", "checkpoint", "--sign"])
    assert res.exit_code == 2 and "no configuration file" in res.output, res.output
    assert _tree_digest(box) == before
    # the operator still signs with the configuration
    res = runner.invoke(cli, ["--config", str(cfg), "ledger", "checkpoint", "--sign", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["size"] == 40, res.output


def test_a_log_id_with_no_record_names_the_logs_present(
    ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong --log-id on a database holding other logs is an error (exit 2) naming the logs
    there, for every reading command; an empty database is still an empty, valid log."""
    cfg, url = _site(tmp_path, ledger_url)
    ledger, opts = _auditor_copy(tmp_path, cfg.parent, url)
    with Ledger.open(ledger if "://" in ledger else f"sqlite:///{ledger}", log_id="b2") as led:
        led.append([audit_record(0)])
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    db = ["--ledger", ledger, "--log-id", "sentinel2"]
    for args in (
        ["verify", *opts],
        ["stats"],
        ["stats", "--json"],
        ["export"],
        ["prove", "0"],
        ["consistency", "1"],
    ):
        res = runner.invoke(cli, ["ledger", *args, *db])
        assert res.exit_code == 2, (args, res.output)
        assert "no record of log 'sentinel2' (--log-id)" in res.stderr, (args, res.output)
        assert "the database holds the logs 'b2', 'sentinel'" in res.stderr, res.output
    # the configured log id is named as such
    res = runner.invoke(cli, ["--config", str(cfg), "ledger", "stats", "--ledger", ledger])
    assert res.exit_code == 0, res.output
    cfg.write_text(cfg.read_text().replace('log_id = "sentinel"', 'log_id = "nosuch"'))
    res = runner.invoke(cli, ["--config", str(cfg), "ledger", "stats", "--ledger", ledger])
    assert res.exit_code == 2 and "'nosuch' ([ledger] log_id)" in res.output, res.output

    # an empty ledger (nothing appended yet) is not an error
    empty = tmp_path / "empty.db"
    Ledger.open(f"sqlite:///{empty}").close()
    res = runner.invoke(cli, ["ledger", "stats", "--ledger", str(empty), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["size"] == 0, res.output


def test_ledger_paths_are_paths_for_every_command(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--ledger PATH with ?, %, spaces and parentheses is a file name for `audit ingest` and
    the ledger commands alike (one helper), shown as given; a directory is named as one."""
    box = tmp_path / "a b (copy)"
    box.mkdir()
    monkeypatch.chdir(box)
    name = "led?x=%41 (copy).db"
    log = corpus / "registry-logs/distribution-live/registry-app-json.log"
    runner = CliRunner()
    res = runner.invoke(
        cli, ["audit", "ingest", "--ledger", name, "--format", "distribution-json", str(log)]
    )
    assert res.exit_code == 0 and res.stdout.startswith("appended 63 record(s)"), res.output
    assert sorted(p.name for p in box.glob("*.db")) == [name]
    for ledger in (name, str(box / name)):
        out = json.loads(_ok(runner.invoke(cli, ["ledger", "stats", "--ledger", ledger, "--json"])))
        assert out["size"] == 63 and out["url"] == f"sqlite:///{box / name}", out
        res = runner.invoke(cli, ["ledger", "export", "--ledger", ledger])
        assert res.exit_code == 0 and len(res.stdout.splitlines()) == 63, res.output
    res = runner.invoke(cli, ["ledger", "prove", "0", "--ledger", name])
    assert res.exit_code == 0, res.output
    (box / "cp").mkdir()
    res = runner.invoke(
        cli,
        [
            "ledger",
            "verify",
            "--ledger",
            name,
            "--checkpoint-dir",
            "cp",
            "--key-history",
            "/dev/null",
        ],
    )
    assert res.exit_code == 2 and "--checkpoint-dir cp: no checkpoint" in res.stderr, res.output
    # an explicit URL stays a URL (its query string is the URL's)
    url = f"sqlite:///{box / 'u.db'}"
    res = runner.invoke(
        cli, ["audit", "ingest", "--ledger", url, "--format", "distribution-json", str(log)]
    )
    assert res.exit_code == 0 and (box / "u.db").is_file(), res.output

    # a directory is one, not a missing database file
    for args in (
        ["ledger", "stats", "--ledger", str(box)],
        [
            "ledger",
            "verify",
            "--ledger",
            ".",
            "--checkpoint-dir",
            "cp",
            "--key-history",
            "/dev/null",
        ],
        ["audit", "ingest", "--ledger", str(box), "--format", "distribution-json", str(log)],
    ):
        res = runner.invoke(cli, args)
        assert res.exit_code == 2 and "is a directory" in res.stderr, (args, res.output)


def test_json_errors_are_one_json_object_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --json, an error (exit 2) prints {"error": ...} on stdout, and its line on stderr."""
    cfg, url = _site(tmp_path, "sqlite")
    ledger, opts = _auditor_copy(tmp_path, cfg.parent, url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    runner = CliRunner()
    cases = {
        ("verify",): "no configuration file found",
        ("verify", "--ledger", ledger, *opts, "--log-id", "x"): "no record of log 'x'",
        ("verify", "--ledger", ledger, "--checkpoint-dir", "empty", *opts[2:]): "no checkpoint in",
        ("stats", "--ledger", str(tmp_path / "none.db")): "no such database file",
        ("prove", "99", "--ledger", ledger): "not in a tree of size 40",
        ("consistency", "50", "--ledger", ledger): "",
        ("checkpoint", "--checkpoint-dir", "empty"): "no checkpoint in",
    }
    for args, why in cases.items():
        res = runner.invoke(cli, ["ledger", *args, "--json"])
        assert res.exit_code == 2, (args, res.output)
        out = json.loads(res.stdout)
        assert list(out) == ["error"] and why in out["error"], (args, out)
        assert out["error"] in res.stderr, (args, res.stderr)
        without = runner.invoke(cli, ["ledger", *args])  # without --json: stderr only
        assert without.exit_code == 2 and without.stdout == "", (args, without.output)


def test_export_takes_a_date_like_report(tmp_path: Path) -> None:
    """`ledger export --from/--to` accept YYYY-MM-DD (midnight UTC), as `report` does."""
    db = tmp_path / "l.db"
    with Ledger.open(f"sqlite:///{db}") as led:
        led.append([audit_record(i, ts=f"2026-03-0{1 + i % 3}T12:00:00Z") for i in range(9)])
    runner = CliRunner()
    base = ["ledger", "export", "--ledger", str(db)]
    by_date = _ok(runner.invoke(cli, [*base, "--from", "2026-03-02", "--to", "2026-03-03"]))
    exact = ["--from", "2026-03-02T00:00:00Z", "--to", "2026-03-03T00:00:00Z"]
    assert by_date == _ok(runner.invoke(cli, [*base, *exact]))
    assert len(by_date.splitlines()) == 3 and all('"2026-03-02T' in x for x in by_date.splitlines())
    res = runner.invoke(cli, [*base, "--from", "2030-01-01"])
    assert res.exit_code == 0 and res.stdout == "" and "no record" in res.stderr, res.output
    for bad in ("2026-03-02T00:00:00", "2026-13-01", "yesterday"):
        res = runner.invoke(cli, [*base, "--from", bad])
        assert res.exit_code == 2 and "or a date (2026-11-29, UTC)" in res.output, res.output
