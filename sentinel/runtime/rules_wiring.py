"""Wiring for audit rules and the extended receivers (webhook routes, syslog) in the daemon.

``RulesRecorder`` is a drop-in ``Recorder``: ``record_audit`` appends the events as before and
then evaluates the audit rules on the events the ledger *accepted* (a redelivered webhook or a
re-read line is not evaluated twice), appends the resulting ``audit_finding`` records (with
dedup keys) and counts every hit in ``sentinel_audit_findings_total{rule, severity}``.

Events and their findings are two appends: if the findings append fails, the findings are
kept in memory (at most ``MAX_PENDING``) and retried with the next batch or at
``flush_findings``; the error is logged and counted as ``sentinel_source_errors_total
{source="audit-rules"}``, never raised into the source (the events are already durable).

Wiring (in ``Service.start``, instead of ``Recorder(...)``)::

    ruleset = load_audit_rules(s)                  # bad files: logged, the rest load
    engine = AuditRuleEngine(ruleset.rules, geo=self.geo, policy=self.policy)
    self.recorder = RulesRecorder(self.ledger, self.metrics, engine)
    # _start_scheduler: close aggregation periods that ended
    sched.add_job(self._guard("audit-rules", lambda: self.recorder.flush_findings(utcnow())),
                  "interval", seconds=60, id="audit-rules-flush")
    # stop(): after the workers stopped, before the scheduler/ledger close
    self.recorder.flush_findings()

``attach_rules(service)`` does exactly that on a started ``Service`` (used by the end-to-end
tests until the service does it itself).

Receivers from the configuration (instead of ``WebhookReceiver(...)`` in
``Service._make_webhook``, and a new worker for ``[syslog]``)::

    receiver = webhook_from_settings(settings, self._deliver_webhook, token)
    if settings.syslog.enabled:
        self._add_worker(syslog_from_settings(settings, self._deliver_webhook))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sentinel.audit.parsers import get_parser
from sentinel.audit.syslog import SyslogReceiver
from sentinel.audit.webhook import (
    JSON_TYPES,
    MLFLOW_CAPTURE_HEADERS,
    BearerAuth,
    Deliver,
    HmacSha256Auth,
    MLflowSignatureAuth,
    RateLimit,
    Route,
    WebhookReceiver,
    make_ssl_context,
    mlflow_route,
    mlflow_verified_parser,
)
from sentinel.config import Settings
from sentinel.errors import ConfigError
from sentinel.ledger import AppendResult, Ledger
from sentinel.metrics import Metrics
from sentinel.policy.audit_rules import AuditRuleEngine, Finding, Hit, RuleSet, load_rules
from sentinel.records import AuditEvent, Unparsed
from sentinel.resources import rules_dir
from sentinel.runtime.recorder import Recorder

if TYPE_CHECKING:
    from sentinel.runtime.service import Service

log = logging.getLogger(__name__)

MAX_PENDING = 10_000


def default_rule_paths(settings: Settings | None = None) -> list[Path]:
    """Where the daemon reads audit rules: ``[policy] audit_rules`` when the configuration
    sets it (a directory or file, relative to the config file), else the shipped
    ``rules/audit``."""
    if settings is not None and settings.policy.audit_rules is not None:
        return [settings.resolve(settings.policy.audit_rules)]
    return [rules_dir() / "audit"]


def load_audit_rules(
    settings: Settings | None = None, paths: Sequence[Path] | None = None
) -> RuleSet:
    """Load the rules (``paths``, else ``default_rule_paths(settings)``); each bad file is
    logged as an error and skipped."""
    ruleset = load_rules(paths if paths is not None else default_rule_paths(settings))
    for err in ruleset.errors:
        log.error("audit rule skipped: %s", err.diagnostics())
    log.info("audit rules loaded: %s", ", ".join(r.id for r in ruleset.rules) or "none")
    return ruleset


class RulesRecorder(Recorder):
    """``Recorder`` + audit rules (see the module docstring)."""

    def __init__(self, ledger: Ledger, metrics: Metrics, engine: AuditRuleEngine) -> None:
        super().__init__(ledger, metrics)
        self.engine = engine
        self._pending: list[Finding] = []
        self._lock = threading.Lock()

    def record_audit(
        self,
        items: Sequence[AuditEvent | Unparsed],
        *,
        cursors: Mapping[str, str] | None = None,
    ) -> AppendResult:
        result = super().record_audit(items, cursors=cursors)
        fresh = [items[i] for i in result.accepted]
        events = [i for i in fresh if isinstance(i, AuditEvent)]
        if events or self._pending:
            findings, hits = self.engine.observe(events)
            self._record(findings, hits)
        return result

    def flush_findings(self, now: datetime | None = None) -> list[Finding]:
        """Close aggregation periods that ended before ``now`` (``None``: all, at shutdown)
        and record them; returns what was recorded (or is pending)."""
        findings = self.engine.flush(now)
        self._record(findings, [])
        return findings

    def _record(self, findings: list[Finding], hits: list[Hit]) -> None:
        for hit in hits:
            self.metrics.audit_findings.labels(hit.rule, hit.severity).inc()
        with self._lock:
            batch = self._pending + findings
            self._pending = []
            if not batch:
                return
            try:
                result = self.ledger.append(
                    [f.to_ledger_record() for f in batch], dedup_keys=[f.dedup_key for f in batch]
                )
            except Exception:
                self._pending = batch[-MAX_PENDING:]
                self.metrics.source_errors.labels("audit-rules").inc()
                log.exception("recording %d audit findings failed; will retry", len(batch))
                return
        for f in batch:
            log.warning("audit finding [%s/%s] %s (x%d)", f.rule, f.severity, f.message, f.count)
        self._after_append(result, [f.to_ledger_record() for f in batch])


def webhook_from_settings(settings: Settings, deliver: Deliver, token: str) -> WebhookReceiver:
    """The ``[webhook]`` receiver: the distribution route (bearer ``token``) on
    ``/notifications``, the MLflow route on ``/mlflow`` when ``mlflow_secret_file`` is set,
    every ``[[webhook.routes]]`` table, the rate limit and TLS. Raises ``ConfigError`` (key
    named) for unreadable or short secrets, unknown formats and duplicate paths."""
    w = settings.webhook
    routes = []
    if w.mlflow_secret_file is not None:
        secret = _read_secret(settings, w.mlflow_secret_file, "webhook.mlflow_secret_file")
        routes.append(
            mlflow_route(secret, source=w.mlflow_source, max_skew_seconds=w.signature_max_age)
        )
    for index, spec in enumerate(w.routes):
        key = f"webhook.routes.{index}"
        secret = _read_secret(settings, spec.secret_file, f"{key}.secret_file")
        try:
            parser = get_parser(spec.format)
        except ConfigError as exc:
            raise ConfigError(str(settings.path), exc.problem, f"{key}.format") from exc
        if spec.format == "mlflow-webhook":
            # config (WebhookRoute) allows only auth = "mlflow-signature" here: the receiver
            # verifies every delivery, so the parser does not mark its events unverified
            parser = mlflow_verified_parser()
        auth: BearerAuth | MLflowSignatureAuth | HmacSha256Auth
        if spec.auth == "bearer":
            auth = BearerAuth(secret)
        elif spec.auth == "mlflow-signature":
            auth = MLflowSignatureAuth(secret, w.signature_max_age)
        else:
            auth = HmacSha256Auth(secret)
        capture = MLFLOW_CAPTURE_HEADERS if spec.auth == "mlflow-signature" else ()
        routes.append(Route(spec.path, spec.source, parser, auth, JSON_TYPES, capture))
    paths = [r.path for r in routes] + ["/notifications"]
    if len(set(paths)) != len(paths):
        raise ConfigError(str(settings.path), "two webhook routes share a path", "webhook.routes")
    if (w.tls_cert is None) != (w.tls_key is None):
        raise ConfigError(
            str(settings.path), "set both tls_cert and tls_key, or neither", "webhook.tls_cert"
        )
    ctx = None
    if w.tls_cert is not None and w.tls_key is not None:
        ctx = make_ssl_context(settings.resolve(w.tls_cert), settings.resolve(w.tls_key))
    host, _, port = w.listen.rpartition(":")
    return WebhookReceiver(
        deliver,
        token=token,
        source=w.source,
        listen=(host.strip("[]"), int(port)),
        max_body_bytes=w.max_body_bytes,
        routes=routes,
        rate_limit=RateLimit(rate=w.rate_limit, burst=w.rate_burst),
        ssl_context=ctx,
    )


def syslog_from_settings(settings: Settings, deliver: Deliver) -> SyslogReceiver:
    """The ``[syslog]`` receiver. Raises ``ConfigError`` for an unknown ``format``."""
    s = settings.syslog
    try:
        parser = get_parser(s.format)
    except ConfigError as exc:
        raise ConfigError(str(settings.path), exc.problem, "syslog.format") from exc
    host, _, port = s.listen.rpartition(":")
    return SyslogReceiver(
        deliver,
        parser,
        source=s.source,
        listen=(host.strip("[]"), int(port)),
        max_line=s.max_line_bytes,
        max_connections=s.max_connections,
        idle_timeout=s.idle_timeout,
    )


def _read_secret(settings: Settings, path: Path, key: str) -> str:
    full = settings.resolve(path)
    try:
        secret = full.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(str(settings.path), f"cannot read {full}: {exc.strerror}", key) from exc
    if len(secret) < 16:
        raise ConfigError(
            str(settings.path), f"secret in {full} is shorter than 16 characters", key
        )
    return secret


def attach_rules(service: Service, paths: Sequence[Path] | None = None) -> RulesRecorder:
    """Give a started ``Service`` a ``RulesRecorder`` (its sources look ``service.recorder``
    up on every delivery). Returns it; raises ``RuntimeError`` when the service is not
    started."""
    if service.ledger is None:
        raise RuntimeError("start the service before attaching audit rules")
    ruleset = load_audit_rules(service.settings, paths)
    engine = AuditRuleEngine(ruleset.rules, geo=service.geo, policy=service.policy)
    recorder = RulesRecorder(service.ledger, service.metrics, engine)
    service.recorder = recorder
    return recorder
