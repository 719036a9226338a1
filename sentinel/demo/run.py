"""``sentinel demo``: the daemon's main job on embedded inputs, end to end, in a minute.

It lays out a working directory with ``sentinel init``, points the daemon at copies of the
embedded registry logs (tailed), a capture directory holding the embedded capture, and its own
webhook, then starts ``Service`` (the same code ``sentinel run`` runs), replays the registry's
recorded notifications to the webhook over HTTP — duplicates included, as the registry's
at-least-once delivery sends them — waits until everything is in the ledger, scrapes the
metrics endpoint, stops the daemon, verifies the ledger and renders the report.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sentinel.config import DEFAULT_CONFIG_TOML, load_settings
from sentinel.errors import ConfigError, InputError
from sentinel.ledger import Ledger
from sentinel.ledger.checkpoint import anchor_from_settings
from sentinel.report.build import build_report
from sentinel.report.render import write_atomic, write_report
from sentinel.resources import demo_dir
from sentinel.runtime.egress import file_sha256
from sentinel.runtime.service import Service
from sentinel.runtime.setup import init_directory

MARKER = ".sentinel-demo"
#: the demo data's day (UTC): the report covers it, and runs to the end of the demo run itself
#: (the daemon's own records — sensor health, checkpoints — carry the wall-clock time of the run,
#: which is any later day)
PERIOD = (datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
GEOIP_ATTRIBUTION = "IP geolocation by DB-IP (https://db-ip.com), CC BY 4.0"


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put its outputs, and what it found."""

    directory: Path
    report_html: Path
    report_json: Path
    metrics: Path
    ledger_url: str
    ledger_records: int
    verification: dict[str, Any]
    criteria: list[dict[str, Any]]
    notifications_posted: int


def _config(geoip: Path) -> str:
    text = DEFAULT_CONFIG_TOML
    text = text.replace(
        '# database = "/usr/share/GeoIP/dbip-city-lite.mmdb"',
        f'database = "{geoip}"',
    )
    text = text.replace('pcap_dir = ""', 'pcap_dir = "inbox/captures"')
    text = text.replace(
        "# [[audit.files]]\n"
        '# id = "registry"\n'
        '# format = "distribution-json"\n'
        '# path = "/var/log/docker-registry/app.log"\n',
        '[[audit.files]]\nid = "registry"\nformat = "distribution-json"\n'
        'path = "inbox/logs/registry-app.log"\n\n'
        '[[audit.files]]\nid = "registry-access"\nformat = "distribution-access"\n'
        'path = "inbox/logs/registry-access.log"\n',
    )
    text = text.replace(
        'enabled = false\nlisten = "127.0.0.1:9465"', 'enabled = true\nlisten = "127.0.0.1:0"'
    )
    text = text.replace('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:0"')
    text = text.replace('source = "registry"\nmax_body', 'source = "registry-webhook"\nmax_body')
    return text


def prepare(directory: Path, geoip: Path) -> Path:
    """Create (or re-create) the demo directory; returns its ``sentinel.toml``.

    Refuses (``ConfigError``) to touch a non-empty directory that is not a previous demo.
    """
    if not geoip.is_file():
        raise InputError(
            f"GeoIP database {geoip} not found: run `make demo` (it fetches DB-IP City Lite), "
            f"or `python -m sentinel.demo.fetch_geoip {geoip}`, or pass --geoip FILE.mmdb"
        )
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise ConfigError(str(directory), "exists, is not empty and is not a demo directory")
        shutil.rmtree(directory)
    init_directory(directory, config_text=_config(geoip.absolute()))
    (directory / MARKER).write_text("created by `sentinel demo`; safe to delete\n")
    data = demo_dir()
    shutil.copyfile(data / "policy.yaml", directory / "policy.yaml")
    (directory / "inbox" / "captures").mkdir(parents=True)
    (directory / "inbox" / "logs").mkdir(parents=True)
    return directory / "sentinel.toml"


def _post(url: str, token: str, body: bytes) -> int:
    req = urllib.request.Request(  # noqa: S310 - loopback URL built from our own bound address
        url,
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/vnd.docker.distribution.events.v1+json",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return int(resp.status)


def _wait_until(done: Callable[[], bool], *, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            raise InputError("the demo's inputs were not processed within a minute")
        time.sleep(0.2)


def _wait_stable(size: Callable[[], int], *, quiet: float = 2.5, limit: float = 60.0) -> int:
    """Wait until ``size()`` stops growing for ``quiet`` seconds (at most ``limit``)."""
    deadline = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_size = size()
        if now_size != last:
            last, since = now_size, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.25)
    return last


def run_demo(
    directory: Path, geoip: Path, *, progress: Callable[[str], None] = lambda _m: None
) -> DemoResult:
    """Run the demo in ``directory`` with the GeoIP database ``geoip``; see the module doc."""
    config = prepare(directory, geoip)
    settings = load_settings(config)
    data = demo_dir()
    service = Service(settings)
    progress(f"starting the daemon with {config}")
    service.start()
    posted = 0
    try:
        # The registry writes its logs while it runs: copy them in after the tailers started.
        logs = directory / "inbox" / "logs"
        shutil.copyfile(data / "registry-app-json.log", logs / "registry-app.log")
        shutil.copyfile(data / "registry-access-combined.log", logs / "registry-access.log")
        progress("registry logs arrive in inbox/logs (tailed)")
        # A capture file is judged once it has stopped changing: copy, then rename into place
        # with an mtime in the past, as a finished rotation of `tcpdump -G` would look.
        captures = directory / "inbox" / "captures"
        part = captures / "registry-egress.pcap.part"
        shutil.copyfile(data / "registry-egress.pcap", part)
        past = time.time() - 60
        os.utime(part, (past, past))
        part.replace(captures / "registry-egress.pcap")
        capture_key = f"pcap:{file_sha256(data / 'registry-egress.pcap')}"
        progress("a finished capture arrives in inbox/captures")
        url = service.webhook_url
        token = settings.resolve(settings.webhook.token_file).read_text().strip()
        for line in (data / "notifications-received.jsonl").read_text().splitlines():
            if line.strip():
                body = json.loads(line)["body"].encode()
                _post(url, token, body)
                posted += 1
        progress(f"{posted} registry notifications delivered to {url}")
        assert service.ledger is not None
        ledger = service.ledger
        _wait_until(lambda: ledger.get_cursor(capture_key) is not None)
        progress("the capture is judged")
        _wait_stable(ledger.size)
        progress(f"the ledger holds {ledger.size()} records")
        metrics_text = service.metrics.exposition()
    finally:
        service.stop()
    metrics_path = directory / "state" / "metrics.prom"
    write_atomic(metrics_path, metrics_text.decode())
    anchor = anchor_from_settings(settings)  # the daemon signed a checkpoint as it stopped
    with Ledger.open(settings.ledger_url, log_id=settings.ledger.log_id, anchor=anchor) as ledger:
        verification = ledger.verify().to_json()
        report = build_report(
            ledger.query(),
            start=PERIOD[0],
            end=max(PERIOD[1], datetime.now(UTC) + timedelta(seconds=1)),
            verification=verification,
            jurisdiction="EEA data residency (demo)",
        )
        size = ledger.size()
    report["attribution"] = GEOIP_ATTRIBUTION
    html = directory / "state" / "reports" / "report.html"
    js = directory / "state" / "reports" / "report.json"
    write_report(report, html)
    write_report(report, js)
    return DemoResult(
        directory,
        html,
        js,
        metrics_path,
        settings.ledger_url,
        size,
        verification,
        report["criteria"],
        posted,
    )
