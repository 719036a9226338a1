"""Webhook routes over real HTTP(S): MLflow signatures from the corpus, freshness, bearer and
hex-HMAC auth, the per-client rate limit, the connection cap and TLS."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sentinel.audit.parsers import PARSERS
from sentinel.audit.webhook import (
    BearerAuth,
    HmacSha256Auth,
    MLflowSignatureAuth,
    RateLimit,
    Route,
    TokenBuckets,
    WebhookReceiver,
    make_ssl_context,
    mlflow_route,
)
from sentinel.errors import ConfigError
from tests.audit.webhook_helpers import (
    MLFLOW_SECRET,
    Sink,
    mlflow_deliveries,
    self_signed,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def deliveries(corpus: Path) -> list[dict[str, object]]:
    return mlflow_deliveries(corpus)


def _start(sink: Sink, **kwargs: object) -> WebhookReceiver:
    rx = WebhookReceiver(sink, listen=("127.0.0.1", 0), **kwargs)  # type: ignore[arg-type]
    rx.start()
    return rx


@pytest.fixture
def mlflow_rx(deliveries: list[dict[str, object]]) -> Iterator[tuple[WebhookReceiver, Sink, Clock]]:
    first = deliveries[0]["headers"]
    assert isinstance(first, dict)
    clock = Clock(float(first["X-MLflow-Timestamp"]) + 5)
    sink = Sink()
    route = mlflow_route(MLFLOW_SECRET, source="mlflow-hook")
    rx = _start(sink, routes=[route], clock=clock)
    try:
        yield rx, sink, clock
    finally:
        rx.stop()


def _replay(url: str, delivery: dict[str, object], **override: str) -> requests.Response:
    headers = dict(delivery["headers"])  # type: ignore[call-overload]
    for drop in ("Host", "Content-Length", "Connection"):
        headers.pop(drop, None)
    headers.update(override)
    body = str(delivery["body"]).encode()
    return requests.post(url, data=body, headers=headers, timeout=10)


def test_mlflow_signed_deliveries_are_accepted(
    mlflow_rx: tuple[WebhookReceiver, Sink, Clock], deliveries: list[dict[str, object]]
) -> None:
    rx, sink, _ = mlflow_rx
    for d in deliveries:
        assert _replay(rx.url("/mlflow"), d).status_code == 200
    named = {(e.artifact, e.reference, e.action) for e in sink.events}
    assert ("resnet50", "1", "register") in named and ("resnet50", "2", "register") in named
    assert ("resnet50", "champion", "tag") in named and ("bert", None, "register") in named
    assert all(e.source == "mlflow-hook" for e in sink.events)
    # the receiver verified each signature: no event says "signature not verified"
    assert all("not verified" not in (e.detail or "") for e in sink.events)
    # the delivery id (a header) is the request id; the event id is the signed body's hash,
    # the same on every retry: a retried delivery is recognisable
    ids = [e.request_id for e in sink.events]
    assert ids == [d["headers"]["X-MLflow-Delivery-Id"] for d in deliveries]  # type: ignore[index]
    assert len({e.event_id for e in sink.events}) == len(deliveries)


@pytest.mark.parametrize(
    "override",
    [
        {"X-MLflow-Signature": "v1,AAAA"},
        {"X-MLflow-Signature": ""},
        {"X-MLflow-Delivery-Id": "another-delivery"},  # signature covers the delivery id
        {"X-MLflow-Timestamp": "1795979999"},  # and the timestamp
        {"X-MLflow-Timestamp": "not-a-number"},
    ],
)
def test_mlflow_tampered_headers_are_refused(
    mlflow_rx: tuple[WebhookReceiver, Sink, Clock],
    deliveries: list[dict[str, object]],
    override: dict[str, str],
) -> None:
    rx, sink, _ = mlflow_rx
    resp = _replay(rx.url("/mlflow"), deliveries[0], **override)
    assert resp.status_code == 401 and resp.text == "unauthorized\n"
    assert MLFLOW_SECRET not in resp.text
    assert sink.kept == [] and rx.stats["auth_failures"] == 1


def test_mlflow_tampered_body_and_stale_timestamp_are_refused(
    mlflow_rx: tuple[WebhookReceiver, Sink, Clock], deliveries: list[dict[str, object]]
) -> None:
    rx, sink, clock = mlflow_rx
    d = dict(deliveries[1])
    d["body"] = str(d["body"]).replace('"version": "1"', '"version": "9"')
    assert _replay(rx.url("/mlflow"), d).status_code == 401
    clock.now += 3600  # an hour later the same valid delivery is a replay
    assert _replay(rx.url("/mlflow"), deliveries[0]).status_code == 401
    clock.now -= 7200  # and a timestamp from the future is refused too
    assert _replay(rx.url("/mlflow"), deliveries[0]).status_code == 401
    assert sink.kept == []


def test_several_routes_with_their_own_auth(corpus: Path) -> None:
    sink = Sink()
    secret = "hex-hmac-secret"
    routes = [
        Route(
            "/notifications",
            "reg",
            PARSERS["distribution-notifications"],
            BearerAuth("tok-1234567890abcdef"),
            frozenset({"application/json"}),
        ),
        Route("/signed", "signed", PARSERS["mlflow-webhook"], HmacSha256Auth(secret)),
    ]
    rx = _start(sink, routes=routes)
    try:
        envelope = (corpus / "registry-logs/distribution-live/notification-mount.json").read_bytes()
        ok = requests.post(
            rx.url("/notifications"),
            data=envelope,
            headers={
                "Authorization": "Bearer tok-1234567890abcdef",
                "Content-Type": "application/json",
            },
            timeout=10,
        )
        assert ok.status_code == 200
        body = json.dumps(
            {
                "entity": "model_version",
                "action": "created",
                "timestamp": "2026-11-29T19:00:00Z",
                "data": {"name": "m", "version": "3"},
            }
        ).encode()
        sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sig}
        assert requests.post(rx.url("/signed"), data=body, headers=headers, timeout=10).ok
        # the bearer token of one route is no good on the other
        headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
        headers["Authorization"] = "Bearer tok-1234567890abcdef"
        assert (
            requests.post(rx.url("/signed"), data=body, headers=headers, timeout=10).status_code
            == 401
        )
    finally:
        rx.stop()
    assert [(e.source, e.action) for e in sink.events] == [("reg", "mount"), ("signed", "register")]


def test_rate_limit_per_client_answers_429() -> None:
    sink = Sink()
    rx = _start(sink, token="tok-1234567890abcdef", rate_limit=RateLimit(rate=0.01, burst=3))
    try:
        codes = [
            requests.post(rx.url(), data=b"{}", headers={}, timeout=10).status_code
            for _ in range(5)
        ]
        # the first three are judged (401: no token), then the bucket is empty
        assert codes == [401, 401, 401, 429, 429]
        last = requests.post(rx.url(), data=b"{}", timeout=10)
        assert int(last.headers["Retry-After"]) >= 1
    finally:
        rx.stop()
    assert rx.stats["rate_limited"] == 3


def test_token_bucket_refills_and_stays_bounded() -> None:
    clock = Clock(0.0)
    buckets = TokenBuckets(RateLimit(rate=2.0, burst=2, max_clients=3), clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.5]
    clock.now = 0.5  # one token back at 2/s
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0
    for key in "bcdef":
        buckets.take(key)
    assert len(buckets._buckets) == 3  # least recently seen clients evicted


def test_connection_cap_refuses_extra_connections() -> None:
    sink = Sink()
    rx = _start(sink, token="tok-1234567890abcdef", max_connections=1, request_timeout=5.0)
    host, port = rx.server_address
    try:
        with socket.create_connection((host, port), timeout=5) as held:
            held.sendall(b"POST /notifications HTTP/1.1\r\n")  # an unfinished request
            with socket.create_connection((host, port), timeout=5) as extra:
                assert extra.recv(100).startswith(b"HTTP/1.1 429")
    finally:
        rx.stop()


def test_tls_with_a_self_signed_certificate(tmp_path: Path, corpus: Path) -> None:
    cert, key = self_signed(tmp_path)
    sink = Sink()
    rx = _start(sink, token="tok-1234567890abcdef", ssl_context=make_ssl_context(cert, key))
    try:
        assert rx.url().startswith("https://127.0.0.1:")
        envelope = (corpus / "registry-logs/distribution-live/notification-mount.json").read_bytes()
        resp = requests.post(
            rx.url(),
            data=envelope,
            headers={
                "Authorization": "Bearer tok-1234567890abcdef",
                "Content-Type": "application/json",
            },
            timeout=10,
            verify=str(cert),
        )
        assert resp.status_code == 200
        # a client that does not trust the certificate fails the handshake; the server lives on
        with pytest.raises(requests.exceptions.SSLError):
            requests.post(rx.url(), data=b"{}", timeout=10)
        # a plaintext client gets nothing useful and does not break the server
        host, port = rx.server_address
        with socket.create_connection((host, port), timeout=5) as plain:
            plain.sendall(b"POST /notifications HTTP/1.1\r\n\r\n")
            try:
                data = plain.recv(100)
            except (ConnectionResetError, TimeoutError):
                data = b""
            assert not data.startswith(b"HTTP/1.1 2")
        assert requests.post(rx.url(), data=b"{}", timeout=10, verify=str(cert)).status_code == 401
    finally:
        rx.stop()
    assert [e.action for e in sink.events] == ["mount"]


def test_tls_context_errors_name_the_file(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        make_ssl_context(cert, tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError):
        make_ssl_context(cert, tmp_path / "junk.pem")
    (tmp_path / "ok").mkdir()
    assert isinstance(make_ssl_context(*self_signed(tmp_path / "ok")), ssl.SSLContext)


def test_constructor_refuses_empty_secrets_and_duplicate_paths() -> None:
    with pytest.raises(ValueError):
        BearerAuth("")
    with pytest.raises(ValueError):
        MLflowSignatureAuth("")
    with pytest.raises(ValueError):
        WebhookReceiver(Sink(), listen=("127.0.0.1", 0))
    route = Route("/a", "s", PARSERS["mlflow-webhook"], BearerAuth("x"))
    with pytest.raises(ValueError):
        WebhookReceiver(Sink(), listen=("127.0.0.1", 0), routes=[route, route])
    assert "s3cr3t-t0ken" not in repr(BearerAuth("s3cr3t-t0ken"))
    assert "s3cr3t-t0ken" not in repr(MLflowSignatureAuth("s3cr3t-t0ken"))


def test_k8s_route_merges_stages_and_records_a_held_one_on_stop(corpus: Path) -> None:
    # the API server's webhook backend posts EventList batches; a request's stages may be
    # split over batches: one event from the final stage, and one held at a non-final
    # stage is recorded (outcome unknown) when the receiver stops, never lost
    from sentinel.audit.parsers import ParserOptions, build_parser

    line = corpus / "registry-logs/kubernetes/k8s-audit-create-secret-falco-fixture.jsonl"
    ev = json.loads(line.read_bytes())
    received = {k: v for k, v in ev.items() if k not in ("responseStatus", "responseObject")}
    received["stage"] = "RequestReceived"
    other = {**received, "auditID": "only-received"}
    sink = Sink()
    token = "tok-1234567890abcdef"
    route = Route("/k8s", "k8s", build_parser("k8s-audit", ParserOptions()), BearerAuth(token))
    rx = _start(sink, routes=[route])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        for items in ([received, other], [ev]):
            batch = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}
            resp = requests.post(rx.url("/k8s"), json=batch, headers=headers, timeout=10)
            assert resp.status_code == 200
        assert [(e.event_id, e.outcome) for e in sink.events] == [(ev["auditID"], "success")]
    finally:
        rx.stop()
    assert [(e.event_id, e.outcome) for e in sink.events] == [
        (ev["auditID"], "success"),
        ("only-received", "unknown"),
    ]
