"""`sentinel egress` commands: judge the flows in packet captures against the egress policy."""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Iterator
from pathlib import Path

import click

from sentinel.cli.common import (
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    EXIT_OK,
    CliState,
    handle_errors,
    pass_state,
)
from sentinel.errors import ConfigError
from sentinel.flows import DEFAULT_DNS, DnsOptions, ReadStats, read_flows
from sentinel.flows.netflow import Limits
from sentinel.flows.netflow_collector import ExportPcapStats, read_export_flows
from sentinel.geo.database import GeoDatabase
from sentinel.policy.egress import EgressPolicy, UnknownOrientation
from sentinel.records import Verdict, join_host_port, protocol_name
from sentinel.timefmt import parse_ts

#: verdict lines written per write
_BLOCK = 4096


@click.group()
def egress() -> None:
    """Egress verification: where did the registry's traffic go?"""


def _open_checked(path: Path) -> GeoDatabase:
    """Open a database and refuse it (``GeoIPError``) unless ``validate`` passes: a corrupt
    file, or one without locations (ASN, anonymous-IP), must not judge flows."""
    db = GeoDatabase.open(path)
    try:
        db.validate()
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector paused (and restored after): flows, verdicts and their
    JSON form create no reference cycles, but the collector would traverse every one of them
    again and again as they are allocated (about 5 % of the command's CPU on 40,000 flows)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _human(v: Verdict) -> str:
    f = v.flow
    line = (
        f"{v.verdict:<9} {v.reason:<16} {protocol_name(f.protocol):<6} "
        f"{join_host_port(f.local_ip, f.local_port)} -> "
        f"{join_host_port(f.remote_ip, f.remote_port)} "
        f"country={v.country or '-'} packets={f.packets} "
        f"bytes_out={f.bytes_out} bytes_in={f.bytes_in} rule={v.rule}"
        + (f" exporter={f.exporter}" if f.exporter else "")
        + (f" sampling=1:{f.sampling_rate} (counts estimated)" if f.sampling_rate else "")
        + (
            f" orientation=unknown (both ends judged; judged end {f.remote_ip} "
            f"({v.location_label}))"
            if f.orientation_unknown
            else ""
        )
    )
    if f.remote_names:  # the names the client asked for (CNAME chains: --json)
        line += " names=" + ",".join(n.name for n in f.remote_names)
    return line


def _netflow_summary(stats: ExportPcapStats) -> str:
    d = stats.decoder
    versions = ", ".join(
        f"v{v} {n}" for v, n in sorted(d.datagrams.items(), key=lambda i: int(i[0]))
    )
    line = (
        f"sentinel: NetFlow/IPFIX: {stats.datagrams} datagrams ({versions or 'none decoded'}), "
        f"{d.records} flow records, {d.options_records} options records, "
        f"{d.templates} templates, {d.replayed_sets} data set(s) replayed after a late template, "
        f"{d.missing_template_sets} data set(s) never matched a template, "
        f"sequence loss {d.sequence_lost}, {stats.not_udp} frame(s) without a UDP datagram"
    )
    if d.malformed or d.refused:
        bad = {**d.malformed, **d.refused}
        line += "; not decoded: " + ", ".join(f"{k} {n}" for k, n in sorted(bad.items()))
    return line


@egress.command("check")
@click.option(
    "--pcap",
    "pcaps",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="pcap/pcapng capture (gzip allowed); repeat for several files.",
)
@click.option(
    "--netflow",
    "netflows",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="pcap/pcapng capture of NetFlow v5/v9 or IPFIX export packets: the flows the "
    "exporters report are judged (counts times the sampling rate); files are read in the "
    "order given, templates carry over and data read before its template is held until the "
    "template comes; sampling rates apply from their options data on (give option captures "
    "first). Repeatable; combinable with --pcap.",
)
@click.option(
    "--geoip",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="MaxMind-format database (default: config geoip.database).",
)
@click.option(
    "--geoip-secondary",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Second database; its country and a disagreement flag go into each GeoIP verdict "
    "(default: config geoip.secondary).",
)
@click.option(
    "--policy",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Egress policy YAML (default: config policy.egress).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per flow.")
@click.option(
    "--no-dns",
    is_flag=True,
    help="Do not name flows from the DNS answers in the captures (default: named, with the "
    "configuration's [dns] settings when a configuration is used).",
)
@click.option(
    "--now",
    default=None,
    help="Judge waivers as of this RFC 3339 time (default: each flow's own last-seen time, "
    "as the daemon does).",
)
@pass_state
@handle_errors
def check(
    state: CliState,
    pcaps: tuple[Path, ...],
    netflows: tuple[Path, ...],
    geoip: Path | None,
    geoip_secondary: Path | None,
    policy: Path | None,
    as_json: bool,
    no_dns: bool,
    now: str | None,
) -> None:
    """Judge every flow in the captures (--pcap: packets; --netflow: NetFlow/IPFIX export
    packets); one line (or JSON object) per flow on stdout.

    \b
    Exit codes: 0 no violation; 1 violations found; 2 error (unreadable capture, policy or
    database); 3 no violation but the check is incomplete: no flow at all was judged, a
    --netflow file held no NetFlow/IPFIX datagram, data sets never matched a template, or a
    capture was truncated (judged as far as it goes). A summary goes to stderr. Flows are
    named from the DNS answers seen before they started (names=…; JSON remote_names with CNAME
    chains). A flow (captured or NetFlow) with neither end in the policy's local_networks is
    judged from both ends (the worse verdict; orientation=unknown and the judged end, whose
    country= is; JSON "orientation": "unknown", "judged_ip" and orientation_unknown: true, with
    remote_ip the judged end and local_ip the other). The summary counts them: between public
    addresses (set local_networks to the registry hosts' addresses), with one private or
    special-purpose end (the other end decides), or between such addresses only (not egress).
    """
    if not pcaps and not netflows:
        raise ConfigError("egress check", "give at least one --pcap or --netflow file")
    when = None
    if now is not None:
        try:
            when = parse_ts(now)
        except ValueError as exc:
            raise ConfigError("--now", f"not an RFC 3339 time with a zone: {exc}") from exc
    dns: DnsOptions | None = None
    if not no_dns:
        needed = policy is None or geoip is None or state.config_path is not None
        dns = state.settings().dns.options() if needed else DEFAULT_DNS
    if policy is None:
        settings = state.settings()
        policy = settings.resolve(settings.policy.egress)
    if geoip is None:
        settings = state.settings()
        if settings.geoip.database is not None:
            geoip = settings.resolve(settings.geoip.database)
        if geoip_secondary is None and settings.geoip.secondary is not None:
            geoip_secondary = settings.resolve(settings.geoip.secondary)
    rules = EgressPolicy.load(policy)
    geo = _open_checked(geoip) if geoip is not None else None
    second = _open_checked(geoip_secondary) if geoip_secondary is not None else None
    with _no_cyclic_gc():
        try:
            started = time.perf_counter()
            flows, stats = (
                read_flows(pcaps, rules.local_networks, dns=dns) if pcaps else ([], ReadStats())
            )
            nf_stats = None
            if netflows:
                nf_flows, nf_stats = read_export_flows(
                    netflows, [str(n) for n in rules.local_networks]
                )
                flows = flows + nf_flows
            # when is None: a waiver covers a flow if it was valid when the flow was seen
            verdicts = rules.evaluate_many(flows, geo, when, secondary=second)
            # from the first capture opened: imports, policy and databases are not reading
            read = [stats] + ([nf_stats.capture] if nf_stats is not None else [])
            opened = [r.opened_at for r in read if r.opened_at is not None]
            elapsed = time.perf_counter() - min(opened, default=started)
        finally:
            for db in (geo, second):
                if db is not None:
                    db.close()
        violations = sum(1 for v in verdicts if v.verdict == "violation")
        # written in blocks: click.echo flushes on every call (one write per flow otherwise)
        dumps = json.JSONEncoder(sort_keys=True).encode
        for start in range(0, len(verdicts), _BLOCK):
            block = verdicts[start : start + _BLOCK]
            lines = [dumps(v.to_json()) for v in block] if as_json else [_human(v) for v in block]
            click.echo("\n".join(lines))
    if pcaps:
        summary = (
            f"sentinel: {len(pcaps) + len(netflows)} file(s), {stats.packets} packets, "
            f"{len(flows)} flows, "
            f"{violations} violation(s); not IP {stats.not_ip}, malformed {stats.malformed}, "
            f"unsupported link type {stats.unsupported_linktype}, "
            f"unmatched fragments {stats.fragments_unmatched}"
            + _rate(stats.packets, elapsed, "packets")
        )
    else:  # --netflow only: the flows are the exported records, not captured packets
        records = nf_stats.decoder.records if nf_stats is not None else 0
        summary = (
            f"sentinel: {len(netflows)} file(s), {records} flow records, {len(flows)} flows, "
            f"{violations} violation(s)" + _rate(records, elapsed, "records")
        )
    unknown = UnknownOrientation.count(flows)
    if unknown.total:
        summary += "; " + unknown.describe(policy)
    if dns is not None and pcaps:
        named = sum(1 for f in flows if f.remote_names)
        summary += f"; {named} flow(s) named from {stats.dns.get('responses', 0)} DNS answer(s)"
        problems = {k: stats.dns[k] for k in ("malformed", "truncated") if stats.dns.get(k)}
        if problems:
            summary += " (" + ", ".join(f"{k} {n}" for k, n in problems.items()) + ")"
    if stats.tunnels:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats.tunnels.items()))
        summary += f"; tunnelled packets judged by their inner flow: {kinds}"
    if geo is None:
        summary += "; no GeoIP database: every public address is 'unknown location'"
    elif geo.lookup_errors:
        summary += f"; {geo.lookup_errors} GeoIP lookup error(s) treated as unknown"
    if second is not None:
        disagreements = sum(1 for v in verdicts if v.secondary and v.secondary.disagrees)
        summary += f"; {disagreements} GeoIP disagreement(s) with the second database"
    click.echo(summary, err=True)
    if nf_stats is not None:
        click.echo(_netflow_summary(nf_stats), err=True)
    notes = list(stats.notes) + (list(nf_stats.capture.notes) if nf_stats is not None else [])
    for note in notes:
        click.echo(f"sentinel: warning: truncated capture: {note}", err=True)
    if stats.anomalies:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats.anomalies.items()))
        click.echo(f"sentinel: note: capture anomalies: {kinds}", err=True)
    incomplete = _incomplete(len(flows), notes, nf_stats)
    for reason in incomplete:
        click.echo(f"sentinel: warning: incomplete check: {reason}", err=True)
    if violations:
        raise SystemExit(EXIT_FINDINGS)
    raise SystemExit(EXIT_INCOMPLETE if incomplete else EXIT_OK)


#: fewer packets or records than this are not timed: the rate would be noise
RATE_MIN_INPUT = 1_000


def _rate(count: int, seconds: float, unit: str) -> str:
    """``"; N unit/s"`` over ``seconds`` of wall time, or ``""`` for an input too small to
    time (under ``RATE_MIN_INPUT``)."""
    if count < RATE_MIN_INPUT or seconds <= 0:
        return ""
    return f"; {int(count / seconds)} {unit}/s"


def _incomplete(flows: int, notes: list[str], nf: ExportPcapStats | None) -> list[str]:
    """Why a check that found no violation may not have seen everything (exit code 3):
    nothing judged ≠ nothing found."""
    reasons = []
    if not flows:
        reasons.append("no flow was judged")
    if notes:
        reasons.append(f"{len(notes)} capture(s) truncated, judged as far as they go")
    if nf is not None:
        for path in nf.without_export:
            reasons.append(f"{path}: no NetFlow/IPFIX datagram decoded")
        missing = nf.decoder.missing_template_sets
        if missing:
            # data before its template is held and replayed whatever the file order; only
            # what the hold buffer evicted depends on the order
            evicted = missing - nf.waiting_at_end
            parts = []
            if nf.waiting_at_end:
                parts.append(
                    f"{nf.waiting_at_end} whose template is in none of the captures given "
                    "(add the capture of the exporter's templates, before or after the data)"
                )
            if evicted:
                limits = Limits()
                parts.append(
                    f"{evicted} dropped while waiting for their template (more than "
                    f"{limits.max_pending_sets} sets or {limits.max_pending_bytes >> 20} MiB "
                    "waiting: give the capture holding the templates earlier)"
                )
            reasons.append(
                f"{missing} NetFlow/IPFIX data set(s) never matched a template: " + "; ".join(parts)
            )
    return reasons
