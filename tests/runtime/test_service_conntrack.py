"""The daemon with ``[conntrack]`` on: real kernel events from a test namespace are judged by
the live path, recorded, counted, and the source's health is summarized at stop."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.config import DEFAULT_CONFIG_TOML, load_settings
from sentinel.ledger import Ledger
from sentinel.resources import demo_dir
from sentinel.runtime.service import Service
from sentinel.runtime.setup import init_directory
from tests.e2e.harness.netns import NetNs
from tests.waiting import wait_until

pytestmark = pytest.mark.root

_SEND = r"""
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
    u.bind(("0.0.0.0", 40666))
    for _ in range(n):
        u.sendto(b"p" * 472, (host, port))
"""
_FLUSH = "from pyroute2 import Conntrack\nConntrack().flush()\n"


@pytest.fixture
def ns() -> Iterator[NetNs]:
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces): run the suite as root, e.g. via .ci/run")
    with NetNs() as created:
        created.exec("sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
        created.exec("iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW",
                     "-j", "ACCEPT")  # fmt: skip
        yield created


def test_service_judges_conntrack_flows_and_records_their_health(
    tmp_path: Path, corpus: Path, ledger_url: str, ns: NetNs
) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-checkpoints"
    text = (
        DEFAULT_CONFIG_TOML.replace(
            '# database = "/usr/share/GeoIP/dbip-city-lite.mmdb"',
            f'database = "{corpus / "geoip" / "GeoIP2-City-Test.mmdb"}"',
        )
        .replace('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:0"')
        .replace('url = "sqlite:///state/ledger.db"', f'url = "{ledger_url}"')
        .replace('checkpoint_dir = "checkpoints"', f'checkpoint_dir = "{outside}"')
        .replace(
            'enabled = false\n# A named network namespace (ip netns) to watch; "" = '
            'Sentinel\'s own.\nnetns = ""',
            f'enabled = true\nnetns = "{ns.name}"',
        )
    )
    assert f'netns = "{ns.name}"' in text
    init_directory(tmp_path, config_text=text)
    shutil.copyfile(demo_dir() / "policy.yaml", tmp_path / "policy.yaml")
    settings = load_settings(tmp_path / "sentinel.toml")
    assert settings.conntrack.enabled and settings.conntrack.netns == ns.name

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((ns.host_ip, 0))
    port = int(sink.getsockname()[1])
    service = Service(settings)
    service.start()
    try:
        judge = service._conntrack
        assert judge is not None and judge.source == f"conntrack:{ns.name}"
        stats = judge.conntrack.stats
        ns.exec(sys.executable, "-c", _SEND, ns.host_ip, str(port), "9")
        wait_until(lambda: stats.new >= 1, "the new event")
        ns.exec(sys.executable, "-c", _FLUSH)
        wait_until(lambda: stats.destroy >= 1, "the destroy event")
        verdicts = judge.flush()
        service.check_health()
    finally:
        service.stop()
        sink.close()
    ours = [v for v in verdicts if v.flow.remote_port == port]
    assert len(ours) == 1
    (v,) = ours
    assert (v.verdict, v.reason) == ("allowed", "internal")
    assert (v.flow.local_ip, v.flow.local_port, v.flow.remote_ip) == (ns.ns_ip, 40666, ns.host_ip)
    assert (v.flow.packets_out, v.flow.bytes_out) == (9, 9 * 500)

    m = service.metrics.registry
    assert m.get_sample_value("sentinel_conntrack_events_total", {"event": "new"}) >= 1
    assert m.get_sample_value("sentinel_conntrack_events_total", {"event": "destroy"}) >= 1
    assert m.get_sample_value("sentinel_conntrack_accounting", {"source": judge.source}) == 1
    assert m.get_sample_value("sentinel_conntrack_overruns_total") == 0

    with Ledger.open(settings.ledger_url, log_id=settings.ledger.log_id) as ledger:
        summaries = [r["data"] for r in ledger.query(kind="egress_summary")]
        health = [r["data"] for r in ledger.query(kind="sensor_health")]
    mine = [s for s in summaries if s["source"] == judge.source]
    assert mine and sum(s["by_country"]["internal"]["bytes_out"] for s in mine) >= 9 * 500
    (final,) = [h for h in health if h["source"] == judge.source and h["event"] == "summary"]
    assert final["source_kind"] == "conntrack"
    assert final["counts"]["activity"] >= 2  # a new and a destroy event at least
    assert final["counts"]["overruns"] == 0 and final["counts"]["silences"] == 0
