"""`sentinel audit` commands: parse registry logs/notifications (dry run) and ingest them.

``parse`` is the dry run a user points at their own logs; ``ingest`` appends the same records
to the ledger. Inputs: see ``sentinel.audit.files`` (line formats; for payload formats —
``distribution-notifications``, ``harbor-webhook``, ``minio-audit``, ``minio-notification``,
``mlflow-webhook`` — one payload per file (pretty-printed or not), one per line, or Sentinel's
capture records ``{"received_at", "path", "headers", "body"}`` whose ``body`` is the payload).
``--zone``, ``--mapping`` and ``--webhook-secret-file`` build the format's
``ParserOptions``.

Unparsed input is never dropped: it is counted and summarised on stderr (count and the first
reasons); ``parse --json`` also prints each one as ``{"unparsed": {...}}`` on stdout, and
``ingest`` appends it to the ledger as an ``unparsed`` record.

Exit codes: 0 everything parsed; 1 some input was unparsed (the rest was still printed or
ingested); 2 error (missing or unreadable file, bad configuration, ledger failure).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import click

from sentinel.audit.dedup import Deduplicator
from sentinel.audit.files import STDIN, parse_file
from sentinel.audit.parsers import ParserOptions, build_parser, make_options
from sentinel.audit.parsers.interface import flush_parser
from sentinel.audit.records import to_ledger_batch
from sentinel.cli.common import EXIT_FINDINGS, EXIT_OK, CliState, handle_errors, pass_state
from sentinel.config import AUDIT_FORMATS
from sentinel.errors import ConfigError
from sentinel.records import AuditEvent, Unparsed
from sentinel.timefmt import format_ts

#: records per ``Ledger.append`` call, i.e. per durable commit (the most the ledger accepts).
#: Large enough that the commit's fsync, per-statement costs and the random index pages each
#: commit rewrites stay a small share of the ingest (bench/bench_ingest.py); memory stays
#: bounded by one batch (about 20 MB).
INGEST_BATCH = 10_000

_format_option = click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(AUDIT_FORMATS),
    help="Input format.",
)
_source_option = click.option(
    "--source",
    default=None,
    help="Registry instance id written into each event (default: config sentinel.instance, "
    "else 'registry').",
)
_zone_option = click.option(
    "--zone",
    default="UTC",
    show_default=True,
    help="IANA zone of times the source writes without one (syslog headers, uvicorn); "
    "events then say which zone was assumed.",
)
_mapping_option = click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="jsonmap: field-mapping file (YAML/JSON). Default: Sentinel's own event JSON.",
)
_secret_option = click.option(
    "--webhook-secret-file",
    "secret_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="mlflow-webhook: file holding the webhook secret; every delivery must then verify: "
    "captured deliveries whose signature does not verify, and bare bodies (no signature "
    "to verify), become unparsed.",
)
_files_argument = click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
)


@click.group()
def audit() -> None:
    """Audit trail: registry logs and notifications as normalized events."""


def _source(state: CliState, source: str | None) -> str:
    if source:
        return source
    if state.config_path is not None:
        return state.settings().sentinel.instance
    return "registry"


class _Tally:
    """Counts unparsed input and remembers, per kind of reason, the first one in full and
    where it was (file and byte offset), for the stderr summary."""

    def __init__(self) -> None:
        self.unparsed = 0
        self.reasons: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def add(self, item: Unparsed) -> None:
        self.unparsed += 1
        kind = item.reason.split(": ", 1)[0]
        self.reasons[kind] += 1
        if kind not in self.first:
            detail = f": {item.reason}" if item.reason != kind else ""
            self.first[kind] = f"first at {_where(item.src_pos)}{detail}"

    def report(self) -> None:
        if self.unparsed:
            top = "; ".join(f"{r} ({n}, {self.first[r]})" for r, n in self.reasons.most_common(3))
            click.echo(f"sentinel: {self.unparsed} unparsed input(s): {_safe(top)}", err=True)


def _where(src_pos: str) -> str:
    """``"<path> byte <offset>"`` from a file position ``<path>@<dev>:<ino>.<gen>:<offset>``."""
    path, at, rest = src_pos.rpartition("@")
    if at and rest.count(":") >= 2:
        return f"{path} byte {rest.rsplit(':', 1)[1]}"
    return src_pos


def _safe(text: str) -> str:
    """``text`` with every non-printable character (``str.isprintable``: controls such as
    ``\r`` and ESC, bidi overrides such as U+202E, line separators, zero-width format
    characters) shown as a Python escape, for a terminal: a log field must never move the
    cursor or disguise what is printed (a ``\r`` in a claimed user name could print a forged
    line over a real one; U+202E can make ``evil`` read as ``live``)."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def parser_options(
    zone: str = "UTC", mapping_path: Path | None = None, secret_path: Path | None = None
) -> ParserOptions:
    """``ParserOptions`` from command-line values. Raises ``ConfigError``."""
    secret: bytes | None = None
    if secret_path is not None:
        try:
            secret = secret_path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(str(secret_path), f"cannot read: {exc.strerror or exc}") from exc
        if not secret:
            raise ConfigError(str(secret_path), "webhook secret file is empty")
    return make_options(zone, mapping_path, secret)


def _records(
    files: tuple[Path, ...], fmt: str, source: str, options: ParserOptions
) -> Iterator[AuditEvent | Unparsed]:
    parser = build_parser(fmt, options)
    for path in files:
        n = 0
        held = getattr(parser, "pending", 0)  # k8s-audit: requests held at a non-final stage
        for n, item in enumerate(parse_file(path, parser, source, finish=False), 1):  # noqa: B007
            yield item
        if n == 0 and getattr(parser, "pending", 0) == held:
            name = "standard input" if path == STDIN else str(path)
            click.echo(f"sentinel: {_safe(name)}: no audit records found", err=True)
    yield from flush_parser(parser, source)  # k8s requests seen only at a non-final stage


#: actions that say the format understood what the request did to a model or the registry
_REGISTRY_ACTIONS = frozenset(
    {"push", "pull", "delete", "untag", "mount", "tag", "register", "stage_change", "login"}
)


def _hint_format(fmt: str, actions: Counter[str]) -> None:
    """A note on stderr when a sizeable input gave events but not one registry action (only
    ``other``, refusals, failures): the lines fitted the format's shape (the combined log
    format is shared by many servers) without meaning anything in it — often the wrong
    ``--format``."""
    total = sum(actions.values())
    if total >= 10 and not _REGISTRY_ACTIONS & actions.keys():
        click.echo(
            f"sentinel: note: none of the {total} events is a registry action "
            f"({', '.join(sorted(actions))}); if this log is not from a {fmt} source, "
            "check --format",
            err=True,
        )


def _human(e: AuditEvent) -> str:
    actor = e.actor or "-"
    if e.actor and not e.actor_verified:
        actor += "(claimed)"
    what = e.artifact or "-"
    if e.reference:
        what += f":{e.reference}"
    if e.digest:
        what += f"@{e.digest[:19]}"
    ip = e.client_ip or "-"
    if e.client_ip_source == "header":
        ip += "(header)"
    http = f"{e.http_method or '-'} {e.http_status or '-'}"
    zone = f" (zone assumed: {e.ts_zone_assumed})" if e.ts_zone_assumed else ""
    return _safe(
        f"{format_ts(e.ts)} {e.action:<13} {e.outcome:<7} {actor:<16} {what} client={ip} "
        f"{http}{zone}"
    )


@audit.command("parse")
@_format_option
@_source_option
@_zone_option
@_mapping_option
@_secret_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event (DESIGN names).")
@_files_argument
@pass_state
@handle_errors
def parse(
    state: CliState,
    fmt: str,
    source: str | None,
    zone: str,
    mapping_path: Path | None,
    secret_path: Path | None,
    as_json: bool,
    files: tuple[Path, ...],
) -> None:
    """Print the normalized, deduplicated events in FILE... (a dry run: nothing is stored).

    \b
    FILE may be gzip-compressed (read decompressed) or - for standard input.
    Without --json: one readable line per event (control characters escaped; "zone
    assumed: Z" when the source gave no zone). With --json: one AuditEvent JSON object per
    line, and {"unparsed": {...}} lines for input that could not be parsed.
    Exit codes: 0 all parsed; 1 some input unparsed; 2 error (missing file...).
    """
    src = _source(state, source)
    options = parser_options(zone, mapping_path, secret_path)
    dedup = Deduplicator()
    tally = _Tally()
    actions: Counter[str] = Counter()
    for item in dedup.filter(_records(files, fmt, src, options)):
        if isinstance(item, Unparsed):
            tally.add(item)
            if as_json:
                click.echo(json.dumps({"unparsed": item.to_json()}, ensure_ascii=False))
            continue
        actions[item.action] += 1
        if as_json:
            click.echo(json.dumps(item.to_json(), ensure_ascii=False))
        else:
            click.echo(_human(item))
    if dedup.dropped:
        click.echo(f"sentinel: {dedup.dropped} duplicate(s) dropped", err=True)
    _hint_format(fmt, actions)
    tally.report()
    raise SystemExit(EXIT_FINDINGS if tally.unparsed else EXIT_OK)


@audit.command("ingest")
@_format_option
@_source_option
@_zone_option
@_mapping_option
@_secret_option
@click.option(
    "--ledger",
    "ledger_url",
    default=None,
    metavar="URL_OR_PATH",
    help="The ledger database: a SQLAlchemy URL (sqlite:///…, postgresql://…) or a SQLite "
    "file path, as for the ledger commands (default: [ledger] url).",
)
@_files_argument
@pass_state
@handle_errors
def ingest(
    state: CliState,
    fmt: str,
    source: str | None,
    zone: str,
    mapping_path: Path | None,
    secret_path: Path | None,
    ledger_url: str | None,
    files: tuple[Path, ...],
) -> None:
    """Append the events in FILE... to the ledger (redeliveries and re-runs are skipped).

    \b
    Every event becomes an "audit_event" record, every unparsed input an "unparsed" record.
    FILE may be gzip-compressed, or - for standard input (the same bytes piped in again
    are recognised: dedup keys rest on the content, not the file).
    Exit codes: 0 all parsed; 1 some input unparsed (still recorded); 2 error.
    """
    from sentinel.ledger import Ledger
    from sentinel.ledger.urls import database_url

    src = _source(state, source)
    options = parser_options(zone, mapping_path, secret_path)
    url = database_url(ledger_url) if ledger_url else state.settings().ledger_url
    log_id = state.settings().ledger.log_id if state.config_path is not None else "sentinel"
    tally = _Tally()
    appended = duplicates = 0
    with Ledger.open(url, log_id=log_id) as ledger:
        batch: list[AuditEvent | Unparsed] = []

        def flush() -> None:
            nonlocal appended, duplicates
            records, keys = to_ledger_batch(batch)
            result = ledger.append(records, dedup_keys=keys)
            appended += result.appended
            duplicates += result.duplicates
            batch.clear()

        for item in _records(files, fmt, src, options):
            if isinstance(item, Unparsed):
                tally.add(item)
            batch.append(item)
            if len(batch) >= INGEST_BATCH:
                flush()
        if batch:
            flush()
    click.echo(f"appended {appended} record(s), {duplicates} duplicate(s) skipped")
    tally.report()
    raise SystemExit(EXIT_FINDINGS if tally.unparsed else EXIT_OK)
