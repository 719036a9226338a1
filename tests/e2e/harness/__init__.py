"""End-to-end harness: real docker-registry, skopeo, OCI layouts, network namespaces."""

from .errors import HarnessError, require_binary
from .listener import Delivery, NotificationListener
from .net import free_port, http_status, wait_for
from .netns import NetNs, send_udp_from_ns
from .oci import OciLayout, make_model_oci_layout, read_model_file
from .registry import Notifications, RegistryProcess
from .skopeo import ALICE, Creds, Skopeo

__all__ = [
    "ALICE",
    "Creds",
    "Delivery",
    "HarnessError",
    "NetNs",
    "NotificationListener",
    "Notifications",
    "OciLayout",
    "RegistryProcess",
    "Skopeo",
    "free_port",
    "http_status",
    "make_model_oci_layout",
    "read_model_file",
    "require_binary",
    "send_udp_from_ns",
    "wait_for",
]
