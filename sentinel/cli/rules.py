"""`sentinel rules` commands: validate audit rule files, dry-run one rule on a sample.

``sentinel rules check [PATH…]`` — every rule file under the paths (files or directories;
default: ``[policy] audit_rules`` from the configuration, else the shipped ``rules/audit``):
one ``ok`` line per good file on stdout, one ``sentinel: error: FILE: KEY: problem`` line per
bad file on stderr (every validation problem of the file, not only the first). Exit 0 when
all are valid, 1 when any is not, 2 when nothing could be checked (a path that does not exist,
no rule files). ``--schema`` prints the JSON Schema of a rule file instead.

``sentinel rules test RULE SAMPLE [--format F]`` — evaluate one rule (a file, or the id of a
rule in the default paths) on a sample: ``--format events`` (default) reads audit events as
JSON lines (the ``data`` of ledger ``audit_event`` records); any audit format (``sentinel audit
parse --format``) parses a raw log or payload file first. Prints one JSON line per finding
(aggregation periods are closed at the end, as at shutdown) and a summary on stderr. Exit 0
(findings are output, not failure), 2 on bad input. ``--geoip``/``--policy`` default to the
configuration's, else no database and the shipped egress policy; a ``foreign_client`` rule run
without a database says so on stderr, since every public address is then an unknown location.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from sentinel.audit.files import parse_file
from sentinel.audit.parsers import PARSERS, get_parser
from sentinel.cli.common import EXIT_FINDINGS, CliState, fail, handle_errors, pass_state
from sentinel.config import Settings
from sentinel.errors import ConfigError, InputError
from sentinel.geo.database import GeoDatabase
from sentinel.policy.audit_rules import (
    AuditRuleEngine,
    CompiledRule,
    iter_events_jsonl,
    load_rule_file,
    load_rules,
    rule_files,
    rule_json_schema,
)
from sentinel.policy.egress import EgressPolicy
from sentinel.records import AuditEvent
from sentinel.resources import rules_dir

EVENTS_FORMAT = "events"


def _settings(state: CliState) -> Settings | None:
    """The configuration when one is given or found; ``None`` when there is none."""
    try:
        return state.settings()
    except ConfigError:
        if state.config_path is not None:
            raise
        return None


def _default_paths(settings: Settings | None) -> list[Path]:
    if settings is not None and settings.policy.audit_rules is not None:
        return [settings.resolve(settings.policy.audit_rules)]
    return [rules_dir() / "audit"]


@click.group()
def rules() -> None:
    """Audit rules: validate rule files, dry-run a rule on sample input."""


@rules.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--schema", is_flag=True, help="Print the JSON Schema of a rule file and exit.")
@pass_state
@handle_errors
def check_cmd(state: CliState, paths: tuple[Path, ...], schema: bool) -> None:
    """Validate audit rule files (default: the configured or shipped rules/audit)."""
    if schema:
        click.echo(json.dumps(rule_json_schema(), indent=2, sort_keys=True))
        return
    targets = list(paths) or _default_paths(_settings(state))
    files = rule_files(targets)
    if not files:
        fail(f"no rule files (*.yaml, *.yml) under {', '.join(map(str, targets))}")
    ruleset = load_rules(targets)
    for rule in ruleset.rules:
        click.echo(f"ok  {rule.path}  ({rule.id}: {rule.model.kind}, {rule.model.severity})")
    for err in ruleset.errors:
        click.echo(f"sentinel: error: {err.diagnostics()}", err=True)
    click.echo(f"{len(ruleset.rules)} valid, {len(ruleset.errors)} invalid rule file(s)", err=True)
    if ruleset.errors:
        raise SystemExit(EXIT_FINDINGS)


def _find_rule(rule: str, settings: Settings | None) -> CompiledRule:
    path = Path(rule)
    if path.is_file():
        return load_rule_file(path)
    ruleset = load_rules(_default_paths(settings))
    for r in ruleset.rules:
        if r.id == rule:
            return r
    raise ConfigError(rule, "no such rule file, and no loaded rule has this id")


@rules.command("test")
@click.argument("rule")
@click.argument("sample", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    default=EVENTS_FORMAT,
    show_default=True,
    type=click.Choice([EVENTS_FORMAT, *sorted(PARSERS)]),
    help="Sample format: audit events as JSON lines, or a raw audit log/payload format.",
)
@click.option(
    "--geoip",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="MaxMind-format database (default: config geoip.database).",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Egress policy (default: config, else the shipped one).",
)
@click.option("--source", default="sample", show_default=True, help="Source id for raw formats.")
@pass_state
@handle_errors
def test_cmd(
    state: CliState,
    rule: str,
    sample: Path,
    fmt: str,
    geoip: Path | None,
    policy_path: Path | None,
    source: str,
) -> None:
    """Dry-run RULE (a file or a rule id) on SAMPLE and print its findings as JSON lines."""
    settings = _settings(state)
    compiled = _find_rule(rule, settings)
    if policy_path is None:
        policy_path = (
            settings.resolve(settings.policy.egress)
            if settings is not None
            else rules_dir() / "egress-policy.yaml"
        )
    if geoip is None and settings is not None and settings.geoip.database is not None:
        geoip = settings.resolve(settings.geoip.database)
    policy = EgressPolicy.load(policy_path)
    if geoip is None and compiled.model.kind == "foreign_client":
        click.echo(
            f"sentinel: warning: {compiled.id} locates clients but no GeoIP database is given "
            "(--geoip or config geoip.database): every public address is an unknown location",
            err=True,
        )
    events, unparsed = _read_sample(sample, fmt, source)
    geo = GeoDatabase.open(geoip) if geoip is not None else None
    try:
        engine = AuditRuleEngine([compiled], geo=geo, policy=policy)
        findings, hits = engine.observe(events)
        findings += engine.flush()
    finally:
        if geo is not None:
            geo.close()
    for f in findings:
        click.echo(json.dumps(f.to_json(), sort_keys=True))
    click.echo(
        f"{compiled.id}: {len(events)} events ({unparsed} unparsed), {len(hits)} hits, "
        f"{len(findings)} findings",
        err=True,
    )


def _read_sample(sample: Path, fmt: str, source: str) -> tuple[list[AuditEvent], int]:
    if fmt == EVENTS_FORMAT:
        try:
            with sample.open("rb") as fh:
                return list(iter_events_jsonl(fh)), 0
        except OSError as exc:
            raise InputError(f"{sample}: cannot read: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise InputError(f"{sample}: {exc}") from exc
    records = list(parse_file(sample, get_parser(fmt), source))
    events = [r for r in records if isinstance(r, AuditEvent)]
    return events, len(records) - len(events)
