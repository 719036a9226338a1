"""The notification receiver over real HTTP, fed the registry's own deliveries."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sentinel.audit.dedup import Deduplicator, dedup_key_of
from sentinel.audit.webhook import WebhookReceiver
from sentinel.records import AuditEvent, Unparsed

RECEIVED = "registry-logs/distribution-live/notifications-received.jsonl"
TOKEN = "s3cret-token"
CTYPE = "application/vnd.docker.distribution.events.v1+json"


class Store:
    def __init__(self) -> None:
        self.dedup = Deduplicator()
        self.kept: list[AuditEvent | Unparsed] = []
        self.fail = False

    def __call__(self, records: list[AuditEvent | Unparsed]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.kept += [r for r in records if self.dedup.is_new(dedup_key_of(r))]


@pytest.fixture
def server() -> Iterator[tuple[WebhookReceiver, Store, str]]:
    store = Store()
    rx = WebhookReceiver(store, token=TOKEN, listen=("127.0.0.1", 0), max_body_bytes=64 * 1024)
    rx.start()
    host, port = rx.server_address
    try:
        yield rx, store, f"http://{host}:{port}/notifications"
    finally:
        rx.stop()
        rx.stop()


def post(url: str, body: bytes, *, token: str = TOKEN, ctype: str = CTYPE) -> requests.Response:
    return requests.post(
        url,
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": ctype},
        timeout=10,
    )


def test_corpus_deliveries_and_redelivery(
    corpus: Path, server: tuple[WebhookReceiver, Store, str]
) -> None:
    rx, store, url = server
    assert rx.server_address[0] == "127.0.0.1" and rx.server_address[1] > 0
    bodies = [json.loads(line)["body"].encode() for line in (corpus / RECEIVED).open("rb")]
    for body in bodies:
        assert post(url, body).status_code == 200
    # the registry retries on timeouts: the same envelopes again are absorbed by event id
    for body in bodies[:5]:
        assert post(url, body, ctype="application/json; charset=utf-8").status_code == 200
    assert len(store.kept) == 27
    assert all(isinstance(r, AuditEvent) and r.actor_verified for r in store.kept)
    assert store.dedup.dropped == 5


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"token": "wrong"}, 401),
        ({"token": TOKEN[:-1]}, 401),
        ({"ctype": "text/plain"}, 415),
    ],
)
def test_rejections(
    server: tuple[WebhookReceiver, Store, str], kwargs: dict[str, str], status: int
) -> None:
    _, store, url = server
    resp = post(url, b'{"events": []}', **kwargs)
    assert resp.status_code == status
    assert TOKEN not in resp.text and "Bearer" not in resp.text
    assert store.kept == []


def test_missing_auth_wrong_path_method_and_size(
    server: tuple[WebhookReceiver, Store, str],
) -> None:
    _, store, url = server
    r = requests.post(url, data=b"{}", headers={"Content-Type": CTYPE}, timeout=10)
    assert r.status_code == 401 and r.text == "unauthorized\n"
    assert post(url.replace("/notifications", "/other"), b"{}").status_code == 404
    assert requests.get(url, timeout=10).status_code == 405
    assert post(url, b" " * (64 * 1024 + 1)).status_code == 413
    host, port = url.split("/")[2].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /notifications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: {CTYPE}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode()
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 411")
    assert store.kept == []


def test_bad_json_is_kept_as_unparsed_and_answered_400(
    server: tuple[WebhookReceiver, Store, str],
) -> None:
    _, store, url = server
    assert post(url, b"{not json").status_code == 400
    assert post(url, b"[" * 5000 + b"]" * 5000).status_code == 400
    assert [type(r) for r in store.kept] == [Unparsed, Unparsed]
    assert "not JSON" in store.kept[0].reason  # type: ignore[union-attr]


def test_sink_failure_answers_503_so_the_registry_retries(
    corpus: Path, server: tuple[WebhookReceiver, Store, str]
) -> None:
    _, store, url = server
    body = (corpus / "registry-logs/distribution-live/notification-mount.json").read_bytes()
    store.fail = True
    assert post(url, body).status_code == 503
    store.fail = False
    assert post(url, body).status_code == 200
    assert [r.action for r in store.kept if isinstance(r, AuditEvent)] == ["mount"]
