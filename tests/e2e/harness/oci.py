"""Write a small OCI image layout that skopeo can push: one gzip tar layer holding a model file.

Format: OCI image-spec v1.0 (``image-layout.md``, ``manifest.md``, ``config.md``): a directory with
``oci-layout``, ``index.json`` (entries named by the ``org.opencontainers.image.ref.name``
annotation) and ``blobs/sha256/<hex>``. The build is deterministic: fixed mtimes, uid/gid 0, gzip
header mtime 0, so the same payload always gives the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
FIXED_MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z, seconds since the epoch
FIXED_CREATED = "2023-11-14T22:13:20Z"


@dataclass(frozen=True)
class OciLayout:
    """An OCI layout on disk and the digests of its one image (``sha256:<hex>`` strings)."""

    path: Path
    name: str
    tag: str
    filename: str
    payload_sha256: str  # hex SHA-256 of the model file
    manifest_digest: str
    manifest_size: int  # bytes
    config_digest: str
    layer_digest: str  # of the gzip blob as stored and pushed
    layer_size: int  # bytes
    diff_id: str  # of the uncompressed tar

    @property
    def ref(self) -> str:
        """The skopeo source reference, ``oci:DIR:TAG``."""
        return f"oci:{self.path}:{self.tag}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write_blob(root: Path, data: bytes) -> str:
    digest = _digest(data)
    blob = root / "blobs" / "sha256" / digest.split(":", 1)[1]
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return digest


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _layer_tar(filename: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(filename)
        info.size = len(payload)
        info.mtime = FIXED_MTIME
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def make_model_oci_layout(
    dir: Path,
    *,
    name: str,
    tag: str,
    payload: bytes,
    filename: str = "model.safetensors",
) -> OciLayout:
    """Write (or extend) the OCI layout at ``dir`` with one image tagged ``tag``.

    ``payload`` (bytes) becomes ``filename`` inside a single gzip tar layer. An existing
    ``index.json`` keeps its other tags; an entry with the same tag is replaced. ``name`` goes into
    the ``org.opencontainers.image.title`` annotation of the manifest. Raises ``ValueError`` for
    an empty tag or a filename that is absolute or climbs out of the layer.
    """
    if not tag or "/" in tag:
        raise ValueError(f"bad tag {tag!r}")
    if filename.startswith("/") or ".." in Path(filename).parts:
        raise ValueError(f"bad filename {filename!r}")
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    tar_bytes = _layer_tar(filename, payload)
    gz_bytes = gzip.compress(tar_bytes, mtime=0)
    diff_id = _digest(tar_bytes)
    layer_digest = _write_blob(dir, gz_bytes)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": FIXED_CREATED,
        "config": {"Labels": {"org.opencontainers.image.title": name}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": FIXED_CREATED, "created_by": "sentinel e2e harness"}],
    }
    config_bytes = _json_bytes(config)
    config_digest = _write_blob(dir, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [
            {
                "mediaType": MEDIA_LAYER,
                "digest": layer_digest,
                "size": len(gz_bytes),
                "annotations": {"org.opencontainers.image.title": filename},
            }
        ],
        "annotations": {"org.opencontainers.image.title": name},
    }
    manifest_bytes = _json_bytes(manifest)
    manifest_digest = _write_blob(dir, manifest_bytes)

    index_path = dir / "index.json"
    entries: list[dict[str, object]] = []
    if index_path.exists():
        old = json.loads(index_path.read_text())
        entries = [
            m for m in old.get("manifests", []) if m.get("annotations", {}).get(REF_NAME) != tag
        ]
    entries.append(
        {
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest_bytes),
            "annotations": {REF_NAME: tag},
        }
    )
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}
    index_path.write_bytes(_json_bytes(index))
    return OciLayout(
        path=dir,
        name=name,
        tag=tag,
        filename=filename,
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        manifest_digest=manifest_digest,
        manifest_size=len(manifest_bytes),
        config_digest=config_digest,
        layer_digest=layer_digest,
        layer_size=len(gz_bytes),
        diff_id=diff_id,
    )


def read_model_file(dir: Path, tag: str, filename: str = "model.safetensors") -> bytes:
    """Return the bytes of ``filename`` from the image tagged ``tag`` in the OCI layout ``dir``.

    Works on layouts skopeo wrote (e.g. after a pull). Raises ``KeyError`` when the tag or the
    file is absent, ``ValueError`` when a blob does not match its digest.
    """

    def blob(digest: str) -> bytes:
        data = (dir / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
        if _digest(data) != digest:
            raise ValueError(f"blob {digest} does not match its content")
        return data

    index = json.loads((dir / "index.json").read_text())
    for entry in index.get("manifests", []):
        if entry.get("annotations", {}).get(REF_NAME) == tag:
            manifest = json.loads(blob(entry["digest"]))
            break
    else:
        raise KeyError(f"tag {tag!r} not in {dir / 'index.json'}")
    for layer in manifest["layers"]:
        raw = blob(layer["digest"])
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            try:
                member = tar.getmember(filename)
            except KeyError:
                continue
            extracted = tar.extractfile(member)
            if extracted is not None:
                return extracted.read()
    raise KeyError(f"{filename!r} not in image {tag!r} of {dir}")
