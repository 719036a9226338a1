"""`sentinel egress check` end to end: real captures, a GeoIP test DB, the shipped policy."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from sentinel.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "rules" / "egress-policy.yaml"
BROKEN = "GeoIP2-City-Test-Invalid-Node-Count.mmdb"


def _run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.stdout, result.stderr


def _capture(tmp_path: Path) -> Path:
    reg = "10.20.0.5"
    pkts = [
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=reg, dst="89.160.20.112")
        / TCP(sport=40001, dport=443),
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="175.16.199.1", dst=reg)
        / TCP(sport=51000, dport=443),
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=reg, dst="175.16.199.1")
        / TCP(sport=443, dport=51000)
        / (b"m" * 1400),
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=reg, dst="192.0.2.9")
        / TCP(sport=40002, dport=443),
    ]
    for i, p in enumerate(pkts):
        p.time = 1_767_225_600 + i  # 2026-01-01
    path = tmp_path / "registry.pcap"
    wrpcap(str(path), pkts)
    return path


def test_check_json(corpus: Path, tmp_path: Path) -> None:
    geo = corpus / "geoip" / "GeoIP2-City-Test.mmdb"
    code, out, err = _run(
        ["egress", "check", "--pcap", str(_capture(tmp_path)), "--geoip", str(geo),
         "--policy", str(POLICY), "--json", "--now", "2026-01-02T00:00:00Z"]
    )  # fmt: skip
    assert code == 1, err
    rows = {r["remote_ip"]: r for r in map(json.loads, out.splitlines())}
    assert set(rows) == {"89.160.20.112", "175.16.199.1", "192.0.2.9"}
    cn = rows["175.16.199.1"]
    assert (cn["verdict"], cn["reason"], cn["country"], cn["protocol"]) == (
        "violation", "foreign country", "CN", "tcp"
    )  # fmt: skip
    assert (cn["remote_port"], cn["packets"], cn["bytes_out"], cn["bytes_in"]) == (
        51000,
        2,
        1440,
        40,
    )
    assert cn["first_seen"] == "2026-01-01T00:00:01.000000Z"
    assert cn["last_seen"] == "2026-01-01T00:00:02.000000Z"
    assert cn["geoip"]["database_type"] == "GeoIP2-City"
    assert rows["89.160.20.112"]["verdict"] == "allowed"
    assert rows["192.0.2.9"]["verdict"] == "waived"
    assert "4 packets, 3 flows, 1 violation(s)" in err


def test_check_human_and_waiver_expiry(corpus: Path, tmp_path: Path) -> None:
    geo = corpus / "geoip" / "GeoIP2-City-Test.mmdb"
    code, out, _ = _run(
        ["egress", "check", "--pcap", str(_capture(tmp_path)), "--geoip", str(geo),
         "--policy", str(POLICY), "--now", "2028-01-01T00:00:00Z"]
    )  # fmt: skip
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 3
    assert any(line.startswith("violation") and "175.16.199.1" in line for line in lines)
    # W-1 expired in 2027, and 192.0.2.0/24 is a documentation range: internal, not a violation
    assert any(line.startswith("allowed") and "192.0.2.9" in line for line in lines)


def test_no_violation_exit_0(corpus: Path) -> None:
    code, out, err = _run(
        ["egress", "check", "--pcap", str(corpus / "pcap/zeek/linux_dlt_sll2.pcap"),
         "--geoip", str(corpus / "geoip/GeoIP2-City-Test.mmdb"), "--policy", str(POLICY)]
    )  # fmt: skip
    assert code == 0, err
    assert len(out.splitlines()) == 2
    assert "not IP 2" in err


def test_truncated_capture_is_reported(corpus: Path) -> None:
    code, _, err = _run(
        ["egress", "check", "--pcap", str(corpus / "pcap/derived/truncated-mid-packet.pcap"),
         "--geoip", str(corpus / "geoip/GeoIP2-City-Test.mmdb"), "--policy", str(POLICY)]
    )  # fmt: skip
    assert code == 1  # its one flow is a violation: findings win over an incomplete check
    assert "truncated capture" in err and "record cut mid-packet" in err
    assert "incomplete check: 1 capture(s) truncated" in err


def test_truncated_capture_without_violation_exits_3(corpus: Path, tmp_path: Path) -> None:
    """A damaged capture with no violation is not "nothing found": exit 3, not 0."""
    whole = corpus / "pcap" / "pcapplusplus" / "DnsPackets.pcap"
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole.read_bytes()[:20000])
    args = ["egress", "check", "--geoip", str(corpus / "geoip/GeoIP2-City-Test.mmdb"),
            "--policy", str(POLICY), "--pcap"]  # fmt: skip
    code, out, err = _run([*args, str(whole)])
    assert code == 0, err
    code, out, err = _run([*args, str(cut)])
    assert code == 3, err
    assert out and "record cut mid-packet" in err and "incomplete check" in err


def test_errors_exit_2_with_one_line(corpus: Path, tmp_path: Path) -> None:
    geo = str(corpus / "geoip/GeoIP2-City-Test.mmdb")
    ok_pcap = str(corpus / "pcap/zeek/dns53.pcap")
    cases = [
        (["--pcap", str(corpus / "pcap/derived/bad-magic.pcap"), "--geoip", geo], "magic"),
        (["--pcap", ok_pcap, "--geoip", str(corpus / "geoip" / BROKEN)],
         "not a valid MaxMind DB"),
        (["--pcap", ok_pcap, "--geoip", geo, "--now", "yesterday"], "RFC 3339"),
    ]  # fmt: skip
    for extra, message in cases:
        code, out, err = _run(["egress", "check", "--policy", str(POLICY), *extra])
        assert code == 2, (extra, err)
        assert out == ""
        assert len(err.strip().splitlines()) == 1 and message in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("jurisdiction: {unknown: sometimes}\n")
    code, _, err = _run(
        ["egress", "check", "--pcap", ok_pcap, "--geoip", geo, "--policy", str(bad)]
    )
    assert code == 2 and "jurisdiction.unknown" in err


def test_falls_back_to_config(corpus: Path, tmp_path: Path) -> None:
    conf = tmp_path / "sentinel.toml"
    conf.write_text(
        f'[geoip]\ndatabase = "{corpus / "geoip/GeoIP2-City-Test.mmdb"}"\n'
        f'[policy]\negress = "{POLICY}"\n'
    )
    code, out, err = _run(
        ["--config", str(conf), "egress", "check", "--pcap", str(_capture(tmp_path)), "--json"]
    )
    assert code == 1, err
    assert any(json.loads(line)["country"] == "CN" for line in out.splitlines())


def test_check_judges_tunnels_by_inner_flow_and_says_so(corpus: Path) -> None:
    gre = corpus / "pcap" / "zeek" / "tunnels-gre-sample.pcap"
    geo = corpus / "geoip" / "GeoIP2-City-Test.mmdb"
    code, out, err = _run(
        ["egress", "check", "--pcap", str(gre), "--geoip", str(geo), "--policy", str(POLICY),
         "--json", "--now", "2026-01-02T00:00:00Z"]
    )  # fmt: skip
    assert code in (0, 1), err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) > 1 and all(r["protocol"] != "gre" for r in rows)
    assert sum(r["packets"] for r in rows) == 40
    assert "tunnelled packets judged by their inner flow: gre 40" in err


def test_check_netflow_export_capture(corpus: Path) -> None:
    """--netflow: the flows in NetFlow v9 export packets are judged, scaled by the sampling
    rate the options data gave, and the decoder's counters are summarized."""
    folder = corpus / "pcap" / "akvorado"
    geo = str(corpus / "geoip/GeoIP2-City-Test.mmdb")
    args = ["egress", "check", "--policy", str(POLICY), "--geoip", geo, "--json"]
    for name in ("options-template", "options-data", "template", "data"):
        args += ["--netflow", str(folder / f"{name}.pcap")]
    code, out, err = _run(args)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 4
    assert {v["sampling_rate"] for v in lines} == {30000}
    assert {v["exporter"] for v in lines} == {"192.0.2.100"}
    assert code == 1  # the test database knows none of them: unknown location, violations
    assert "NetFlow/IPFIX: 4 datagrams (v9 4), 4 flow records" in err
    assert "0 data set(s) never matched a template" in err


def test_check_netflow_data_without_template_is_reported(corpus: Path) -> None:
    geo = str(corpus / "geoip/GeoIP2-City-Test.mmdb")
    data = str(corpus / "pcap" / "akvorado" / "data.pcap")
    code, out, err = _run(
        ["egress", "check", "--policy", str(POLICY), "--geoip", geo, "--netflow", data]
    )
    assert (code, out) == (3, "")  # nothing judged is not nothing found
    assert "1 data set(s) never matched a template" in err
    assert "incomplete check: no flow was judged" in err
    assert (
        "1 NetFlow/IPFIX data set(s) never matched a template: 1 whose template is in none of "
        "the captures given (add the capture of the exporter's templates, before or after the "
        "data)"
    ) in err
    assert "first" not in err
    # the template capture after the data: the data set is held and replayed, nothing missing
    folder = corpus / "pcap" / "akvorado"
    args = ["egress", "check", "--policy", str(POLICY), "--geoip", geo, "--json"]
    for name in ("options-template", "options-data", "data", "template"):
        args += ["--netflow", str(folder / f"{name}.pcap")]
    code, out, err = _run(args)
    assert code == 1 and len(out.splitlines()) == 4, err
    assert {json.loads(line)["sampling_rate"] for line in out.splitlines()} == {30000}
    assert "1 data set(s) replayed after a late template" in err
    assert "0 data set(s) never matched a template" in err and "incomplete" not in err


def test_check_netflow_says_when_the_hold_for_late_templates_overflowed(corpus: Path) -> None:
    """Data evicted from a full hold (here one of 0 sets) is the one case where file order
    matters: the reason says so, and not "in none of the captures"."""
    from sentinel.cli.egress import _incomplete
    from sentinel.flows.netflow import Limits
    from sentinel.flows.netflow_collector import read_export_pcap

    folder = corpus / "pcap" / "akvorado"
    paths = [folder / "data.pcap", folder / "template.pcap"]
    records, stats = read_export_pcap(paths, limits=Limits(max_pending_sets=0))
    assert records == [] and stats.decoder.missing_template_sets == 1
    (reason,) = [r for r in _incomplete(len(records), [], stats) if "template" in r]
    assert reason.startswith(
        "1 NetFlow/IPFIX data set(s) never matched a template: 1 dropped while waiting for "
        "their template (more than 10000 sets or 16 MiB waiting: give the capture holding the "
        "templates earlier)"
    )
    assert "none of the captures" not in reason


def test_check_netflow_on_a_capture_without_netflow_exits_3(corpus: Path) -> None:
    geo = str(corpus / "geoip/GeoIP2-City-Test.mmdb")
    tls = corpus / "pcap" / "pcapplusplus" / "tls.pcap"
    args = ["egress", "check", "--policy", str(POLICY), "--geoip", geo]
    code, out, err = _run([*args, "--netflow", str(tls)])
    assert (code, out) == (3, "")
    assert f"incomplete check: {tls}: no NetFlow/IPFIX datagram decoded" in err
    # beside a good NetFlow capture the flows are judged, and the empty input still said
    nfv5 = corpus / "pcap" / "akvorado" / "nfv5.pcap"
    code, out, err = _run([*args, "--netflow", str(nfv5), "--netflow", str(tls)])
    assert code == 1 and len(out.splitlines()) == 29
    assert f"{tls}: no NetFlow/IPFIX datagram decoded" in err


def test_check_netflow_only_summary_and_orientation(corpus: Path) -> None:
    """--netflow alone: the summary counts records, not "0 packets"; records with no end in
    local_networks are judged from both ends, marked and counted."""
    nfv5 = corpus / "pcap" / "akvorado" / "nfv5.pcap"
    code, out, err = _run(
        ["egress", "check", "--policy", str(POLICY), "--json", "--netflow", str(nfv5),
         "--geoip", str(corpus / "geoip/GeoIP2-City-Test.mmdb")]
    )  # fmt: skip
    assert code == 1, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 29 and all(r["orientation_unknown"] is True for r in rows)
    assert "1 file(s), 29 flow records, 29 flows" in err and "packets" not in err.splitlines()[0]
    assert (
        "29 flow(s) with neither endpoint in local_networks, judged from both ends: 29 between "
        f"public addresses (list the registry hosts' addresses in local_networks in {POLICY})"
    ) in err
    code, out, err = _run(
        ["egress", "check", "--policy", str(POLICY), "--netflow", str(nfv5),
         "--geoip", str(corpus / "geoip/GeoIP2-City-Test.mmdb")]
    )  # fmt: skip
    lines = out.splitlines()
    assert code == 1 and len(lines) == 29
    assert all(" orientation=unknown (both ends judged; judged end " in line for line in lines)


def test_check_does_not_count_special_purpose_flows_as_a_local_networks_problem(
    corpus: Path,
) -> None:
    """Flows between link-local, documentation or private addresses only are internal from
    either end (not egress): no "list ... in local_networks" advice for them; flows with one
    private end are decided by the public end and are not counted in the advice either."""
    geo = str(corpus / "geoip" / "GeoIP2-City-Test.mmdb")
    args = ["egress", "check", "--no-dns", "--policy", str(POLICY), "--geoip", geo]
    zeek = corpus / "pcap" / "zeek"
    code, out, err = _run([*args, "--pcap", str(zeek / "linux_dlt_sll2.pcap")])
    assert code == 0 and len(out.splitlines()) == 2  # 192.0.2.1 and fe80:: to themselves
    assert (
        "2 flow(s) with neither endpoint in local_networks, judged from both ends: 2 between "
        "private/special-purpose addresses only (internal: not egress)"
    ) in err
    assert "registry hosts" not in err and "public addresses" not in err
    code, out, err = _run([*args, "--pcap", str(zeek / "tunnels-Teredo.pcap")])
    assert code == 1, err
    assert (
        "11 flow(s) with neither endpoint in local_networks, judged from both ends: 7 with one "
        "private/special-purpose end (the public end decides, as if oriented), 4 between "
        "private/special-purpose addresses only (internal: not egress)"
    ) in err
    assert "registry hosts" not in err


def test_check_says_which_end_decided_an_unknown_orientation(
    corpus: Path, dbip_path: Path, tmp_path: Path
) -> None:
    """nfv5's records have neither end in local_networks: the text line names the judged end
    and its country (not only a bare country=), the JSON adds orientation and judged_ip next
    to the local/remote fields it keeps."""
    nfv5 = corpus / "pcap" / "akvorado" / "nfv5.pcap"
    args = ["egress", "check", "--policy", str(POLICY), "--geoip", str(dbip_path)]
    code, out, err = _run([*args, "--netflow", str(nfv5)])
    assert code == 1, err
    (line,) = [x for x in out.splitlines() if "-> 202.160.21.5:37422 " in x]
    assert line.startswith("violation foreign country")
    assert " country=BN " in line
    assert "orientation=unknown (both ends judged; judged end 202.160.21.5 (BN))" in line
    code, out, err = _run([*args, "--json", "--netflow", str(nfv5)])
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 29
    for row in rows:
        assert (row["orientation"], row["orientation_unknown"]) == ("unknown", True)
        assert row["judged_ip"] == row["remote_ip"]
    (row,) = [r for r in rows if (r["remote_ip"], r["remote_port"]) == ("202.160.21.5", 37422)]
    assert (row["local_ip"], row["country"], row["bytes_out"]) == ("173.194.4.8", "BN", 10262)
    # an oriented flow carries neither field (its records keep their canonical bytes)
    code, out, err = _run([*args, "--json", "--pcap", str(_capture(tmp_path))])
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 3 and not any("orientation" in r or "judged_ip" in r for r in rows)


def test_check_needs_an_input() -> None:
    code, _out, err = _run(["egress", "check", "--policy", str(POLICY), "--geoip", "x.mmdb"])
    assert code == 2
    assert "--pcap or --netflow" in err


def test_check_names_flows_from_the_captures_dns_answers(corpus: Path) -> None:
    geo = corpus / "geoip" / "GeoIP2-City-Test.mmdb"
    pcap = corpus / "pcap" / "pcapplusplus" / "raw_ip.pcap"
    args = ["egress", "check", "--pcap", str(pcap), "--geoip", str(geo), "--policy", str(POLICY)]
    code, out, err = _run(args)
    assert code == 1, err
    (line,) = [x for x in out.splitlines() if "-> 23.221.143.117:80 " in x]
    assert line.endswith(" names=www.ynet.co.il")
    assert "2 flow(s) named from 3 DNS answer(s)" in err
    code, out, err = _run([*args, "--json"])
    rows = {r["remote_ip"]: r for r in map(json.loads, out.splitlines())}
    (name,) = rows["82.102.152.19"]["remote_names"]
    assert (name["name"], name["cnames"], name["ttl"], name["resolver"]) == (
        "crl.microsoft.com", ["crl.www.ms.akadns.net", "a1363.dscg.akamai.net"], 5, "10.0.0.138",
    )  # fmt: skip
    assert "remote_names" not in rows["10.0.0.138"]
    code, out, err = _run([*args, "--no-dns"])
    assert " names=" not in out and "DNS" not in err


def test_check_rate_leaves_out_start_up_and_tiny_inputs(corpus: Path, tmp_path: Path) -> None:
    """The packets/s (records/s) rate is timed from the first capture opened (the readers
    stamp ``ReadStats.opened_at``), and not printed for fewer than 1,000 packets or records,
    where it measured mostly start-up ("38 records/s" for nfv5's 29 records)."""
    from sentinel.flows import read_flows
    from sentinel.flows.netflow_collector import read_export_pcap

    geo = str(corpus / "geoip" / "GeoIP2-City-Test.mmdb")
    args = ["egress", "check", "--policy", str(POLICY), "--geoip", geo, "--no-dns"]
    nfv5 = corpus / "pcap" / "akvorado" / "nfv5.pcap"
    code, _out, err = _run([*args, "--netflow", str(nfv5)])
    assert code == 1 and "29 flow records" in err and "records/s" not in err
    code, _out, err = _run([*args, "--pcap", str(_capture(tmp_path))])
    assert "4 packets" in err and "packets/s" not in err
    reg, pkts = "10.20.0.5", []
    for i in range(1_200):
        p = Ether() / IP(src=reg, dst="89.160.20.112") / TCP(sport=40_000 + i % 50, dport=443)
        p.time = 1_767_225_600 + i / 100
        pkts.append(p)
    big = tmp_path / "big.pcap"
    wrpcap(str(big), pkts)
    code, _out, err = _run([*args, "--pcap", str(big)])
    assert code == 0, err
    assert "1200 packets, 50 flows" in err and " packets/s" in err.splitlines()[0]
    for engine in ("vector", "scalar"):
        _flows, stats = read_flows([big, nfv5], [reg], engine=engine)  # type: ignore[arg-type]
        assert stats.opened_at is not None and stats.files == 2
    _records, nf = read_export_pcap([nfv5])
    assert nf.capture.opened_at is not None
