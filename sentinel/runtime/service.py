"""``sentinel run``: the daemon that wires sources, policy, ledger, metrics and scheduler.

Start order: ledger → policy/GeoIP → metrics endpoint → scheduler → sources (pcap directory,
live capture, tailed files, webhook). ``stop()`` is the one shutdown path, in a fixed order and
safe to call twice: stop intake (webhook, tailers, capture), drain (judge every open flow and
record it), stop the scheduler, stop the metrics endpoint, close the ledger. No thread outlives
``stop()``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Literal, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from sentinel.audit.globtailer import GlobTailer, is_glob
from sentinel.audit.parsers import build_parser, make_options
from sentinel.audit.tailer import FileTailer, TailBatch
from sentinel.audit.webhook import WebhookReceiver
from sentinel.config import AuditFile, NetflowSection, Settings
from sentinel.errors import CaptureError, ConfigError, SentinelError
from sentinel.flows.conntrack import ConntrackSource
from sentinel.flows.live import LiveCapture
from sentinel.flows.netflow import Limits
from sentinel.flows.netflow_collector import NetflowCollector
from sentinel.geo.handle import GeoHandle, ReloadResult
from sentinel.ledger import Ledger
from sentinel.ledger.checkpoint import (
    ConsistencyError,
    anchor_from_settings,
    check_checkpoint_dir,
    load_signer,
    make_checkpoint,
)
from sentinel.ledger.tsa import trust_from_settings
from sentinel.metrics import Metrics, MetricsServer
from sentinel.policy.audit_rules import AuditRuleEngine
from sentinel.policy.egress import EgressPolicy
from sentinel.records import AuditEvent, Unparsed, Verdict, join_host_port
from sentinel.runtime.conntrack import ConntrackJudge, conntrack_probe
from sentinel.runtime.egress import FlowJudge, judge_capture_file
from sentinel.runtime.health import HealthMonitor, SensorReading
from sentinel.runtime.mlflow_wiring import reconstructing_parser
from sentinel.runtime.rules_wiring import (
    RulesRecorder,
    load_audit_rules,
    syslog_from_settings,
    webhook_from_settings,
)
from sentinel.timefmt import utcnow

log = logging.getLogger(__name__)

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")
#: seconds a capture file must stay unchanged before it is read (the writer has finished)
SETTLE_SECONDS = 2.0


class Worker(Protocol):
    """Anything the service starts and stops: tailers, receivers, captures."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Service:
    """One running Sentinel. Construct, ``start()``, later ``stop()`` (or ``run_forever()``)."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._started = False
        self._workers: list[Worker] = []
        self._metrics_server: MetricsServer | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._judge: FlowJudge | None = None
        self._conntrack: ConntrackJudge | None = None
        #: sensor health (silences, drops, gaps) of every source; set by ``start``
        self.health: HealthMonitor | None = None
        self._netflow_judge: _NetflowWorker | None = None
        self.netflow: NetflowCollector | None = None
        self._webhook: WebhookReceiver | None = None
        self._seen_captures: dict[Path, tuple[int, float]] = {}
        #: packets judged from ``capture.pcap_dir`` and its files that could not be read
        #: (the sensor-health probe of that source)
        self._pcap_dir_packets = 0
        self._pcap_dir_unreadable = 0
        self.ledger: Ledger | None = None
        self.geo: GeoHandle | None = None
        self.geo_secondary: GeoHandle | None = None
        self.policy: EgressPolicy | None = None
        self.recorder: RulesRecorder | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the ledger, load policy and GeoIP, start every configured source.

        Raises ``SentinelError`` (after undoing what was started) when something cannot start.
        """
        s = self.settings
        try:
            load_signer(s)  # fail fast: without its key the ledger cannot be pinned
            check_checkpoint_dir(s)  # as `ledger checkpoint --sign`: refused before any source
            trust_from_settings(s)  # tsa_ca_file / tsa_cert readable now, not at a checkpoint
            self.ledger = Ledger.open(
                s.ledger_url, log_id=s.ledger.log_id, anchor=anchor_from_settings(s)
            )
            self.metrics.ledger_records.set(self.ledger.size())
            self.policy = EgressPolicy.load(s.resolve(s.policy.egress))
            if s.geoip.database is not None:
                self.geo = self._open_geo(s.geoip.database, primary=True)
            if s.geoip.secondary is not None:
                self.geo_secondary = self._open_geo(s.geoip.secondary, primary=False)
            ruleset = load_audit_rules(s)
            engine = AuditRuleEngine(ruleset.rules, geo=self.geo, policy=self.policy)
            self.recorder = RulesRecorder(self.ledger, self.metrics, engine)
            self.health = HealthMonitor(
                self.recorder,
                self.metrics,
                silence_after=s.health.silence_after,
                summary_interval=s.health.summary_interval,
            )
            if s.metrics.enabled:
                host, port = _split(s.metrics.listen)
                with self._listening("metrics.listen", s.metrics.listen):
                    self._metrics_server = self.metrics.serve(host, port)
                log.info("metrics on http://%s:%d/metrics", host, self._metrics_server.port)
            self._start_scheduler()
            self._start_sources()
            self._started = True
        except BaseException:
            self.stop()
            raise

    def _open_geo(self, path: Path, *, primary: bool) -> GeoHandle:
        """Open a GeoIP database that reloads itself when its file is replaced.

        A refused new file (broken, wrong type) keeps the old one serving; the reload is
        counted in ``sentinel_geoip_reloads_total{result="refused"}`` and logged.
        """
        which = "primary" if primary else "secondary"

        def on_reload(result: ReloadResult) -> None:
            self.metrics.geoip_reloads.labels(which, "ok" if result.ok else "refused").inc()
            if result.ok and primary and result.provenance is not None:
                self.metrics.geoip_build_time.set(result.provenance.build_epoch)
            if not result.ok:
                log.error(
                    "GeoIP %s: new file refused, previous one still serving: %s",
                    which,
                    result.error,
                )

        snapshots = self.settings.resolve(self.settings.sentinel.state_dir) / "geoip"
        snapshots.mkdir(parents=True, exist_ok=True)
        handle = GeoHandle.open(
            self.settings.resolve(path), snapshot_dir=snapshots, on_reload=on_reload
        )
        if primary:
            self.metrics.geoip_build_time.set(handle.provenance.build_epoch)
        handle.start()
        return handle

    @property
    def webhook_url(self) -> str:
        """``http://host:port/path`` of the running webhook; ``SentinelError`` when it is off."""
        if self._webhook is None:
            raise SentinelError("the webhook is not enabled ([webhook] enabled = true)")
        host, port = self._webhook.server_address
        return f"http://{join_host_port(host, port)}{self._webhook.path}"

    @property
    def metrics_port(self) -> int | None:
        """The port the metrics endpoint bound (``None`` when it is off)."""
        return self._metrics_server.port if self._metrics_server else None

    def _start_scheduler(self) -> None:
        s = self.settings
        sched = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        )
        sched.add_job(
            self._guard("verify", self.verify_ledger),
            "interval",
            hours=1,
            next_run_time=utcnow(),
            id="ledger-verify",
        )
        if s.capture.pcap_dir:
            sched.add_job(
                self._guard("pcap-dir", self.scan_pcap_dir),
                "interval",
                seconds=SETTLE_SECONDS,
                next_run_time=utcnow(),
                id="pcap-dir",
            )
        if s.capture.interface:
            sched.add_job(
                self._guard("capture", self._flush_flows),
                "interval",
                seconds=max(1.0, min(s.capture.idle_timeout, 10.0)),
                id="flow-flush",
            )
        if s.conntrack.enabled:
            sched.add_job(
                self._guard("conntrack", self._flush_conntrack),
                "interval",
                seconds=max(1.0, min(s.conntrack.active_timeout, 10.0)),
                id="conntrack-flush",
            )
        sched.add_job(
            self._guard("health", self.check_health),
            "interval",
            seconds=max(1.0, min(30.0, s.health.silence_after / 4)),
            id="sensor-health",
        )
        if s.netflow is not None:
            sched.add_job(
                self._guard("netflow", self._flush_netflow),
                "interval",
                seconds=s.netflow.flush_interval,
                id="netflow-flush",
            )
        sched.start()
        self._scheduler = sched

    def _start_sources(self) -> None:
        s = self.settings
        assert self.policy is not None and self.recorder is not None
        if s.capture.pcap_dir and self.health is not None:
            # capture files arrive now and then: judged silent after the (longer) audit limit
            self.health.add_source(
                f"pcap-dir:{s.capture.pcap_dir}",
                "capture",
                lambda: SensorReading(
                    self._pcap_dir_packets, {"unreadable_captures": self._pcap_dir_unreadable}
                ),
                silence_after=s.health.audit_silence_after,
            )
        if s.capture.interface:
            self._judge = FlowJudge(
                LiveCapture(
                    s.capture.interface,
                    self.policy.local_networks,
                    bpf=s.capture.bpf,
                    max_flows=s.capture.max_flows,
                    dns=s.dns.options(),
                ),
                self.policy,
                self.geo,
                self.recorder,
                idle_timeout=s.capture.idle_timeout,
                active_timeout=s.capture.active_timeout,
                secondary=self.geo_secondary,
            )
            self._add_worker(self._judge)
            self._watch(self._judge.source, "capture", _capture_probe(self._judge))
        if s.conntrack.enabled:
            ct = ConntrackSource(
                self.policy.local_networks,
                netns=s.conntrack.netns,
                max_entries=s.conntrack.max_entries,
                rcvbuf_bytes=s.conntrack.rcvbuf_bytes,
            )
            self._conntrack = ConntrackJudge(
                ct,
                self.policy,
                self.geo,
                self.recorder,
                active_timeout=s.conntrack.active_timeout,
                secondary=self.geo_secondary,
            )
            self._add_worker(self._conntrack)
            self._watch(ct.name, "conntrack", lambda: conntrack_probe(ct))
        if s.netflow is not None:
            with self._listening("netflow.listen", s.netflow.listen):
                self._add_worker(self._make_netflow(s.netflow))
            assert self.netflow is not None
            self._watch(self.netflow.source, "netflow", _netflow_probe(self.netflow))
        for spec in s.audit.files:
            tailer = self._make_tailer(spec)
            self._add_worker(tailer)
            self._watch(
                f"file:{spec.id}",
                "audit",
                losses=_tail_losses(tailer),
            )
        if s.webhook.enabled:
            with self._listening("webhook.listen", s.webhook.listen):
                webhook = self._make_webhook()
            self._add_worker(webhook)
            sources = {s.webhook.source, *(r.source for r in s.webhook.routes)}
            if s.webhook.mlflow_secret_file is not None:
                sources.add(s.webhook.mlflow_source)
            for source in sorted(sources):
                self._watch(f"webhook:{source}", "audit")
        if s.syslog.enabled:
            with self._listening("syslog.listen", s.syslog.listen):
                syslog = syslog_from_settings(s, self._deliver_syslog)
            self._add_worker(syslog)
            self._watch(f"syslog:{s.syslog.source}", "audit")

    def _watch(
        self,
        source: str,
        kind: Literal["audit", "capture", "conntrack", "netflow"],
        probe: Callable[[], SensorReading] | None = None,
        *,
        losses: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        """Let the health monitor watch ``source`` (audit sources get the audit silence)."""
        if self.health is None or source in self.health.sources:
            return
        silence = self.settings.health.audit_silence_after if kind == "audit" else None
        self.health.add_source(source, kind, probe, silence_after=silence, losses=losses)

    @contextmanager
    def _listening(self, key: str, address: str) -> Iterator[None]:
        """Turn a failed bind of ``address`` (port in use, address not local) into a
        ``ConfigError`` naming ``key``: one line and exit 2, never a traceback."""
        try:
            yield
        except OSError as exc:
            raise ConfigError(
                str(self.settings.path),
                f"cannot listen on {address}: {exc.strerror or exc}",
                key=key,
            ) from exc
        except CaptureError as exc:
            cause = exc.__cause__
            if not isinstance(cause, OSError):
                raise
            raise ConfigError(
                str(self.settings.path),
                f"cannot listen on {address}: {cause.strerror or cause}",
                key=key,
            ) from exc

    def _add_worker(self, worker: Worker) -> None:
        worker.start()
        self._workers.append(worker)

    def _make_netflow(self, section: NetflowSection) -> Worker:
        """The NetFlow/IPFIX collector on ``[netflow] listen``, judged like live capture."""
        assert self.policy is not None and self.recorder is not None
        host, port = _split(section.listen)
        collector = NetflowCollector(
            [str(n) for n in self.policy.local_networks],
            host=host,
            port=port,
            limits=Limits(
                max_datagram=section.max_datagram_bytes,
                max_exporters=section.max_exporters,
                max_templates_per_exporter=section.max_templates_per_exporter,
                max_pending_sets=section.max_pending_sets,
                max_pending_bytes=section.max_pending_bytes,
                exporter_idle_timeout=section.exporter_idle_timeout,
                pending_max_age=section.pending_max_age,
            ),
            rcvbuf_bytes=section.rcvbuf_bytes,
        )
        self.netflow = collector
        self._netflow_judge = _NetflowWorker(
            FlowJudge(
                collector,
                self.policy,
                self.geo,
                self.recorder,
                idle_timeout=self.settings.capture.idle_timeout,
                active_timeout=self.settings.capture.active_timeout,
                secondary=self.geo_secondary,
                source=collector.source,
            ),
            self._netflow_bookkeeping,
        )
        return self._netflow_judge

    def _flush_netflow(self) -> None:
        """Judge the flows received since the last flush; record unparsed datagrams; update
        the NetFlow metrics."""
        if self._netflow_judge is not None:
            self._netflow_judge.flush()

    def _netflow_bookkeeping(self) -> None:
        collector = self.netflow
        if collector is None or self.recorder is None:
            return
        unparsed = collector.take_unparsed()
        if unparsed:
            self.recorder.record_audit(unparsed)
        with collector.lock:
            self.metrics.observe_netflow(collector.stats, collector.kernel_drops)

    def _make_tailer(self, spec: AuditFile) -> FileTailer | GlobTailer:
        """A tailer for one ``[[audit.files]]`` entry, its parser built with the entry's
        zone and (``jsonmap``) mapping file. Raises ``ConfigError`` naming the entry."""
        assert self.ledger is not None
        mapping = self.settings.resolve(spec.mapping) if spec.mapping is not None else None
        try:
            parser = build_parser(spec.format, make_options(spec.zone, mapping))
        except ConfigError as exc:
            raise ConfigError(
                str(self.settings.path), f"{exc.problem}", key=f"audit.files[{spec.id}]"
            ) from exc
        if spec.mlflow_rest is not None:
            counter = self.metrics.mlflow_reconstructions
            parser = reconstructing_parser(
                parser,
                spec.mlflow_rest,
                self.settings.resolve,
                config_path=str(self.settings.path),
                key=f"audit.files[{spec.id}].mlflow_rest",
                on_result=lambda result: counter.labels(spec.id, result).inc(),
            )

        health_id = f"file:{spec.id}"

        def deliver(batch: TailBatch) -> None:
            self._deliver_tailed(batch)
            if self.health is not None:
                self.health.touch(health_id, batch.lines)

        def on_error(exc: BaseException) -> None:  # the pass is logged and retried
            self.metrics.source_errors.labels(health_id).inc()

        path = self.settings.resolve(spec.path)
        tailer = GlobTailer if is_glob(spec.path) else FileTailer  # one cursor per file
        return tailer(
            path,
            spec.id,
            parser,
            self.ledger,
            deliver,
            poll_interval=self.settings.audit.poll_interval,
            on_error=on_error,
        )

    def _make_webhook(self) -> Worker:
        w = self.settings.webhook
        token_path = self.settings.resolve(w.token_file)
        try:
            token = token_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                str(self.settings.path),
                f"cannot read {token_path}: {exc.strerror}",
                key="webhook.token_file",
            ) from exc
        if len(token) < 16:
            raise ConfigError(
                str(self.settings.path),
                f"token in {token_path} is shorter than 16 characters",
                key="webhook.token_file",
            )
        receiver = webhook_from_settings(self.settings, self._deliver_webhook, token)
        receiver.on_reject = lambda status: self.metrics.webhook_rejected.labels(str(status)).inc()
        self._webhook = receiver
        return receiver

    def _deliver_tailed(self, batch: TailBatch) -> None:
        assert self.recorder is not None
        self.recorder.record_audit(batch.records, cursors={batch.cursor_key: batch.cursor_value})

    def _deliver_webhook(self, items: list[AuditEvent | Unparsed]) -> None:
        assert self.recorder is not None
        self.recorder.record_audit(items)
        self._touch_audit("webhook", items)

    def _deliver_syslog(self, items: list[AuditEvent | Unparsed]) -> None:
        assert self.recorder is not None
        self.recorder.record_audit(items)
        self._touch_audit("syslog", items)

    def _touch_audit(self, channel: str, items: list[AuditEvent | Unparsed]) -> None:
        if self.health is not None:
            for source, n in Counter(i.source for i in items).items():
                self.health.touch(f"{channel}:{source}", n)

    def stop(self) -> None:
        """Stop intake, drain, stop the scheduler and metrics, close the ledger. Idempotent."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            for worker in reversed(self._workers):
                try:
                    worker.stop()
                except SentinelError as exc:
                    log.error("stopping %r: %s", worker, exc.diagnostics())
                except Exception:  # a broken worker must not block the rest of shutdown
                    log.exception("stopping %r failed", worker)
            self._workers.clear()
            if self.recorder is not None:
                try:
                    self.recorder.flush_findings()
                except SentinelError as exc:
                    log.error("could not record the last audit findings: %s", exc.diagnostics())
            if self._scheduler is not None:
                self._scheduler.shutdown(wait=True)
                self._scheduler = None
            if self.health is not None and self._started:
                try:  # a last summary of every source, up to the stop
                    self.health.close()
                except SentinelError as exc:
                    log.error("last sensor-health summary: %s", exc.diagnostics())
            if self.ledger is not None and self._started:
                try:  # pin everything recorded up to the stop
                    self.sign_checkpoint()
                except SentinelError as exc:
                    log.error("final checkpoint: %s", exc.diagnostics())
            if self._metrics_server is not None:
                self._metrics_server.stop()
                self._metrics_server = None
            for handle in (self.geo, self.geo_secondary):
                if handle is not None:
                    handle.close()
            if self.ledger is not None:
                self.ledger.close()
            self._stopped.set()

    def run_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT, then ``stop()`` cleanly."""
        wake = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            wake.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            log.info("sentinel running")
            wake.wait()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- periodic jobs ----------------------------------------------------------------------

    def _guard(self, source: str, job: Callable[[], Any]) -> Callable[[], None]:
        """Run ``job``; a failure is logged and counted, never kills the scheduler."""

        def run() -> None:
            try:
                job()
            except SentinelError as exc:
                self.metrics.source_errors.labels(source).inc()
                log.error("%s: %s", source, exc.diagnostics())
            except Exception:
                self.metrics.source_errors.labels(source).inc()
                log.exception("%s failed", source)

        return run

    def sign_checkpoint(self) -> None:
        """Sign a checkpoint of the ledger now (C2SP tlog-checkpoint) and append it to the
        external checkpoint log. A ledger that no longer extends the last checkpoint is
        refused (``ConsistencyError``): logged, counted, alerted on — never signed. With a
        TSA configured, the time-stamp's result is counted (never raised)."""
        assert self.ledger is not None
        try:
            signed = make_checkpoint(self.ledger, self.settings)
        except ConsistencyError:
            self.metrics.ledger_checkpoint_refused.inc()
            raise
        stamp = signed.timestamp
        if stamp is not None and stamp.result != "stored":
            self.metrics.ledger_timestamps.labels(stamp.result).inc()
        self.metrics.ledger_checkpoint_size.set(signed.size)
        self.metrics.ledger_checkpoint_time.set(utcnow().timestamp())

    def verify_ledger(self) -> dict[str, Any]:
        """Verify the whole ledger now; sets the verification gauges; returns the result."""
        assert self.ledger is not None
        result = self.ledger.verify()
        self.metrics.ledger_verify_valid.set(1 if result.ok else 0)
        self.metrics.ledger_verify_time.set(utcnow().timestamp())
        self.metrics.ledger_records.set(result.size)
        if not result.ok:
            log.error(
                "ledger verification: %s at seq %s: %s",
                result.status,
                result.first_bad_seq,
                result.problem,
            )
        return result.to_json()

    def scan_pcap_dir(self) -> int:
        """Judge capture files in ``capture.pcap_dir`` that finished being written.

        A file is read once it has not changed for ``SETTLE_SECONDS``; a file already recorded
        (same SHA-256) adds nothing. Returns the number of files judged in this pass.
        """
        assert self.policy is not None and self.recorder is not None
        directory = self.settings.resolve(self.settings.capture.pcap_dir)
        judged = 0
        now = utcnow().timestamp()
        for path in sorted(directory.iterdir() if directory.is_dir() else []):
            if not path.is_file() or not path.name.endswith(CAPTURE_SUFFIXES):
                continue
            st = path.stat()
            key = (st.st_size, st.st_mtime)
            if self._seen_captures.get(path) == key or now - st.st_mtime < SETTLE_SECONDS:
                continue
            self._seen_captures[path] = key
            try:
                outcome = judge_capture_file(
                    path,
                    self.policy,
                    self.geo,
                    self.recorder,
                    secondary=self.geo_secondary,
                    dns=self.settings.dns.options(),
                )
            except CaptureError as exc:
                self._pcap_dir_unreadable += 1
                self.metrics.source_errors.labels("pcap-dir").inc()
                log.error("%s: %s", path, exc.diagnostics())
                continue
            judged += 1
            if outcome.result.appended:  # a capture already recorded adds no evidence
                self._pcap_dir_packets += outcome.stats.packets
            log.info(
                "%s: %d packets, %d flows, %d violations%s",
                path.name,
                outcome.stats.packets,
                len(outcome.verdicts),
                outcome.violations,
                " (already recorded)" if not outcome.result.appended else "",
            )
        return judged

    def _flush_findings(self) -> None:
        if self.recorder is not None:
            self.recorder.flush_findings(utcnow())

    def _flush_flows(self) -> None:
        if self._judge is not None:
            self._judge.flush()

    def _flush_conntrack(self) -> None:
        if self._conntrack is not None:
            self._conntrack.flush()

    def check_health(self) -> int:
        """Record sensor-health transitions and due summaries now (``HealthMonitor.check``);
        returns the number of ``sensor_health`` records appended."""
        return self.health.check() if self.health is not None else 0


def _capture_probe(judge: FlowJudge) -> Callable[[], SensorReading]:
    capture = judge.capture
    assert isinstance(capture, LiveCapture)
    return lambda: SensorReading(capture.packets, {"drops": capture.kernel_drops or 0})


def _netflow_probe(collector: NetflowCollector) -> Callable[[], SensorReading]:
    """Health probe: flow records decoded; losses from sequence numbers (records or export
    packets, see ``SequenceStats``), data sets whose template never came, kernel drops."""

    def probe() -> SensorReading:
        with collector.lock:
            stats = collector.stats
            return SensorReading(
                stats.records,
                {
                    "sequence_gaps": stats.sequence_lost,
                    "missing_templates": stats.missing_template_sets,
                    "drops": collector.kernel_drops or 0,
                },
            )

    return probe


class _NetflowWorker:
    """A ``FlowJudge`` over a ``NetflowCollector`` plus ``after`` (unparsed datagrams to the
    ledger, NetFlow metrics), run after every flush and at stop."""

    def __init__(self, judge: FlowJudge, after: Callable[[], None]) -> None:
        self.judge = judge
        self.after = after

    def start(self) -> None:
        self.judge.start()

    def flush(self) -> list[Verdict]:
        verdicts = self.judge.flush()
        self.after()
        return verdicts

    def stop(self) -> None:
        self.judge.stop()
        self.after()


def _tail_losses(tailer: FileTailer | GlobTailer) -> Callable[[], dict[str, int]]:
    """Health loss counters of a tailer: its failed passes (``TailStats.failed_passes``)."""
    return lambda: {"failed_passes": tailer.stats.failed_passes}


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)
