"""Fixtures for end-to-end tests against real components (see ``tests/e2e/harness``).

A missing binary makes the fixture fail with the Debian package to install; nothing is skipped.
Mark tests that use ``registry``/``skopeo`` with ``@pytest.mark.registry`` and tests that use
``netns`` with ``@pytest.mark.root``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from .harness import (
    HarnessError,
    NetNs,
    NotificationListener,
    Notifications,
    OciLayout,
    RegistryProcess,
    Skopeo,
    free_port,
    make_model_oci_layout,
)

__all__ = ["free_port"]

RegistryFactory = Callable[..., RegistryProcess]


def model_payload(size: int = 64 * 1024, seed: bytes = b"sentinel-e2e") -> bytes:
    """Deterministic pseudo-random bytes (SHA-256 in counter mode) standing in for weights."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


@pytest.fixture
def oci_model(tmp_path: Path) -> OciLayout:
    """An OCI layout in ``tmp_path/oci-model`` with image ``resnet50:v1`` holding a 64 KiB
    ``model.safetensors``; the payload is ``model_payload()``."""
    return make_model_oci_layout(
        tmp_path / "oci-model", name="resnet50", tag="v1", payload=model_payload()
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryFactory]:
    """Factory starting ``docker-registry`` on 127.0.0.1 (free port), stopped at teardown.

    ``registry(notify_url=None, token=None, *, log_formatter="json", users=None,
    log_fields=None, name="registry") -> RegistryProcess`` (already started and ready).
    Fails (never skips) when ``docker-registry`` is missing or does not come up.
    """
    started: list[RegistryProcess] = []

    def factory(
        notify_url: str | None = None,
        token: str | None = None,
        *,
        log_formatter: str = "json",
        users: Mapping[str, str] | None = None,
        log_fields: Mapping[str, str] | None = None,
        name: str = "registry",
    ) -> RegistryProcess:
        notifications = None
        if notify_url is not None:
            if not token:
                raise ValueError("a notification endpoint needs a token")
            notifications = Notifications(url=notify_url, token=token)
        reg = RegistryProcess(
            workdir=tmp_path / f"{name}-{len(started)}",
            notifications=notifications,
            log_formatter=log_formatter,
            users=dict(users) if users is not None else {"alice": "password"},
            log_fields=dict(log_fields or {}),
        )
        try:
            reg.start()
        except HarnessError as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(reg)
        return reg

    try:
        yield factory
    finally:
        for reg in started:
            reg.stop()


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    """skopeo with private state in ``tmp_path/skopeo`` (see ``harness.skopeo``)."""
    try:
        return Skopeo(tmp_path / "skopeo")
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def notification_listener() -> Iterator[NotificationListener]:
    """An HTTP listener on 127.0.0.1 recording the registry's notification POSTs."""
    with NotificationListener() as listener:
        yield listener


@pytest.fixture
def netns() -> Iterator[NetNs]:
    """A fresh network namespace + veth pair (``harness.netns``), deleted at teardown.
    Needs root; fails otherwise."""
    if os.geteuid() != 0:
        pytest.fail("the netns fixture needs root (CAP_NET_ADMIN)", pytrace=False)
    try:
        ns = NetNs().create()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield ns
    finally:
        ns.destroy()
