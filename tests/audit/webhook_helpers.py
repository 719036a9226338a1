"""Helpers shared by the webhook and syslog receiver tests: a sink, a minimal MLflow parser,
self-signed TLS material made with ``cryptography``."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sentinel.audit.parsers.interface import ParseResult, loads_limited, unparsed
from sentinel.records import AuditEvent, Unparsed, sha256_hex
from sentinel.timefmt import parse_ts


class Sink:
    """A thread-safe list of delivered records; ``fail = True`` makes delivery raise."""

    def __init__(self) -> None:
        self.kept: list[AuditEvent | Unparsed] = []
        self.batches = 0
        self.fail = False
        self._lock = threading.Lock()

    def __call__(self, records: list[AuditEvent | Unparsed]) -> None:
        if self.fail:
            raise OSError("disk full")
        with self._lock:
            self.kept += records
            self.batches += 1

    @property
    def events(self) -> list[AuditEvent]:
        return [r for r in self.kept if isinstance(r, AuditEvent)]


class MinimalMLflowWebhookParser:
    """Just enough of MLflow 3's webhook body (``entity``, ``action``, ``timestamp``, ``data``)
    to name model and version; stands in until the full MLflow parser is registered."""

    name = "mlflow-webhook-minimal"
    source_kind = "mlflow"
    ACTIONS: ClassVar[dict[tuple[str, str], str]] = {
        ("registered_model", "created"): "register",
        ("model_version", "created"): "register",
        ("model_version_alias", "created"): "tag",
        ("model_version_alias", "deleted"): "untag",
        ("model_version_tag", "set"): "tag",
    }

    def parse(self, raw: bytes, *, source: str, src_pos: str) -> ParseResult:
        try:
            body = loads_limited(raw)
            action = self.ACTIONS.get((body["entity"], body["action"]), "other")
            data = body["data"]
            ts = parse_ts(body["timestamp"])
        except (ValueError, KeyError, TypeError) as exc:
            return [unparsed(source, f"not an MLflow webhook: {exc}", raw, src_pos)]
        return [
            AuditEvent(
                ts=ts,
                source=source,
                source_kind="mlflow",
                action=action,  # type: ignore[arg-type]
                outcome="success",
                raw_sha256=sha256_hex(raw),
                src_pos=src_pos,
                artifact=str(data.get("name")),
                reference=str(data["version"]) if data.get("version") else data.get("alias"),
            )
        ]


def self_signed(tmp: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed P-256 certificate for ``host`` (IP SAN) and its key, as PEM files."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sentinel-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def mlflow_deliveries(corpus: Path) -> list[dict[str, object]]:
    """The MLflow 3.17.2 webhook deliveries captured in the corpus (headers + verbatim body)."""
    path = corpus / "registry-logs/mlflow-live/mlflow-3.17.2-webhooks-received.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


MLFLOW_SECRET = "placeholder-webhook-secret"  # the secret the corpus capture was made with
