"""The daemon's service: capture directory → verdicts → ledger and metrics; clean shutdown."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from sentinel.config import DEFAULT_CONFIG_TOML, Settings, load_settings
from sentinel.demo.make_capture import LOOKUPS, SCENARIO
from sentinel.ledger import Ledger
from sentinel.ledger.checkpoint import anchor_from_settings
from sentinel.resources import demo_dir
from sentinel.runtime.service import Service
from sentinel.runtime.setup import init_directory

GEOIP_TEST_DB = "GeoIP2-City-Test.mmdb"


def _settings(tmp_path: Path, corpus: Path, ledger_url: str | None = None) -> Settings:
    text = (
        DEFAULT_CONFIG_TOML.replace(
            '# database = "/usr/share/GeoIP/dbip-city-lite.mmdb"',
            f'database = "{corpus / "geoip" / GEOIP_TEST_DB}"',
        )
        .replace('pcap_dir = ""', 'pcap_dir = "captures"')
        .replace('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:0"')
    )
    if ledger_url:
        text = text.replace('url = "sqlite:///state/ledger.db"', f'url = "{ledger_url}"')
        # outside the directory that holds the SQLite file (a restore of it must not reach it)
        outside = tmp_path.parent / f"{tmp_path.name}-checkpoints"
        text = text.replace('checkpoint_dir = "checkpoints"', f'checkpoint_dir = "{outside}"')
    init_directory(tmp_path, config_text=text)
    shutil.copyfile(demo_dir() / "policy.yaml", tmp_path / "policy.yaml")
    (tmp_path / "captures").mkdir()
    return load_settings(tmp_path / "sentinel.toml")


def _wait(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail("condition not reached in time")


def test_capture_directory_is_judged_once_and_recorded(
    tmp_path: Path, corpus: Path, ledger_url: str
) -> None:
    settings = _settings(tmp_path, corpus, ledger_url)
    service = Service(settings)
    service.start()
    try:
        assert service.ledger is not None
        target = tmp_path / "captures" / "registry-egress.pcap"
        shutil.copyfile(demo_dir() / "registry-egress.pcap", target)
        _wait(lambda: service.ledger is not None and service.ledger.size() >= 1)
        _wait(
            lambda: any(
                r["kind"] == "egress_summary"
                for r in service.ledger.query()  # type: ignore[union-attr]
            )
        )
        size_after_first = service.ledger.size()
        # the same capture again under another name: nothing new (dedup by SHA-256)
        shutil.copyfile(target, tmp_path / "captures" / "again.pcap")
        time.sleep(5)
        assert service.ledger.size() == size_after_first
        port = service.metrics_port
        assert port is not None
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"sentinel_flows_total" in body
        # a file that is not a capture: an error counted as the source's loss, not a crash
        shutil.copyfile(corpus / "pcap/derived/bad-magic.pcap", tmp_path / "captures" / "x.pcap")
        errors = service.metrics.registry.get_sample_value
        _wait(lambda: (errors("sentinel_source_errors_total", {"source": "pcap-dir"}) or 0) >= 1)
    finally:
        service.stop()
    service.stop()  # idempotent

    anchor = anchor_from_settings(settings)
    with Ledger.open(settings.ledger_url, log_id=settings.ledger.log_id, anchor=anchor) as ledger:
        # the service signed a checkpoint as it stopped: the whole log is pinned
        result = ledger.verify()
        assert result.status == "valid", result
        assert result.checkpoint_size == ledger.size()
        kinds = [r["kind"] for r in ledger.query()]
        summaries = [r for r in ledger.query(kind="egress_summary")]
        violations = {
            r["data"]["remote_ip"]: r["data"] for r in ledger.query(kind="egress_violation")
        }
    assert kinds.count("egress_summary") == 1
    # the capture directory is a watched source: its packets are in the summary at stop
    with Ledger.open(settings.ledger_url, log_id=settings.ledger.log_id) as ledger:
        health = [
            r["data"] for r in ledger.query(kind="sensor_health") if r["data"]["event"] == "summary"
        ]
    (pcap_dir,) = [h for h in health if h["source"] == "pcap-dir:captures"]
    packets = sum(c["packets"] for c in summaries[0]["data"]["by_country"].values())
    assert pcap_dir["counts"]["activity"] == packets > 2000  # the copy under another name: 0
    assert pcap_dir["counts"]["unreadable_captures"] == 1
    summary = summaries[0]["data"]
    # The MaxMind test database knows none of the demo's real addresses: every public remote
    # is "unknown location" (fail closed), internal/allowed-network/waived flows are not.
    # The registry host's DNS lookups at its resolver are internal flows.
    assert summary["flows"] == len(SCENARIO) + len(LOOKUPS) == 17
    assert summary["by_verdict"]["waived"] == 1
    assert summary["by_reason"]["internal"] == 1 + len(LOOKUPS)
    # the [dns] defaults name the violations from the capture's DNS answers
    assert [n["name"] for n in violations["3.5.140.1"]["remote_names"]] == [
        "s3.ap-northeast-2.amazonaws.com"
    ]
    assert "remote_names" not in violations["52.95.110.1"]
    assert summary["by_reason"]["allowed network"] == 1
    assert summary["by_reason"]["unknown location"] >= 7


def test_damaged_capture_is_counted_not_fatal(tmp_path: Path, corpus: Path) -> None:
    settings = _settings(tmp_path, corpus)
    service = Service(settings)
    service.start()
    try:
        shutil.copyfile(
            corpus / "pcap" / "derived" / "bad-magic.pcap", tmp_path / "captures" / "bad.pcap"
        )
        _wait(lambda: service.metrics.source_errors.labels("pcap-dir")._value.get() >= 1)
        shutil.copyfile(demo_dir() / "registry-egress.pcap", tmp_path / "captures" / "ok.pcap")
        _wait(lambda: service.ledger is not None and service.ledger.size() > 0)
    finally:
        service.stop()


def test_bad_policy_fails_start_cleanly(tmp_path: Path, corpus: Path) -> None:
    settings = _settings(tmp_path, corpus)
    (tmp_path / "policy.yaml").write_text("jurisdiction: {allow_countries: [XX1]}\n")
    service = Service(settings)
    with pytest.raises(Exception) as info:
        service.start()
    assert "policy.yaml" in str(info.value)


def test_rejected_webhook_requests_are_counted(tmp_path: Path, corpus: Path) -> None:
    import urllib.error

    settings = _settings(tmp_path, corpus)
    text = (tmp_path / "sentinel.toml").read_text()
    (tmp_path / "sentinel.toml").write_text(
        text.replace(
            'enabled = false\nlisten = "127.0.0.1:9465"', 'enabled = true\nlisten = "127.0.0.1:0"'
        )
    )
    settings = load_settings(tmp_path / "sentinel.toml")
    service = Service(settings)
    service.start()
    try:
        req = urllib.request.Request(
            service.webhook_url,
            data=b"{}",
            method="POST",
            headers={
                "Authorization": "Bearer wrong-token-000000000000",
                "Content-Type": "application/json",
            },
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        assert info.value.code == 401
        value = service.metrics.registry.get_sample_value(
            "sentinel_webhook_rejected_requests_total", {"status": "401"}
        )
        assert value == 1.0
    finally:
        service.stop()


def test_tailed_files_get_their_zone_and_bad_zones_are_named(tmp_path: Path, corpus: Path) -> None:
    sample = corpus / "registry-logs" / "mlflow-live" / "mlflow-3.17.2-uvicorn-access.log"
    shutil.copyfile(sample, tmp_path / "mlflow.log")
    _settings(tmp_path, corpus)
    base = (tmp_path / "sentinel.toml").read_text()

    def with_zone(zone: str) -> Settings:
        (tmp_path / "sentinel.toml").write_text(
            base.replace(
                "# [[audit.files]]\n",
                f'[[audit.files]]\nid = "mlflow"\nformat = "mlflow-access"\n'
                f'path = "mlflow.log"\nzone = "{zone}"\n\n# [[audit.files]]\n',
                1,
            )
        )
        return load_settings(tmp_path / "sentinel.toml")

    bad = Service(with_zone("Mars/Olympus_Mons"))
    with pytest.raises(Exception) as info:
        bad.start()
    assert "audit.files[mlflow]" in str(info.value)

    service = Service(with_zone("Europe/Berlin"))
    service.start()
    try:
        _wait(lambda: service.ledger is not None and service.ledger.size() > 5)
        assert service.ledger is not None
        events = [r["data"] for r in service.ledger.query(kind="audit_event")]
    finally:
        service.stop()
    assert events and {e["ts_zone_assumed"] for e in events} == {"Europe/Berlin"}


def test_glob_in_audit_files_tails_every_match(tmp_path: Path, corpus: Path) -> None:
    """``path`` as a glob: each matching file is tailed with its own cursor in the ledger."""
    sample = corpus / "registry-logs" / "mlflow-live" / "mlflow-3.17.2-uvicorn-access.log"
    lines = sample.read_bytes().splitlines(keepends=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = lines[1:]  # the first line is a server message, not an access line
    (logs / "a.log").write_bytes(b"".join(lines[:10]))
    _settings(tmp_path, corpus)
    text = (tmp_path / "sentinel.toml").read_text()
    (tmp_path / "sentinel.toml").write_text(
        text.replace(
            "# [[audit.files]]\n",
            '[[audit.files]]\nid = "mlflow"\nformat = "mlflow-access"\npath = "logs/*.log"\n\n'
            "# [[audit.files]]\n",
            1,
        ).replace("poll_interval = 1.0", "poll_interval = 0.2")
    )
    service = Service(load_settings(tmp_path / "sentinel.toml"))
    service.start()
    try:
        ledger = service.ledger
        assert ledger is not None
        _wait(lambda: ledger.count_by_kind().get("audit_event", 0) == 10)
        (logs / "b.log").write_bytes(b"".join(lines[10:15]))  # matches later
        _wait(lambda: ledger.count_by_kind().get("audit_event", 0) == 15)
        cursors = [ledger.get_cursor(f"tail:mlflow:{logs / n}") for n in ("a.log", "b.log")]
        events = [r["data"] for r in ledger.query(kind="audit_event")]
    finally:
        service.stop()
    assert all(cursors)
    assert [e["raw_sha256"] for e in events].count(events[0]["raw_sha256"]) == 1
    assert {e["src_pos"].split("@")[0] for e in events} == {
        str(logs / "a.log"),
        str(logs / "b.log"),
    }


def test_mlflow_rest_table_wraps_the_tailed_parser(tmp_path: Path, corpus: Path) -> None:
    """``[audit.files.mlflow_rest]`` reaches the tailer: with the API down (nothing listens on
    the port) every line is still recorded, the unnamed ones saying why they are unnamed."""
    from tests.e2e.harness import free_port

    sample = corpus / "registry-logs" / "mlflow-live" / "mlflow-3.17.2-uvicorn-access.log"
    shutil.copyfile(sample, tmp_path / "mlflow.log")
    (tmp_path / "mlflow.token").write_text("t0ken-for-the-rest-api\n")
    _settings(tmp_path, corpus)
    text = (tmp_path / "sentinel.toml").read_text()
    (tmp_path / "sentinel.toml").write_text(
        text.replace(
            "# [[audit.files]]\n",
            '[[audit.files]]\nid = "mlflow"\nformat = "mlflow-access"\npath = "mlflow.log"\n'
            f'[audit.files.mlflow_rest]\nurl = "http://127.0.0.1:{free_port()}"\n'
            'token_file = "mlflow.token"\ntimeout = 1.0\n\n# [[audit.files]]\n',
            1,
        )
    )
    lines = sample.read_bytes().splitlines()
    service = Service(load_settings(tmp_path / "sentinel.toml"))
    service.start()
    try:
        ledger = service.ledger
        assert ledger is not None
        _wait(
            lambda: (
                sum(ledger.count_by_kind().get(k, 0) for k in ("audit_event", "unparsed"))
                == len(lines)
            )
        )
        events = [r["data"] for r in ledger.query(kind="audit_event")]
        bodies = b"".join(e.body for e in ledger.iter_entries())
        down = service.metrics.registry.get_sample_value(
            "sentinel_mlflow_reconstructions_total", {"source": "mlflow", "result": "unavailable"}
        )
    finally:
        service.stop()
    creates = [e for e in events if e["action"] == "register" and e["outcome"] == "success"]
    assert creates and all("MLflow REST API unavailable" in e["detail"] for e in creates)
    assert down is not None and down >= len(creates)
    assert b"t0ken-for-the-rest-api" not in bodies
