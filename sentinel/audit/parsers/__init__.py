"""One parser per registry format, behind ``interface.Parser``, and the closed registry.

``PARSERS`` maps each format name (``sentinel.config.AUDIT_FORMATS``, ``sentinel audit parse
--format``) to a parser built with the default options (UTC for zone-less times, the real
clock, no ``jsonmap`` mapping beyond the default, no webhook secret). ``build_parser(name,
options)`` builds one with a source's own ``ParserOptions`` (``make_options`` turns the
configuration's ``zone``/``mapping`` values into them). Nothing is looked up by name from
user input beyond these two closed dicts.

Formats (module → upstream source of the format in its docstring):

==============================  ============================================================
``distribution-json|text|access|notifications``  CNCF distribution 2.8.2 logs and webhooks
``harbor-audit-syslog``         Harbor audit log forwarded over syslog (``harbor_audit``)
``harbor-audit-file``           Harbor ``audit.log`` written by its log container
``harbor-webhook``              Harbor webhooks, default and CloudEvents payloads
``harbor-nginx``                Harbor's nginx proxy access log (Helm or syslog form)
``minio-audit``                 MinIO audit entries (2019/2021/2024), NDJSON batches
``minio-notification``          MinIO bucket notifications (S3 event structure)
``mlflow-access``               MLflow server access log (uvicorn or gunicorn)
``mlflow-webhook``              MLflow 3 webhooks (signature: ``verify_mlflow_signature``)
``zot-audit``                   zot audit log (zerolog JSON)
``k8s-audit``                   Kubernetes audit.k8s.io/v1 and v1beta1 events
``jsonmap``                     generic JSON lines with a configured field mapping
==============================  ============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from sentinel.audit.parsers._common import DEFAULT_OPTIONS, ParserOptions
from sentinel.audit.parsers.distribution_access import DistributionAccessParser
from sentinel.audit.parsers.distribution_json import DistributionJSONParser
from sentinel.audit.parsers.distribution_notifications import DistributionNotificationsParser
from sentinel.audit.parsers.distribution_text import DistributionTextParser
from sentinel.audit.parsers.harbor_audit import HarborAuditParser
from sentinel.audit.parsers.harbor_nginx import HarborNginxParser
from sentinel.audit.parsers.harbor_webhook import HarborWebhookParser
from sentinel.audit.parsers.interface import Parser, ParseResult
from sentinel.audit.parsers.jsonmap import JsonMapParser, JsonMapping, load_mapping
from sentinel.audit.parsers.k8s_audit import K8sAuditParser
from sentinel.audit.parsers.minio_audit import MinioAuditParser
from sentinel.audit.parsers.minio_notification import MinioNotificationParser
from sentinel.audit.parsers.mlflow_access import MlflowAccessParser
from sentinel.audit.parsers.mlflow_webhook import MlflowWebhookParser, verify_mlflow_signature
from sentinel.audit.parsers.zot_audit import ZotAuditParser
from sentinel.audit.timeparse import get_zone
from sentinel.errors import ConfigError

#: format name → factory taking the source's ``ParserOptions``
FACTORIES: MappingProxyType[str, Callable[[ParserOptions], Parser]] = MappingProxyType(
    {
        "distribution-json": lambda _o: DistributionJSONParser(),
        "distribution-text": lambda _o: DistributionTextParser(),
        "distribution-access": lambda _o: DistributionAccessParser(),
        "distribution-notifications": lambda _o: DistributionNotificationsParser(),
        "harbor-audit-syslog": lambda o: HarborAuditParser("harbor-audit-syslog", o),
        "harbor-audit-file": lambda o: HarborAuditParser("harbor-audit-file", o),
        "harbor-webhook": HarborWebhookParser,
        "harbor-nginx": HarborNginxParser,
        "minio-audit": MinioAuditParser,
        "minio-notification": MinioNotificationParser,
        "mlflow-access": MlflowAccessParser,
        "mlflow-webhook": MlflowWebhookParser,
        "zot-audit": ZotAuditParser,
        "k8s-audit": K8sAuditParser,
        "jsonmap": JsonMapParser,
    }
)

PARSERS: MappingProxyType[str, Parser] = MappingProxyType(
    {name: factory(DEFAULT_OPTIONS) for name, factory in FACTORIES.items()}
)

#: Formats whose unit is a whole payload (an envelope, a webhook body) rather than one log
#: line: a file holds one payload (possibly pretty-printed) or one payload per line.
PAYLOAD_FORMATS = frozenset(
    {
        "distribution-notifications",
        "harbor-webhook",
        "minio-audit",
        "minio-notification",
        "mlflow-webhook",
    }
)


def get_parser(name: str) -> Parser:
    """The default-options parser for format ``name``. Raises ``ConfigError`` if unknown."""
    try:
        return PARSERS[name]
    except KeyError:
        known = ", ".join(sorted(PARSERS))
        raise ConfigError("--format", f"unknown audit format {name!r} (known: {known})") from None


def make_options(
    zone: str = "UTC", mapping: Path | None = None, secret: bytes | None = None
) -> ParserOptions:
    """``ParserOptions`` from configuration values: an IANA ``zone`` name, a ``jsonmap`` mapping
    file, a webhook secret. Raises ``ConfigError`` (unknown zone, bad mapping file)."""
    try:
        tz = get_zone(zone)
    except ValueError as exc:
        raise ConfigError("zone", str(exc)) from None
    loaded = load_mapping(mapping) if mapping is not None else None
    return ParserOptions(zone=tz, mapping=loaded, webhook_secret=secret)


def build_parser(name: str, options: ParserOptions = DEFAULT_OPTIONS) -> Parser:
    """A parser for format ``name`` with a source's ``options``. Raises ``ConfigError``."""
    get_parser(name)
    return FACTORIES[name](options)


__all__ = [
    "FACTORIES",
    "PARSERS",
    "PAYLOAD_FORMATS",
    "JsonMapping",
    "ParseResult",
    "Parser",
    "ParserOptions",
    "build_parser",
    "get_parser",
    "load_mapping",
    "make_options",
    "verify_mlflow_signature",
]
