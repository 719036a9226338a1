"""A real RFC 3161 TSA for tests: a test CA and TSA certificates made with `openssl`, and
`openssl ts -reply` behind a tiny HTTP server on 127.0.0.1 (one `openssl` run per request).

``TsaPKI.create(dir)`` writes:

* ``ca.pem`` — the test root CA; ``other-ca.pem`` — an unrelated root CA;
* ``tsa.pem``/``tsa.key`` and ``tsa2.pem``/``tsa2.key`` — two TSA certificates under ``ca.pem``
  (extendedKeyUsage critical, timeStamping);
* ``tsa.cnf`` — the `openssl ts` configuration with sections ``tsa1`` (signs with ``tsa.pem``,
  sha256/384/512), ``tsa2`` (signs with ``tsa2.pem``) and ``sha512only`` (rejects sha256).

``OpenSSLTsa`` answers ``POST`` with ``openssl ts -reply -section <section>``; ``mode`` makes it
misbehave on purpose: ``replay`` (answers every request with the first response it made, so the
nonce is stale), ``tamper`` (flips one bit of the signature), ``garbage`` (200 with a body that
is no TimeStampResp), ``http500``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

MAX_QUERY_BYTES = 64 * 1024
TSA_SUBJECT = "CN=Sentinel Test TSA,O=Sentinel Test"


def openssl() -> str:
    """The `openssl` binary; fails (never skips) with an install hint when it is missing."""
    found = shutil.which("openssl")
    if found is None:
        pytest.fail(
            "openssl not found: install the Debian package `openssl` "
            "(`apt-get install openssl`, or `bash .ci/install-deps.sh`)"
        )
    return found


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([openssl(), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


_TSA_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

_TSA_SECTION = """\
[ {name} ]
dir = {dir}
serial = $dir/{name}.serial
crypto_device = builtin
signer_cert = $dir/{cert}
signer_key = $dir/{key}
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1.1
digests = {digests}
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass(frozen=True)
class TsaPKI:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def other_ca(self) -> Path:
        return self.directory / "other-ca.pem"

    @property
    def tsa_cert(self) -> Path:
        return self.directory / "tsa.pem"

    @property
    def tsa2_cert(self) -> Path:
        return self.directory / "tsa2.pem"

    @property
    def config(self) -> Path:
        return self.directory / "tsa.cnf"

    @classmethod
    def create(cls, directory: Path) -> TsaPKI:
        d = directory
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        for name, subject in (("ca", "Sentinel Test Root CA"), ("other-ca", "Unrelated CA")):
            _run(
                "req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem",
                "-subj", f"/CN={subject}", "-days", "3650",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                cwd=d,
            )  # fmt: skip
        (d / "tsa.ext").write_text(_TSA_EXT)
        for name, cn in (("tsa", "Sentinel Test TSA"), ("tsa2", "Sentinel Second TSA")):
            _run(
                "req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/O=Sentinel Test/CN={cn}",
                cwd=d,
            )  # fmt: skip
            _run(
                "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "365",
                "-extfile", "tsa.ext",
                cwd=d,
            )  # fmt: skip
        sections = [
            _TSA_SECTION.format(
                name="tsa1", dir=d, cert="tsa.pem", key="tsa.key", digests="sha256, sha384, sha512"
            ),
            _TSA_SECTION.format(
                name="tsa2", dir=d, cert="tsa2.pem", key="tsa2.key", digests="sha256, sha512"
            ),
            _TSA_SECTION.format(
                name="sha512only", dir=d, cert="tsa.pem", key="tsa.key", digests="sha512"
            ),
        ]
        (d / "tsa.cnf").write_text("[ tsa ]\ndefault_tsa = tsa1\n\n" + "\n".join(sections))
        return cls(d)


class OpenSSLTsa:
    """`openssl ts -reply` over HTTP on 127.0.0.1; ``start()``/``stop()`` (or ``with``)."""

    def __init__(self, pki: TsaPKI, *, section: str = "tsa1", mode: str = "ok") -> None:
        self.pki = pki
        self.section = section
        self.mode = mode
        self.requests = 0
        self._first: bytes | None = None
        self._lock = threading.Lock()
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/tsa"

    def reply(self, query: bytes) -> bytes:
        """`openssl ts -reply` for one DER TimeStampReq."""
        with tempfile.TemporaryDirectory() as tmp:
            q, r = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            q.write_bytes(query)
            _run(
                "ts", "-reply", "-config", str(self.pki.config), "-section", self.section,
                "-queryfile", str(q), "-out", str(r),
                cwd=Path(tmp),
            )  # fmt: skip
            return r.read_bytes()

    def _answer(self, query: bytes) -> tuple[int, bytes]:
        with self._lock:
            self.requests += 1
            if self.mode == "http500":
                return 500, b"TSA broken\n"
            if self.mode == "garbage":
                return 200, b"this is not a TimeStampResp"
            response = self.reply(query)
            if self._first is None:
                self._first = response
            if self.mode == "replay":
                return 200, self._first
            if self.mode == "tamper":
                damaged = bytearray(response)
                damaged[-3] ^= 0x01  # inside the ECDSA signature, the last field
                return 200, bytes(damaged)
            return 200, response

    def start(self) -> OpenSSLTsa:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if (
                    self.headers.get("Content-Type") != "application/timestamp-query"
                    or not 0 < length <= MAX_QUERY_BYTES
                ):
                    self.send_error(400, "expected an application/timestamp-query body")
                    return
                status, body = tsa._answer(self.rfile.read(length))
                self.send_response(status)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-tsa")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> OpenSSLTsa:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def openssl_verify(
    note: bytes, token: Path, ca: Path, workdir: Path
) -> subprocess.CompletedProcess[str]:
    """`openssl ts -verify -data <note> -in <token> -CAfile <ca>`, as an auditor runs it."""
    data = workdir / "checkpoint.note"
    data.write_bytes(note)
    return subprocess.run(
        [openssl(), "ts", "-verify", "-data", str(data), "-in", str(token), "-CAfile", str(ca)],
        capture_output=True,
        text=True,
        timeout=60,
    )
