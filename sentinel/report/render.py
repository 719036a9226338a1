"""Render report data to HTML (Jinja2, autoescaped) or JSON, written atomically.

Templates: ``report.html.j2`` from an operator's directory first (``template_dir``), then the
shipped ``reports/`` templates (``sentinel.resources.templates_dir``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from sentinel.records import join_host_port
from sentinel.resources import templates_dir


def render_html(data: Mapping[str, Any], *, template_dir: Path | None = None) -> str:
    """Render ``data`` (from ``build_report``) with ``report.html.j2``; returns HTML text."""
    loaders = [FileSystemLoader(str(template_dir))] if template_dir else []
    loaders.append(FileSystemLoader(str(templates_dir())))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc_date"] = _utc_date
    env.filters["endpoint"] = _endpoint
    return env.get_template("report.html.j2").render(report=data)


def _endpoint(ip: object, port: object) -> str:
    """``{{ ip | endpoint(port) }}``: ``join_host_port`` (``[2001:db8::5]:80`` for IPv6)."""
    return join_host_port(str(ip), port if isinstance(port, int) else str(port))


def _utc_date(epoch: object) -> str:
    """Unix seconds → ``YYYY-MM-DD`` (UTC); anything else is shown as it is."""
    if isinstance(epoch, int):
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")
    return str(epoch)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(data: Mapping[str, Any], path: Path, *, template_dir: Path | None = None) -> None:
    """Write the report to ``path``: JSON when it ends in ``.json``, else HTML."""
    if path.suffix.lower() == ".json":
        write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        write_atomic(path, render_html(data, template_dir=template_dir))
