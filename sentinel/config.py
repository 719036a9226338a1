"""Sentinel's configuration file (TOML), validated into frozen, typed settings.

Lookup order when no ``--config`` is given: ``./sentinel.toml``, then
``/etc/sentinel/sentinel.toml``. Relative paths inside the file are resolved against the
directory that holds the file. Every problem raises ``ConfigError`` naming the file, the dotted
key and what is wrong; the CLI turns it into one line on stderr and exit code 2.

The commented default written by ``sentinel init`` is ``DEFAULT_CONFIG_TOML`` below; it is the
reference for every key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sentinel.errors import ConfigError

if TYPE_CHECKING:  # imported when used: loading dnspython costs ~0.1 s at every start
    from sentinel.flows.dns import DnsOptions

SEARCH_PATH = (Path("sentinel.toml"), Path("/etc/sentinel/sentinel.toml"))

#: every ``[[audit.files]] format`` (one parser each, sentinel/audit/parsers)
AuditFormat = Literal[
    "distribution-json",
    "distribution-text",
    "distribution-access",
    "distribution-notifications",
    "harbor-audit-syslog",
    "harbor-audit-file",
    "harbor-webhook",
    "harbor-nginx",
    "minio-audit",
    "minio-notification",
    "mlflow-access",
    "mlflow-webhook",
    "zot-audit",
    "k8s-audit",
    "jsonmap",
]
AUDIT_FORMATS: tuple[str, ...] = get_args(AuditFormat)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SentinelSection(_Section):
    #: where cursors, the ledger (SQLite) and reports live
    state_dir: Path = Path("state")
    #: Python logging level name
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: registry instance id used when a source does not name one
    instance: str = "registry"


class LedgerSection(_Section):
    #: SQLAlchemy URL; ``sqlite:///relative/path.db`` is resolved against the config directory
    url: str = "sqlite:///state/ledger.db"
    #: Ed25519 private key (PEM, PKCS#8) used to sign checkpoints; mode 0600
    signing_key: Path = Path("keys/ledger-ed25519.pem")
    #: log id: one database may hold several independent ledgers
    log_id: str = "sentinel"
    #: external append-only checkpoint log directory; must not be the database's directory
    checkpoint_dir: Path = Path("checkpoints")
    #: seconds between signed checkpoints made by the daemon
    checkpoint_interval: Annotated[float, Field(gt=0, le=86400)] = 300.0
    #: checkpoint origin line and key name ("" = ``sentinel/<log_id>``)
    origin: str = ""
    #: RFC 3161 time-stamping authority (http:// or https:// URL; "" = off), see
    #: ``sentinel.ledger.tsa``; needs ``tsa_ca_file``
    tsa_url: str = ""
    #: PEM certificates the TSA's certificate must chain to (root, and intermediates)
    tsa_ca_file: Path | None = None
    #: PEM certificate the TSA must sign with (pinned; unset: any TSA certificate under the CA)
    tsa_cert: Path | None = None
    #: seconds to wait for the TSA
    tsa_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    #: digest of the checkpoint sent to the TSA
    tsa_hash: Literal["sha256", "sha512"] = "sha256"

    @field_validator("tsa_url")
    @classmethod
    def _tsa_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError('expected an http:// or https:// URL, or "" (off)')
        return value

    @model_validator(mode="after")
    def _tsa_needs_ca(self) -> LedgerSection:
        if self.tsa_url and self.tsa_ca_file is None:
            raise ValueError("tsa_url needs tsa_ca_file (the CA its certificate chains to)")
        return self


class GeoIPSection(_Section):
    #: a MaxMind-format (.mmdb) database: MaxMind, DB-IP, IPinfo
    database: Path | None = None
    #: optional second database; its disagreement is flagged on verdicts, never decides
    secondary: Path | None = None


class PolicySection(_Section):
    #: egress policy (YAML); see rules/egress-policy.yaml
    egress: Path = Path("policy.yaml")
    #: audit rules: a directory of rule files or one file (``None``: the shipped rules/audit)
    audit_rules: Path | None = None


class CaptureSection(_Section):
    #: live capture interface ("" = off)
    interface: str = ""
    #: BPF filter for live capture
    bpf: str = "ip or ip6 or (vlan and (ip or ip6))"
    #: a directory watched for finished .pcap/.pcapng files ("" = off)
    pcap_dir: str = ""
    #: seconds of silence after which a flow is closed and judged
    idle_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    #: seconds after which a long flow is judged even if still active
    active_timeout: Annotated[float, Field(gt=0, le=86400)] = 300.0
    #: upper bound on flows held in memory (oldest judged early when reached)
    max_flows: Annotated[int, Field(gt=0)] = 200_000


class MlflowRest(_Section):
    """``[audit.files.mlflow_rest]``: where an ``mlflow-access`` line does not name its model,
    ask the tracking server (sentinel.audit.mlflow_rest). Secrets come from a file or an
    environment variable, never from this file."""

    #: the tracking server's base URL, http(s), without credentials (e.g. http://127.0.0.1:5000)
    url: Annotated[str, Field(pattern=r"^https?://[^/@?#\s]+(/[^?#\s]*)?$")]
    #: basic auth (MLflow's basic-auth app): user name; password from password_file/password_env
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    #: bearer token instead (``Authorization: Bearer …``), from a file or a variable
    token_file: Path | None = None
    token_env: str | None = None
    #: seconds per request; after a failure no request for ``retry_after`` seconds
    timeout: Annotated[float, Field(gt=0, le=30)] = 2.0
    retry_after: Annotated[float, Field(ge=0, le=3600)] = 30.0
    #: seconds either side of the line's second within which a change is matched
    match_window: Annotated[float, Field(ge=0, le=300)] = 2.0
    #: entries per cache, and seconds a lookup is reused
    cache_size: Annotated[int, Field(ge=16, le=1_000_000)] = 1024
    cache_ttl: Annotated[float, Field(ge=0, le=3600)] = 60.0

    @model_validator(mode="after")
    def _one_credential(self) -> MlflowRest:
        password = (self.password_file, self.password_env)
        token = (self.token_file, self.token_env)
        if all(p is not None for p in password) or all(t is not None for t in token):
            raise ValueError("give the secret as a file or as a variable, not both")
        if any(p is not None for p in password) and self.username is None:
            raise ValueError("a password needs a username")
        if self.username is not None and not any(p is not None for p in password):
            raise ValueError("username needs password_file or password_env")
        if self.username is not None and any(t is not None for t in token):
            raise ValueError("basic auth (username) or a token, not both")
        return self


class ConntrackSection(_Section):
    """Flows from the Linux connection tracker (``sentinel.flows.conntrack``)."""

    enabled: bool = False
    #: a named network namespace (``ip netns``) to watch; "" = Sentinel's own
    netns: str = ""
    #: seconds after which a long connection is judged (with its counters so far) while open
    active_timeout: Annotated[float, Field(gt=0, le=86400)] = 300.0
    #: upper bound on open connections held in memory (oldest reported early when reached)
    max_entries: Annotated[int, Field(gt=0)] = 262_144
    #: receive buffer of the event socket, bytes (an overrun loses events: counted, resynced)
    rcvbuf_bytes: Annotated[int, Field(ge=4096, le=1 << 30)] = 8 << 20


class HealthSection(_Section):
    """Sensor health (``sentinel.runtime.health``): silences, drops and gaps as evidence."""

    #: seconds without a packet or event after which a capture, conntrack or NetFlow source
    #: is recorded as silent
    silence_after: Annotated[float, Field(gt=0, le=86400)] = 300.0
    #: the same for audit sources (tailed logs, webhook, syslog), which are quiet at night
    audit_silence_after: Annotated[float, Field(gt=0, le=7 * 86400)] = 3600.0
    #: seconds between sensor_health summary records of each source
    summary_interval: Annotated[float, Field(ge=60, le=86400)] = 3600.0


class NetflowSection(_Section):
    """NetFlow v5/v9 and IPFIX collector (``sentinel.flows.netflow_collector``); on when the
    ``[netflow]`` table is present."""

    #: host:port (UDP); 127.0.0.1 unless you mean to expose it
    listen: str = "127.0.0.1:2055"
    #: seconds between judgments of the flows received
    flush_interval: Annotated[float, Field(gt=0, le=3600)] = 5.0
    #: largest datagram accepted, bytes (larger ones are refused and counted)
    max_datagram_bytes: Annotated[int, Field(ge=64, le=65535)] = 65535
    #: distinct exporter addresses kept; datagrams from more are refused and counted
    max_exporters: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    #: templates kept per exporter address (all observation domains)
    max_templates_per_exporter: Annotated[int, Field(ge=1, le=65536)] = 4096
    #: data sets buffered while their template has not arrived (oldest dropped and counted)
    max_pending_sets: Annotated[int, Field(ge=0, le=10_000_000)] = 10_000
    max_pending_bytes: Annotated[int, Field(ge=0, le=1 << 31)] = 16 * 1024 * 1024
    #: seconds without a datagram after which an exporter's templates, options data and
    #: sequence positions are forgotten (RFC 7011 §10.3.7: 3 × the longest common template
    #: refresh, 600 s)
    exporter_idle_timeout: Annotated[float, Field(gt=0, le=7 * 86400)] = 1800.0
    #: seconds a data set may wait for its template before it is dropped (counted)
    pending_max_age: Annotated[float, Field(gt=0, le=7 * 86400)] = 1800.0
    #: socket receive buffer, bytes
    rcvbuf_bytes: Annotated[int, Field(ge=65536, le=1 << 30)] = 8 * 1024 * 1024

    @field_validator("listen")
    @classmethod
    def _hostport(cls, value: str) -> str:
        return _check_hostport(value)


class DnsSection(_Section):
    """Names from DNS answers seen in captures, attached to flows (``sentinel.flows.dns``)."""

    #: read DNS answers (UDP/TCP port 53) in captures and name the flows that follow them
    enabled: bool = True
    #: seconds an answer names flows at least, whatever its TTL (flows start after the TTL)
    min_hold: Annotated[int, Field(ge=0, le=604_800)] = 3600
    #: seconds an answer names flows at most, whatever its TTL
    max_hold: Annotated[int, Field(ge=0, le=31_536_000)] = 604_800
    #: (address, answer) entries held in all; the least recently answered address goes first
    max_entries: Annotated[int, Field(gt=0, le=10_000_000)] = 100_000
    #: answers kept per address and names attached per flow
    max_names: Annotated[int, Field(gt=0, le=1000)] = 8

    @field_validator("max_hold")
    @classmethod
    def _hold(cls, value: int, info: ValidationInfo) -> int:
        if value < info.data.get("min_hold", 0):
            raise ValueError("must be at least min_hold")
        return value

    def options(self) -> DnsOptions | None:
        """The ``DnsOptions`` these settings describe, ``None`` when disabled."""
        from sentinel.flows.dns import DnsOptions

        if not self.enabled:
            return None
        return DnsOptions(self.min_hold, self.max_hold, self.max_entries, self.max_names)


class AuditFile(_Section):
    #: source id written into each event's ``source``
    id: str
    format: AuditFormat
    #: file to tail, or a glob (``*``, ``?``, ``[…]``, ``**``): every matching file, own cursor each
    path: Path
    #: IANA zone of times the source writes without one (syslog headers, uvicorn)
    zone: str = "UTC"
    #: ``jsonmap`` only: the field-mapping file (YAML/JSON; sentinel.audit.parsers.jsonmap)
    mapping: Path | None = None
    #: ``mlflow-access`` only: reconstruct unnamed models/versions from the REST API
    mlflow_rest: MlflowRest | None = None

    @field_validator("path")
    @classmethod
    def _valid_glob(cls, value: Path) -> Path:
        from sentinel.audit.globtailer import glob_problem, is_glob

        problem = glob_problem(value) if is_glob(value) else None
        if problem is not None:
            raise ValueError(f"bad glob {str(value)!r}: {problem}")
        return value

    @model_validator(mode="after")
    def _rest_for_mlflow(self) -> AuditFile:
        if self.mlflow_rest is not None and self.format != "mlflow-access":
            raise ValueError("mlflow_rest applies to format mlflow-access only")
        return self


class WebhookRoute(_Section):
    """One more webhook endpoint on the receiver (Harbor, MinIO, zot, another MLflow…)."""

    #: URL path, e.g. /harbor
    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9._~/-]*$")]
    #: source id for events received here
    source: str
    #: payload format (an audit format name, e.g. harbor-webhook, minio-audit)
    format: str
    #: bearer: `Authorization: Bearer <secret>`; mlflow-signature: X-MLflow-Signature;
    #: hmac-sha256: `X-Hub-Signature-256: sha256=<hex HMAC of the body>`
    auth: Literal["bearer", "mlflow-signature", "hmac-sha256"] = "bearer"
    #: file holding the token or secret (at least 16 characters)
    secret_file: Path

    @model_validator(mode="after")
    def _mlflow_is_signed(self) -> WebhookRoute:
        # MLflow signs its deliveries and sends no token: any other auth would take unsigned,
        # forgeable MLflow events
        if self.format == "mlflow-webhook" and self.auth != "mlflow-signature":
            raise ValueError('format mlflow-webhook needs auth = "mlflow-signature"')
        return self


class WebhookSection(_Section):
    enabled: bool = False
    #: host:port; 127.0.0.1 unless you mean to expose it
    listen: str = "127.0.0.1:9465"
    #: file holding the bearer token the registry sends (``Authorization: Bearer …``)
    token_file: Path = Path("keys/webhook.token")
    #: source id for events received here
    source: str = "registry"
    #: largest request body accepted, bytes
    max_body_bytes: Annotated[int, Field(gt=0, le=64 * 1024 * 1024)] = 1_048_576
    #: MLflow 3 webhooks on /mlflow, signed with the secret in this file (unset: route off)
    mlflow_secret_file: Path | None = None
    mlflow_source: str = "mlflow"
    #: seconds a signed delivery's timestamp may differ from now (replay window)
    signature_max_age: Annotated[int, Field(ge=1, le=86400)] = 300
    #: TLS: PEM certificate chain and private key (both or neither)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: per client address: sustained requests per second, and burst size
    rate_limit: Annotated[float, Field(gt=0)] = 20.0
    rate_burst: Annotated[int, Field(ge=1)] = 100
    #: further endpoints, one [[webhook.routes]] table each
    routes: tuple[WebhookRoute, ...] = ()

    @field_validator("listen")
    @classmethod
    def _hostport(cls, value: str) -> str:
        return _check_hostport(value)


class SyslogSection(_Section):
    """TCP syslog receiver (``sentinel.audit.syslog``), e.g. Harbor's audit log forwarding."""

    enabled: bool = False
    #: host:port; 127.0.0.1 unless you mean to expose it
    listen: str = "127.0.0.1:1514"
    #: source id for events received here
    source: str = "harbor"
    #: parser for each message (an audit format name, e.g. harbor-audit-syslog)
    format: str = "harbor-audit-syslog"
    #: largest message accepted, bytes (longer ones are kept as unparsed, truncated)
    max_line_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 65_536
    max_connections: Annotated[int, Field(ge=1, le=1024)] = 16
    #: seconds a silent connection is kept open
    idle_timeout: Annotated[float, Field(gt=0, le=86400)] = 300.0

    @field_validator("listen")
    @classmethod
    def _hostport(cls, value: str) -> str:
        return _check_hostport(value)


class AuditSection(_Section):
    files: tuple[AuditFile, ...] = ()
    #: seconds between polls of tailed files (file events wake the tailer sooner)
    poll_interval: Annotated[float, Field(gt=0, le=60)] = 1.0


class MetricsSection(_Section):
    enabled: bool = True
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _hostport(cls, value: str) -> str:
        return _check_hostport(value)


class Settings(_Section):
    """The whole validated configuration. ``path`` is the file it was read from."""

    path: Path = Path("sentinel.toml")
    sentinel: SentinelSection = SentinelSection()
    ledger: LedgerSection = LedgerSection()
    geoip: GeoIPSection = GeoIPSection()
    policy: PolicySection = PolicySection()
    capture: CaptureSection = CaptureSection()
    conntrack: ConntrackSection = ConntrackSection()
    health: HealthSection = HealthSection()
    #: ``None`` (no ``[netflow]`` table): the NetFlow/IPFIX collector is off
    netflow: NetflowSection | None = None
    dns: DnsSection = DnsSection()
    audit: AuditSection = AuditSection()
    webhook: WebhookSection = WebhookSection()
    syslog: SyslogSection = SyslogSection()
    metrics: MetricsSection = MetricsSection()

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, p: Path | str) -> Path:
        """A path from the file, made absolute against the config file's directory."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def ledger_url(self) -> str:
        """``ledger.url`` with a relative SQLite path resolved against the config directory."""
        url = self.ledger.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith("sqlite:////"):
            rel = url[len(prefix) :]
            if rel and rel != ":memory:":
                return prefix + str(self.resolve(rel))
        return url


def _check_hostport(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9464 (port 0: any free port)")
    return value


def find_config(explicit: Path | None) -> Path:
    """The config file to use: ``explicit`` if given, else the first of ``SEARCH_PATH``.

    Raises ``ConfigError`` when none exists.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(str(explicit), "no such file (create one with `sentinel init DIR`)")
        return explicit
    for candidate in SEARCH_PATH:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        " or ".join(str(p) for p in SEARCH_PATH),
        "no configuration file found; pass --config FILE or run `sentinel init DIR`",
    )


def load_settings(path: Path) -> Settings:
    """Read and validate ``path``. Raises ``ConfigError`` (file, key, problem)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    try:
        return Settings.model_validate({**data, "path": path.absolute()})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(str(path), first["msg"], key=key) from exc


DEFAULT_CONFIG_TOML = """\
# Sentinel configuration. Relative paths are resolved against this file's directory.
# Every key is optional; the values shown are the defaults unless marked "example".

[sentinel]
# Where cursors, the SQLite ledger and generated reports live.
state_dir = "state"
# debug | info | warning | error
log_level = "info"
# Registry instance id used when a source does not name one.
instance = "registry"

[ledger]
# SQLAlchemy URL. SQLite (WAL) by default; PostgreSQL in production, e.g.
#   url = "postgresql+psycopg://sentinel@127.0.0.1:5432/sentinel"
url = "sqlite:///state/ledger.db"
# Ed25519 private key (PKCS#8 PEM, mode 0600) that signs ledger checkpoints.
signing_key = "keys/ledger-ed25519.pem"
log_id = "sentinel"
# Append-only log of signed checkpoints, outside the database directory (a database restore
# must not reach it); seconds between checkpoints; origin ("" = "sentinel/<log_id>").
checkpoint_dir = "checkpoints"
checkpoint_interval = 300.0
origin = ""
# RFC 3161 time-stamp of each checkpoint from a time-stamping authority (TSA); "" = off. The
# token is stored beside the checkpoint log (<checkpoint_dir>/<log_id>.timestamps/); a TSA
# that is down or answers wrongly never stops the checkpoint. Example:
# tsa_url = "http://127.0.0.1:3180/tsa"
# tsa_ca_file = "keys/tsa-ca.pem"      # required with tsa_url: the CA of the TSA's certificate
# tsa_cert = "keys/tsa.pem"            # optional: pin the TSA's own certificate
tsa_timeout = 10.0
tsa_hash = "sha256"                   # sha256 | sha512

[geoip]
# A MaxMind-format database (MaxMind GeoIP2/GeoLite2, DB-IP, IPinfo). Example:
# database = "/usr/share/GeoIP/dbip-city-lite.mmdb"
# An optional second database from another vendor: verdicts record its country and a
# `disagrees` flag when both name a country and they differ (it never changes a verdict). Example:
# secondary = "/usr/share/GeoIP/GeoLite2-Country.mmdb"

[policy]
# Egress policy: jurisdiction, allowed networks, local networks, waivers (YAML).
egress = "policy.yaml"
# Audit rules (a directory of YAML rule files, or one file); unset: the shipped rules/audit.
# audit_rules = "audit-rules"

[capture]
# Live capture interface; "" disables live capture. Needs CAP_NET_RAW.
interface = ""
bpf = "ip or ip6 or (vlan and (ip or ip6))"
# A directory watched for finished .pcap/.pcapng files; "" disables it.
pcap_dir = ""
# Seconds of silence after which a flow is closed and judged.
idle_timeout = 30.0
# Seconds after which a long-running flow is judged even if still active.
active_timeout = 300.0
max_flows = 200000

[conntrack]
# Flows from the Linux connection tracker (new/destroy events over netlink; CAP_NET_ADMIN).
# Byte counts need `sysctl -w net.netfilter.nf_conntrack_acct=1` (per network namespace).
enabled = false
# A named network namespace (ip netns) to watch; "" = Sentinel's own.
netns = ""
# Seconds after which a long connection is judged with its counters so far.
active_timeout = 300.0
max_entries = 262144
# Event socket receive buffer (bytes); an overrun (ENOBUFS) is counted and resynced by a dump.
rcvbuf_bytes = 8388608

[health]
# Seconds without a packet or event after which a capture, conntrack or NetFlow source is
# recorded as silent (ledger record sensor_health, metric sentinel_source_silent).
silence_after = 300.0
# The same for audit sources (tailed logs, webhook, syslog).
audit_silence_after = 3600.0
# Seconds between sensor_health summaries (activity, silences, drops, gaps) per source.
summary_interval = 3600.0

# NetFlow v5/v9 and IPFIX collector (UDP): present = on. Flows the routers export are judged
# like captured ones (counts multiplied by the exporter's sampling rate, which the verdict
# states). Uncomment to enable; the values shown are the defaults.
# [netflow]
# listen = "127.0.0.1:2055"
# flush_interval = 5.0
# max_datagram_bytes = 65535
# max_exporters = 1024
# max_templates_per_exporter = 4096
# max_pending_sets = 10000        # data sets waiting for their template
# max_pending_bytes = 16777216
# exporter_idle_timeout = 1800.0  # seconds silent before an exporter's templates are forgotten
# pending_max_age = 1800.0        # seconds a data set may wait for its template (then counted)
# rcvbuf_bytes = 8388608

[dns]
# DNS answers seen in captures (UDP/TCP port 53) name the flows that follow them, so reports
# say which host a flow went to; names are evidence only, never part of a verdict.
enabled = true
# An answer names flows that start within max(TTL, min_hold) seconds of it, capped at
# max_hold: clients and their caches keep using an address long after a short TTL.
min_hold = 3600
max_hold = 604800
# Bounds: (address, answer) entries held in all, and answers kept per address.
max_entries = 100000
max_names = 8

[audit]
# Seconds between polls of tailed files (file-system events wake the tailer sooner).
poll_interval = 1.0
# Registry logs to tail; one [[audit.files]] table per file (or per glob: path = "logs/*.log"
# tails every match, each with its own cursor). Formats:
#   distribution-json | distribution-text | distribution-access | distribution-notifications
#   harbor-audit-syslog | harbor-audit-file | harbor-webhook | harbor-nginx | minio-audit
#   minio-notification
#   mlflow-access | mlflow-webhook | zot-audit | k8s-audit | jsonmap
# [[audit.files]]
# id = "registry"
# format = "distribution-json"
# path = "/var/log/docker-registry/app.log"
# zone = "UTC"              # zone of times written without one (syslog, uvicorn)
# mapping = "jsonmap.yaml"  # jsonmap only: field mapping
# mlflow-access only: ask the tracking server which model/version a line was about
# [audit.files.mlflow_rest]
# url = "http://127.0.0.1:5000"
# username = "sentinel"                      # basic auth; or token_file / token_env
# password_file = "keys/mlflow-rest.password"  # or password_env = "MLFLOW_TRACKING_PASSWORD"
# timeout = 2.0
# match_window = 2.0

[webhook]
# Receives the registry's notifications (CNCF distribution `notifications.endpoints`).
enabled = false
listen = "127.0.0.1:9465"
# File holding the bearer token the registry must send as `Authorization: Bearer <token>`.
token_file = "keys/webhook.token"
source = "registry"
max_body_bytes = 1048576
# MLflow 3 webhooks (POST /mlflow, X-MLflow-Signature checked) with the secret in this file:
# mlflow_secret_file = "keys/mlflow-webhook.secret"
mlflow_source = "mlflow"
signature_max_age = 300
# TLS for the receiver (PEM files); unset: plain HTTP on 127.0.0.1.
# tls_cert = "keys/webhook-cert.pem"
# tls_key = "keys/webhook-key.pem"
# Per client address: sustained requests per second and burst (429 beyond).
rate_limit = 20.0
rate_burst = 100
# Further endpoints, one table each; auth = bearer | mlflow-signature | hmac-sha256
# (format mlflow-webhook: mlflow-signature only, an unsigned MLflow route is refused). Example:
# [[webhook.routes]]
# path = "/harbor"
# source = "harbor"
# format = "harbor-webhook"
# auth = "bearer"
# secret_file = "keys/harbor-webhook.token"

[syslog]
# TCP syslog receiver (RFC 5424/3164; octet counting or newline framing), e.g. for Harbor's
# "audit log forward endpoint". Each message is parsed with `format`.
enabled = false
listen = "127.0.0.1:1514"
source = "harbor"
format = "harbor-audit-syslog"
max_line_bytes = 65536
max_connections = 16
idle_timeout = 300.0

[metrics]
# Prometheus exposition (classic text format) on http://LISTEN/metrics.
enabled = true
listen = "127.0.0.1:9464"
"""
