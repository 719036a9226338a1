"""Helpers shared by the webhook and syslog receiver tests: a sink, self-signed TLS material
made with ``cryptography``, the corpus MLflow deliveries."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sentinel.records import AuditEvent, Unparsed


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
