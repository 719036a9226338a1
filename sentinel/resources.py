"""Files Sentinel ships: report templates (``reports/``) and default rules (``rules/``).

In a wheel they live inside the package (``sentinel/report/templates``, ``sentinel/_rules``, see
``[tool.hatch.build.targets.wheel.force-include]``); in a source checkout or an editable
install they are read from the repository's top-level ``reports/`` and ``rules/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent


def templates_dir() -> Path:
    """Directory holding the shipped Jinja2 report templates."""
    packaged = _PACKAGE / "report" / "templates"
    return packaged if packaged.is_dir() else _REPO / "reports"


def rules_dir() -> Path:
    """Directory holding the shipped policies and Prometheus rules."""
    packaged = _PACKAGE / "_rules"
    return packaged if packaged.is_dir() else _REPO / "rules"


def demo_dir() -> Path:
    """Directory holding the demo's embedded inputs (a capture and registry logs)."""
    return _PACKAGE / "demo" / "data"
